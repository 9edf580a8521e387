"""Saved region graphs and agglomerations: round trips, and damaged records refused (never scored)."""
from __future__ import annotations

import numpy as np
import pytest

import xpress_fast as xf
from xpress_fast import io
from xpress_fast.cli import main


def _case(seed=0, shape=(10, 12, 14)):
    rng = np.random.default_rng(seed)
    affs = rng.random((3,) + shape, dtype=np.float32)
    fragments = xf.watershed(affs, min_seed_distance=2)
    return affs, fragments


@pytest.mark.parametrize("histograms", [True, False])
def test_region_graph_round_trip(tmp_path, histograms):
    affs, frags = _case()
    graph = xf.region_graph(frags, affs, histograms=histograms)
    assert graph.n_edges > 10
    xf.save_region_graph(graph, tmp_path / "g.npz")
    back = xf.load_region_graph(tmp_path / "g.npz")
    for name in ("edges", "counts", "sums", "mins", "maxs", "hist_offsets", "hist_bins", "hist_counts"):
        a, b = getattr(graph, name), getattr(back, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("merge_function", ["mean", "hist_quant_50"])
def test_agglomeration_round_trip_gives_the_same_segmentations(tmp_path, merge_function):
    affs, frags = _case(1)
    agg = xf.merge_history(affs, [0.2, 0.5, 0.8], fragments=frags, merge_function=merge_function)
    xf.save_agglomeration(agg, tmp_path / "a.npz")
    back = xf.load_agglomeration(tmp_path / "a.npz", fragments=frags)
    assert back.merge_function == merge_function
    np.testing.assert_array_equal(back.merges, agg.merges)
    for t in (0.2, 0.35, 0.8):
        np.testing.assert_array_equal(back.segmentation(t), agg.segmentation(t))


def _damage(tmp_path, key, value, save=xf.save_agglomeration, load=xf.load_agglomeration, obj=None):
    path = tmp_path / "rec.npz"
    save(obj, path)
    with np.load(path) as z:
        arrays = dict(z)
    arrays[key] = value(arrays[key]) if callable(value) else value
    np.savez(path, **arrays)
    return lambda: load(path)


@pytest.fixture(scope="module")
def agg():
    affs, frags = _case(2)
    a = xf.merge_history(affs, [0.3, 0.9], fragments=frags)
    assert len(a.scores) > 3
    return a


@pytest.mark.parametrize("key, value, match", [
    ("levels", lambda x: np.where(np.arange(x.size) == 1, np.nan, x), "'levels' must be finite"),
    ("levels", lambda x: x[::-1].copy(), "'levels' must be non-decreasing"),
    ("scores", lambda x: np.full_like(x, np.nan), "'scores' must not be NaN"),
    ("u", lambda x: x + 10**6, "'u' must index 'fragment_ids'"),
    ("v", lambda x: x - 10**6, "'v' must not be negative"),
    ("v", lambda x: x[:-1], "'v' must have"),
    ("fragment_ids", lambda x: x[::-1].copy(), "sorted and unique"),
    ("thresholds", np.array([0.9, 0.3]), "strictly increasing"),
    ("merge_function", np.array("median"), "merge_function must be one of"),
    ("merge_function", np.array([1, 2]), "'merge_function' must be a string"),
])
def test_damaged_agglomeration_is_refused(tmp_path, agg, key, value, match):
    load = _damage(tmp_path, key, value, obj=agg)
    with pytest.raises(ValueError, match=match) as info:
        load()
    assert "rec.npz" in str(info.value)


@pytest.fixture(scope="module")
def graph():
    affs, frags = _case(3)
    return xf.region_graph(frags, affs)


@pytest.mark.parametrize("key, value, match", [
    ("edges", lambda x: x[:, ::-1].copy(), "edges\\[:, 0\\] < edges\\[:, 1\\]"),
    ("edges", lambda x: x[::-1].copy(), "sorted lexicographically"),
    ("counts", lambda x: np.zeros_like(x), "'counts' must be positive"),
    ("sums", lambda x: x * np.nan, "'sums' must be finite"),
    ("maxs", lambda x: x + 2, "0 <= mins <= maxs <= 1"),
    ("sums", lambda x: x * 3 + 1, "'sums' must lie between"),
    ("hist_counts", lambda x: x + 1, "add up to each edge's count"),
    ("hist_offsets", lambda x: x[:-1], "'hist_offsets' must have"),
    ("hist_bins", lambda x: np.zeros_like(x), "'hist_bins' must increase within each edge"),
])
def test_damaged_region_graph_is_refused(tmp_path, graph, key, value, match):
    load = _damage(tmp_path, key, value, save=xf.save_region_graph, load=xf.load_region_graph, obj=graph)
    with pytest.raises(ValueError, match=match):
        load()


def test_a_run_record_with_nan_levels_is_refused_by_the_pipeline_and_the_cli(tmp_path, capsys):
    from xpress_fast.pipeline import load_agglomeration, segment_volume

    affs, _ = _case(4, shape=(16, 16, 16))
    io.write_volume(tmp_path / "affs.zarr", "affs", affs, voxel_size=(10, 10, 10))
    out = tmp_path / "out.zarr"
    segment_volume(tmp_path / "affs.zarr", "affs", out, thresholds=[0.5], block_shape=(8, 16, 16))
    record = out / ".xpress_fast" / "agglomeration.npz"
    with np.load(record) as z:
        arrays = dict(z)
    assert arrays["levels"].size > 1
    arrays["levels"][0] = np.nan
    np.savez(record, **arrays)
    with pytest.raises(ValueError, match="'levels' must be finite"):
        load_agglomeration(out)
    with pytest.raises(ValueError, match="'levels' must be finite"):
        segment_volume(tmp_path / "affs.zarr", "affs", out, thresholds=[0.5], block_shape=(8, 16, 16))
    skel = tmp_path / "s.npz"
    xf.save_skeletons(xf.Skeletons(np.array([[5.0, 5, 5], [50, 50, 50]]), np.array([[0, 1]])), skel, fmt="arrays")
    assert main(["sweep", "--segmented", str(out), "--skeletons", str(skel), "--json"]) == 2
    assert "'levels' must be finite" in capsys.readouterr().err
