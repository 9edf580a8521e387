from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpress_fast as xf
from xpress_fast.region_graphs import RegionGraph
from reference_segment import ref_long_range_graph, ref_region_graph


@st.composite
def labelled(draw, max_side=7):
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_labels = draw(st.integers(1, 6))
    frags = rng.integers(0, n_labels + 1, size=shape).astype(np.uint64)
    if draw(st.booleans()):
        frags = frags * np.uint64(2**33 + 7)  # large, sparse ids
    if draw(st.booleans()):
        affs = rng.integers(0, 256, size=(3,) + shape, dtype=np.uint8)
    else:
        affs = rng.random((3,) + shape, dtype=np.float32)
    return frags, affs


def as_dict(graph: RegionGraph) -> dict:
    out = {}
    for e in range(graph.n_edges):
        u, v = (int(x) for x in graph.edges[e])
        lo, hi = graph.hist_offsets[e], graph.hist_offsets[e + 1]
        out[(u, v)] = {
            "count": int(graph.counts[e]), "sum": float(graph.sums[e]), "min": float(graph.mins[e]),
            "max": float(graph.maxs[e]),
            "hist": {int(b): int(c) for b, c in zip(graph.hist_bins[lo:hi], graph.hist_counts[lo:hi])},
        }
    return out


def assert_same_graph(ours: dict, ref: dict):
    assert sorted(ours) == sorted(ref)
    for key in ref:
        a, b = ours[key], ref[key]
        assert a["count"] == b["count"] and a["hist"] == b["hist"]
        assert a["min"] == pytest.approx(b["min"], abs=0) and a["max"] == pytest.approx(b["max"], abs=0)
        assert a["sum"] == pytest.approx(b["sum"], rel=1e-9, abs=1e-9)


@given(labelled(), st.integers(1, 3))
def test_region_graph_matches_reference(data, threads):
    frags, affs = data
    frags_before, affs_before = frags.copy(), affs.copy()
    graph = xf.region_graph(frags, affs, threads=threads)
    np.testing.assert_array_equal(frags, frags_before)
    np.testing.assert_array_equal(affs, affs_before)
    assert graph.edges.dtype == np.uint64 and graph.edges.shape == (graph.n_edges, 2)
    assert np.all(graph.edges[:, 0] < graph.edges[:, 1])
    order = np.lexsort((graph.edges[:, 1], graph.edges[:, 0]))
    np.testing.assert_array_equal(order, np.arange(graph.n_edges))
    assert_same_graph(as_dict(graph), ref_region_graph(frags, affs))
    # histograms sorted by bin within each edge and consistent with the counts
    for e in range(graph.n_edges):
        bins = graph.hist_bins[graph.hist_offsets[e]:graph.hist_offsets[e + 1]]
        assert np.all(np.diff(bins.astype(int)) > 0)
        assert graph.hist_counts[graph.hist_offsets[e]:graph.hist_offsets[e + 1]].sum() == graph.counts[e]


NEAREST = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
FURTHER = [(-2, 0, 0), (0, -3, 0), (0, 0, -2), (1, 0, 0), (-1, -1, 0), (0, 2, -1)]


@given(labelled(), st.lists(st.sampled_from(FURTHER), max_size=4, unique=True),
       st.sampled_from([None, 0.0, 0.3, 0.5, 0.7]), st.integers(1, 3))
def test_long_range_evidence_and_inside_gate_match_reference(data, further, inside, threads):
    frags, affs3 = data
    rng = np.random.default_rng(int(frags.sum()) % 2**32 + len(further))
    extra = (rng.integers(0, 256, size=(len(further),) + frags.shape, dtype=np.uint8) if affs3.dtype == np.uint8
             else rng.random((len(further),) + frags.shape, dtype=np.float32))
    affs = np.concatenate([affs3, extra])
    offsets = NEAREST + further
    before = frags.copy(), affs.copy()
    graph = xf.region_graph(frags, affs, offsets=offsets, inside_threshold=inside, threads=threads)
    np.testing.assert_array_equal(frags, before[0])
    np.testing.assert_array_equal(affs, before[1])
    assert_same_graph(as_dict(graph), ref_long_range_graph(frags, affs, offsets, inside))
    if not further:  # without further channels, offsets change nothing
        assert_same_graph(as_dict(graph), as_dict(xf.region_graph(frags, affs, inside_threshold=inside)))


def test_long_range_inputs_are_checked():
    frags = np.ones((2, 3, 4), np.uint64)
    affs = np.full((4, 2, 3, 4), 0.5, np.float32)
    with pytest.raises(ValueError, match=r"offsets must be smaller than 2\*\*31 in magnitude"):
        xf.region_graph(frags, affs, offsets=NEAREST + [(-2**63, 0, 0)])
    affs[3, 0, 0, 0] = np.nan  # channels 0-2 are fine: the long-range channel is checked too
    with pytest.raises(ValueError, match="affs must not contain NaN"):
        xf.region_graph(frags, affs, offsets=NEAREST + [(0, 0, -2)])
    affs[3, 0, 0, 0] = 7.0
    with pytest.raises(ValueError, match=r"affs must lie in \[0, 1\]"):
        xf.long_range_graph(frags, affs, NEAREST + [(0, 0, -2)])


def test_inside_gate_leaves_out_the_boundary_voxels_between_two_fragments():
    # 1 x 1 x 5: fragment 1 | boundary voxel (mean 0.1) of fragment 1 | fragment 2
    frags = np.array([[[1, 1, 1, 2, 2]]], np.uint64)
    affs = np.full((3, 1, 1, 5), 0.9, np.float32)
    affs[:, 0, 0, 2] = 0.1  # voxel 2 is outside; the x-link 1->2 lives on voxel 2 (to voxel 1)
    affs[2, 0, 0, 3] = 0.2  # the x-link between voxel 2 (fragment 1) and voxel 3 (fragment 2)
    g_all = xf.region_graph(frags, affs)
    assert g_all.edges.tolist() == [[1, 2]] and g_all.counts.tolist() == [1]
    g_inside = xf.region_graph(frags, affs, inside_threshold=0.5)
    assert g_inside.n_edges == 0  # the only contact runs through the boundary voxel
    assert frags.tolist() == [[[1, 1, 1, 2, 2]]]  # the caller's fragments keep every voxel


def test_long_range_pairs_add_to_touching_fragments_only():
    # 1 x 1 x 6: fragments 1 1 2 2 3 3; a long-range channel along x by 2
    frags = np.array([[[1, 1, 2, 2, 3, 3]]], np.uint64)
    affs = np.zeros((4, 1, 1, 6), np.float32)
    affs[2] = 0.5
    affs[3] = 0.25  # pairs (v, v - 2): (1,0) (2,0) ... -> 1-2 twice, 2-3 twice, 1-3 never (no touch)
    g = xf.region_graph(frags, affs, offsets=NEAREST + [(0, 0, -2)])
    assert g.edges.tolist() == [[1, 2], [2, 3]]
    assert g.counts.tolist() == [3, 3]  # 1 nearest + 2 long-range pairs each
    np.testing.assert_allclose(g.sums, [1.0, 1.0])


@given(labelled(max_side=8), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_blocks_with_context_concatenate_to_the_whole(data, bz, by, bx):
    frags, affs = data
    whole = xf.region_graph(frags, affs)
    parts = []
    shape = frags.shape
    cuts = [np.linspace(0, s, min(b, s) + 1).astype(int) for s, b in zip(shape, (bz, by, bx))]
    for z0, z1 in zip(cuts[0][:-1], cuts[0][1:]):
        for y0, y1 in zip(cuts[1][:-1], cuts[1][1:]):
            for x0, x1 in zip(cuts[2][:-1], cuts[2][1:]):
                # one plane of overlap at each lower face that is not the volume's
                lo = [max(a - 1, 0) for a in (z0, y0, x0)]
                ctx = [a - b for a, b in zip((z0, y0, x0), lo)]
                sl = (slice(lo[0], z1), slice(lo[1], y1), slice(lo[2], x1))
                parts.append(xf.region_graph(frags[sl], affs[(slice(None),) + sl], context=ctx))
    merged = RegionGraph.concatenate(parts)
    np.testing.assert_array_equal(merged.edges, whole.edges)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    np.testing.assert_allclose(merged.sums, whole.sums, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(merged.mins, whole.mins)
    np.testing.assert_array_equal(merged.maxs, whole.maxs)
    np.testing.assert_array_equal(merged.hist_offsets, whole.hist_offsets)
    np.testing.assert_array_equal(merged.hist_bins, whole.hist_bins)
    np.testing.assert_array_equal(merged.hist_counts, whole.hist_counts)


@given(labelled())
def test_quantile_follows_waterz_rule(data):
    frags, affs = data
    graph = xf.region_graph(frags, affs)
    ref = ref_region_graph(frags, affs)
    for q in (10, 50, 90):
        values = graph.quantile(q)
        for e, key in enumerate(map(tuple, graph.edges.tolist())):
            hist = ref[key]["hist"]
            pivot = q * sum(hist.values()) // 100 + 1
            cum = 0
            for b in sorted(hist):
                cum += hist[b]
                if cum >= pivot:
                    break
            assert values[e] == (b + 0.5) / 256


def test_known_two_fragment_graph():
    frags = np.array([[[1, 1, 2, 2]]], np.uint64)
    affs = np.zeros((3, 1, 1, 4), np.uint8)
    affs[2, 0, 0, 2] = 51  # the only voxel edge between 1 and 2: 51 / 255 = 0.2
    graph = xf.region_graph(frags, affs)
    np.testing.assert_array_equal(graph.edges, [[1, 2]])
    np.testing.assert_array_equal(graph.counts, [1])
    assert graph.means[0] == pytest.approx(0.2)
    np.testing.assert_array_equal(graph.hist_bins, [51])
    assert graph.quantile(50)[0] == (51 + 0.5) / 256


def test_background_has_no_edges_and_histograms_are_optional():
    frags = np.array([[[0, 1, 0, 2]]], np.uint64)
    affs = np.ones((3, 1, 1, 4), np.float32)
    graph = xf.region_graph(frags, affs, histograms=False)
    assert graph.n_edges == 0 and not graph.has_histograms
    with pytest.raises(ValueError, match="quantile needs histograms"):
        graph.quantile(50)


def test_concatenate_of_empty_graphs():
    frags = np.ones((2, 2, 2), np.uint32)
    graph = xf.region_graph(frags, np.ones((3, 2, 2, 2), np.float32))
    merged = RegionGraph.concatenate([graph, graph])
    assert merged.n_edges == 0 and merged.has_histograms


@pytest.mark.parametrize(
    "frags, affs, kwargs, error, match",
    [
        (np.ones((2, 2, 2), np.float32), np.ones((3, 2, 2, 2), np.float32), {}, TypeError,
         "fragments must have an integer label dtype"),
        (np.ones((2, 2, 3), np.uint64), np.ones((3, 2, 2, 2), np.float32), {}, ValueError,
         "fragments must have the spatial shape of affs"),
        (-np.ones((2, 2, 2), np.int64), np.ones((3, 2, 2, 2), np.float32), {}, ValueError,
         "fragments must not contain negative labels"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float64), {}, TypeError,
         "affs.dtype must be float32 or uint8"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"context": -1}, ValueError,
         "context must be non-negative"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"context": (1, 2)}, ValueError,
         "context must be a non-negative int or three"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"threads": 0}, ValueError,
         "threads must be a positive integer"),
        (np.ones((2, 2, 2), np.uint64), np.ones((4, 2, 2, 2), np.float32), {"offsets": NEAREST}, ValueError,
         "offsets must give one offset per affinity channel: affs has 4 channels, offsets has 3"),
        (np.ones((2, 2, 2), np.uint64), np.ones((4, 2, 2, 2), np.float32), {"offsets": NEAREST + [(0, 0, 0)]},
         ValueError, "offsets must not contain a zero offset"),
        (np.ones((2, 2, 2), np.uint64), np.ones((4, 2, 2, 2), np.float32),
         {"offsets": [(0, -1, 0), (-1, 0, 0), (0, 0, -1), (0, 0, -3)]}, ValueError,
         "offsets must start with the nearest neighbours"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"offsets": [(1, 2)] * 3}, ValueError,
         "offsets must be a sequence of"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"offsets": [(0.5, 0, 0)] * 3},
         ValueError, "offsets must be integers"),
        (np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32), {"inside_threshold": 1.5}, ValueError,
         r"inside_threshold must be None or a number in \[0, 1\]"),
    ],
)
def test_region_graph_rejects_bad_input(frags, affs, kwargs, error, match):
    with pytest.raises(error, match=match):
        xf.region_graph(frags, affs, **kwargs)


def test_concatenate_rejects_non_graphs():
    with pytest.raises(TypeError, match="graphs must be a non-empty sequence of RegionGraph"):
        RegionGraph.concatenate([])
    with pytest.raises(ValueError, match="q must be an integer percentage"):
        xf.region_graph(np.ones((1, 1, 2), np.uint8) * [[[1, 2]]], np.ones((3, 1, 1, 2), np.float32)).quantile(101)
