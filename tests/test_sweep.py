"""Threshold sweeps: equal to scoring each threshold's dense segmentation, from one read."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xpress_fast
from xpress_fast.metrics import SkeletonIndex
from xpress_fast.sweeps import node_fragment_ids, sweep
from reference_segment import label_affinities

THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]


@pytest.fixture(scope="module")
def case():
    from xpress_fast.synthetic import make_volume

    vol = make_volume((32, 36, 40), seed=7)
    lab = vol.labels
    a = label_affinities(lab)
    rng = np.random.default_rng(1)
    affs = np.clip(0.6 * a + 0.4 * rng.random(a.shape, dtype=np.float32), 0, 1).astype(np.float32)
    frags = xpress_fast.watershed(affs, min_seed_distance=3)
    agg = xpress_fast.merge_history(affs, THRESHOLDS, fragments=frags)
    return vol, agg


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_sweep_equals_dense_scoring(case, mode):
    vol, agg = case
    result = sweep(agg, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset, mode=mode)
    assert list(result.thresholds) == THRESHOLDS
    merges = []
    for t, s in zip(THRESHOLDS, result.scores):
        want = xpress_fast.xpress_scores(agg.segmentation(t), vol.skeletons, voxel_size=vol.voxel_size,
                                         offset=vol.offset, mode=mode)
        assert s.as_dict() == pytest.approx(want.as_dict(), nan_ok=True), t
        merges.append(s.merge_count)
    assert merges[0] <= merges[-1] and len(set(merges)) > 1  # the thresholds really differ


def test_sweep_with_index_subset_of_thresholds_and_roi(case):
    vol, agg = case
    shape = agg.fragments.shape
    begin = tuple(o + 3 * v for o, v in zip(vol.offset, vol.voxel_size))
    extent = tuple(20 * v for v in vol.voxel_size)
    index = SkeletonIndex(vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset, shape=shape,
                          roi_begin=begin, roi_shape=extent)
    result = sweep(agg, index, [0.3, 0.7])
    for t, s in zip([0.3, 0.7], result.scores):
        assert s.as_dict() == pytest.approx(index.score(agg.segmentation(t)).as_dict(), nan_ok=True)
    rows = result.rows()
    assert [r["threshold"] for r in rows] == [0.3, 0.7]
    assert result.best()["threshold"] in (0.3, 0.7)
    assert result.column("nerl").shape == (2,)


def test_best_ignores_nan():
    from types import SimpleNamespace

    from xpress_fast.sweeps import SweepResult

    def s(v):
        return SimpleNamespace(xpress_erl_rand=v, as_dict=lambda: {"xpress_erl_rand": v})

    r = SweepResult(np.array([0.1, 0.2, 0.3]), (s(0.2), s(float("nan")), s(0.5)))
    assert r.best()["threshold"] == 0.3


def test_node_fragment_ids_from_lazy_array_equals_numpy(tmp_path):
    from xpress_fast import io

    rng = np.random.default_rng(0)
    frags = rng.integers(0, 100, size=(70, 20, 30)).astype(np.uint64)
    io.write_volume(tmp_path / "f.zarr", "f", frags, voxel_size=(1, 1, 1), chunks=(16, 16, 16))
    vox = np.stack([rng.integers(0, s, 200) for s in frags.shape], axis=1)
    lazy = io.open_volume(tmp_path / "f.zarr", "f").data
    np.testing.assert_array_equal(node_fragment_ids(lazy, vox), frags[tuple(vox.T)])
    np.testing.assert_array_equal(node_fragment_ids(frags, vox), frags[tuple(vox.T)])


def test_sweep_bad_input(case):
    vol, agg = case
    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    with pytest.raises(ValueError, match="voxel_size is required"):
        sweep(agg, vol.skeletons)
    with pytest.raises(ValueError, match="strictly increasing"):
        sweep(agg, vol.skeletons, [0.5, 0.3], **geo)
    with pytest.raises(ValueError, match=r"thresholds must be numbers <= 0.9, the largest threshold"):
        sweep(agg, vol.skeletons, [0.95], **geo)
    index = SkeletonIndex(vol.skeletons, shape=agg.fragments.shape, **geo)
    with pytest.raises(ValueError, match="must not be given with a SkeletonIndex"):
        sweep(agg, index, [0.5], voxel_size=vol.voxel_size)
    small = SkeletonIndex(vol.skeletons, shape=(32, 36, 39), **geo)
    with pytest.raises(ValueError, match=r"built for shape \(32, 36, 39\)"):
        sweep(agg, small, [0.5])
    with pytest.raises(TypeError, match="must be an Agglomeration"):
        sweep(object(), vol.skeletons, [0.5], **geo)
    from types import SimpleNamespace

    with pytest.raises(TypeError, match="must carry its fragments"):
        sweep(SimpleNamespace(map=agg.map, fragments=None), vol.skeletons, [0.5], **geo)


def test_public_name_is_callable():
    assert callable(xpress_fast.sweep)


def test_any_object_with_map_gives_the_same_scores(case):
    from types import SimpleNamespace

    vol, agg = case
    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    plain = SimpleNamespace(map=agg.map, fragments=agg.fragments)  # no lut / fragment_ids: the slow path
    a = sweep(agg, vol.skeletons, THRESHOLDS, **geo)
    b = sweep(plain, vol.skeletons, THRESHOLDS, **geo)
    for x, y in zip(a.scores, b.scores):
        assert x.as_dict() == pytest.approx(y.as_dict(), nan_ok=True)


# ---------------------------------------------------------------------------------------------
# every threshold's labels from one pass over the merge history
# ---------------------------------------------------------------------------------------------


def reference_history_labels(fragment_ids, u, v, prefix, item_fragment, item_id):
    """merge_history_labels written as plainly as possible: per prefix, relabel set ids merge by
    merge, then give each item its set's smallest fragment id (or its own id if outside)."""
    out = np.zeros((len(prefix), len(item_id)), dtype=np.uint64)
    for t, k in enumerate(prefix):
        owner = list(range(len(fragment_ids)))
        for a, b in zip(u[:k], v[:k]):
            old, new = owner[b], owner[a]
            owner = [new if o == old else o for o in owner]
        for j, f in enumerate(item_fragment):
            if f < 0:
                out[t, j] = item_id[j]
            else:
                members = [g for g in range(len(fragment_ids)) if owner[g] == owner[f]]
                out[t, j] = fragment_ids[min(members)]
    return out


@st.composite
def histories(draw):
    n = draw(st.integers(1, 8))
    fragment_ids = np.array(sorted(draw(st.sets(st.integers(1, 2**64 - 1), min_size=n, max_size=n))), np.uint64)
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=10))
    u = np.array([p[0] for p in pairs], dtype=np.int64)
    v = np.array([p[1] for p in pairs], dtype=np.int64)
    prefix = np.array(sorted(draw(st.lists(st.integers(0, len(pairs)), max_size=5))), dtype=np.int64)
    m = draw(st.integers(0, 12))
    item_fragment = np.array(draw(st.lists(st.integers(-1, n - 1), min_size=m, max_size=m)), dtype=np.int64)
    item_id = np.array(draw(st.lists(st.integers(0, 2**64 - 1), min_size=m, max_size=m)), dtype=np.uint64)
    return fragment_ids, u, v, prefix, item_fragment, item_id


@given(history=histories())
def test_merge_history_labels_equals_reference(history):
    from xpress_fast import _segment

    got = _segment.merge_history_labels(*history)
    np.testing.assert_array_equal(got, reference_history_labels(*history))


def test_merge_history_labels_bad_input():
    from xpress_fast import _segment

    ids = np.array([3, 5, 9], dtype=np.uint64)
    u, v = np.array([0, 1], dtype=np.int64), np.array([1, 2], dtype=np.int64)
    items = (np.array([0, -1], dtype=np.int64), np.array([3, 7], dtype=np.uint64))
    with pytest.raises(ValueError, match="non-decreasing"):
        _segment.merge_history_labels(ids, u, v, np.array([2, 1], dtype=np.int64), *items)
    with pytest.raises(ValueError, match="non-decreasing"):
        _segment.merge_history_labels(ids, u, v, np.array([3], dtype=np.int64), *items)
    with pytest.raises(ValueError, match="item_fragment"):
        _segment.merge_history_labels(ids, u, v, np.array([1], dtype=np.int64),
                                      np.array([3], dtype=np.int64), np.array([1], dtype=np.uint64))
    with pytest.raises(ValueError, match="merge fragment index"):
        _segment.merge_history_labels(ids, np.array([0], dtype=np.int64), np.array([3], dtype=np.int64),
                                      np.array([1], dtype=np.int64), *items)


def test_map_many_equals_map_per_threshold(case):
    vol, agg = case
    ids = np.unique(agg.fragments)[::3]
    ids = np.concatenate([ids, [0, 10**12]]).astype(np.uint64)  # background and an id outside the graph
    ts = [0.7, 0.1, 0.5, 0.5, 0.9, 0.0]  # any order, repeats, and no merge at all
    got = agg.map_many(ids.reshape(-1, 1), ts)
    assert got.shape == (len(ts), ids.size, 1)
    for row, t in zip(got, ts):
        np.testing.assert_array_equal(row[:, 0], agg.map(ids, t))
    assert len({tuple(r.ravel()) for r in got}) > 2  # the thresholds really differ
    np.testing.assert_array_equal(agg.map_many(ids.astype(np.int64), [0.3])[0], agg.map(ids, 0.3))
    assert agg.map_many(ids, []).shape == (0, ids.size)


def test_map_many_bad_input(case):
    _, agg = case
    ids = np.array([1, 2], dtype=np.uint64)
    with pytest.raises(ValueError, match=r"thresholds must be numbers <= 0.9, .*; got 0.95"):
        agg.map_many(ids, [0.5, 0.95])
    with pytest.raises(ValueError, match="thresholds must be finite; got nan"):
        agg.map_many(ids, [float("nan")])
    with pytest.raises(TypeError, match="thresholds must be a sequence of numbers"):
        agg.map_many(ids, [0.5, "0.7"])
    with pytest.raises(TypeError, match="thresholds must be a sequence"):
        agg.map_many(ids, 0.5)
    with pytest.raises(TypeError, match="fragment_ids must be an integer array"):
        agg.map_many(ids.astype(np.float64), [0.5])
    with pytest.raises(ValueError, match="fragment_ids must not be negative"):
        agg.map_many(np.array([-1]), [0.5])


def test_sweep_methods_rows_equal_one_sweep_per_method(case):
    from xpress_fast.region_graphs import axis_offsets
    from xpress_fast.sweeps import sweep_methods

    vol, agg = case
    lab = vol.labels
    offsets = axis_offsets((3,))
    rng = np.random.default_rng(5)
    far = []
    for o in offsets[3:]:
        shifted = np.roll(lab, shift=[-c for c in o], axis=(0, 1, 2))  # lab[v + o], wrapped
        far.append(np.clip(0.6 * ((shifted == lab) & (lab > 0)) + 0.4 * rng.random(lab.shape), 0, 1))
    nn = np.clip(0.6 * label_affinities(lab) + 0.4 * rng.random((3,) + lab.shape), 0, 1)
    affs = np.concatenate([nn, np.stack(far)]).astype(np.float32)
    frags = xpress_fast.watershed(affs, min_seed_distance=3)
    result = sweep_methods(affs, vol.skeletons, THRESHOLDS, merge_functions=["mean", "hist_quant_75"],
                           offsets=offsets, mutex_biases=[0.4, 0.6], fragments=frags, voxel_size=vol.voxel_size,
                           offset=vol.offset)
    rows = list(result.rows)
    assert len(rows) == 2 * 2 * len(THRESHOLDS) + 2
    k = 0
    for method, offs in (("agglomerate", None), ("agglomerate-longrange", offsets)):
        for mf in ("mean", "hist_quant_75"):
            want = sweep(xpress_fast.merge_history(affs, THRESHOLDS, fragments=frags, merge_function=mf, offsets=offs),
                         vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset).rows()
            for w in want:
                assert rows[k] == pytest.approx({"method": method, "merge_function": mf, **w}, nan_ok=True)
                k += 1
    for bias in (0.4, 0.6):
        seg = xpress_fast.mutex_watershed(affs, offsets, bias=bias)
        want = xpress_fast.xpress_scores(seg, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset)
        assert rows[k]["method"] == "mutex" and rows[k]["threshold"] == bias
        assert rows[k]["xpress_erl_rand"] == pytest.approx(want.xpress_erl_rand)
        k += 1
    best = max(rows, key=lambda r: r["xpress_erl_rand"])
    assert result.best() == best
    assert result.choice()["xpress_erl_rand"] == best["xpress_erl_rand"]
    assert result.choice()["uses_offsets"] == (best["method"] != "agglomerate")


def test_sweep_methods_bad_input(case):
    from xpress_fast.sweeps import sweep_methods

    vol, agg = case
    affs = np.full((3,) + vol.labels.shape, 0.5, np.float32)
    kw = {"voxel_size": vol.voxel_size}
    with pytest.raises(ValueError, match="merge_function must be one of"):
        sweep_methods(affs, vol.skeletons, merge_functions=["median"], **kw)
    with pytest.raises(ValueError, match="merge_functions must name at least one"):
        sweep_methods(affs, vol.skeletons, merge_functions=[], **kw)
    with pytest.raises(ValueError, match=r"thresholds must be numbers in \[0, 1\]"):
        sweep_methods(affs, vol.skeletons, [0.5, 1.5], **kw)
    with pytest.raises(ValueError, match="mutex_biases needs offsets"):
        sweep_methods(affs, vol.skeletons, mutex_biases=[0.5], **kw)
    with pytest.raises(ValueError, match="offsets must give one offset per affinity channel"):
        sweep_methods(affs, vol.skeletons, offsets=[(-1, 0, 0)], **kw)
    with pytest.raises(ValueError, match="voxel_size is required"):
        sweep_methods(affs, vol.skeletons)
