"""Inputs that used to give a silently wrong result or a raw error: channel-last affinities, ids
that wrap modulo 2**64, out-of-range id offsets."""
from __future__ import annotations

import numpy as np
import pytest

import xpress_fast as xf


def _affs(shape=(3, 8, 8, 8), seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("call", [
    lambda a: xf.agglomerate(a, 0.5),
    lambda a: xf.merge_history(a, [0.3, 0.5]),
    lambda a: xf.watershed(a),
    lambda a: xf.region_graph(np.ones(a.shape[1:], np.uint64), a),
])
def test_channel_last_affinities_are_refused(call):
    channel_last = np.moveaxis(_affs((3, 6, 8, 8)), 0, -1)  # (6, 8, 8, 3): read as 6 channels before
    with pytest.raises(ValueError, match=r"looks channel-last .*np.moveaxis"):
        call(channel_last)


def test_channel_first_with_three_voxels_along_x_still_works():
    seg = xf.agglomerate(_affs((3, 6, 8, 3)), 0.5)
    assert seg.shape == (6, 8, 3)


def test_ids_that_would_wrap_are_refused():
    affs = _affs()
    n = int(xf.watershed(affs).max())
    assert n > 1
    top = 2**64 - 1
    assert int(xf.watershed(affs, id_offset=top - n).max()) == top  # exactly fits
    with pytest.raises(ValueError, match=r"id_offset .* leaves room for"):
        xf.watershed(affs, id_offset=top - n + 1)
    with pytest.raises(ValueError, match=r"id_offset .* leaves room for"):
        xf.watershed(affs, id_offset=2**64 - 10)


@pytest.mark.parametrize("bad", [2**70, 2**64, -1, 1.5, True, "3"])
def test_id_offset_out_of_range_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"id_offset must be an integer in \[0, 2\*\*64 - 1\]"):
        xf.watershed(_affs(), id_offset=bad)


def test_offsets_declare_the_channels_so_x_of_3_passes():
    """With offsets, the channel count is checked against them: no channel-last guess."""
    affs = _affs((6, 4, 4, 3))
    offsets = xf.axis_offsets([2])
    graph = xf.region_graph(np.ones((4, 4, 3), np.uint64), affs, offsets=offsets)
    assert graph.n_edges == 0
    with pytest.raises(ValueError, match="looks channel-last"):
        xf.region_graph(np.ones((4, 4, 3), np.uint64), affs)


def test_node_ids_beyond_int64_are_kept_exactly(tmp_path):
    import networkx as nx

    top = 2**64 - 1
    sk = xf.Skeletons(np.array([[5.0, 5, 5], [5, 5, 15]]), np.array([[0, 1]]), node_ids=np.uint64([top, 2**63]))
    assert sk.node_ids.dtype == np.uint64 and sk.node_ids.tolist() == [top, 2**63]
    seg = np.array([[[1, 2]]], dtype=np.uint64)
    split = xf.xpress_scores(seg, sk, voxel_size=(10, 10, 10)).split_locations
    assert split["node_ids"].tolist() == [[top, 2**63]]
    for fmt in ("arrays", "networkx"):
        xf.save_skeletons(sk, tmp_path / f"s-{fmt}.npz", fmt=fmt)
        assert xf.load_skeletons(tmp_path / f"s-{fmt}.npz").node_ids.tolist() == [top, 2**63]
    g = nx.Graph()
    g.add_node(2**63 + 5, position=(1.0, 2.0, 3.0))
    g.add_node(-1, position=(1.0, 2.0, 4.0))
    with pytest.raises(ValueError, match="node ids must fit in 64 bits"):
        xf.Skeletons.from_networkx(g)
