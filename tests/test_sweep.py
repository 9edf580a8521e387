"""Threshold sweeps: equal to scoring each threshold's dense segmentation, from one read."""
from __future__ import annotations

import numpy as np
import pytest

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
    agg = xpress_fast.agglomerate(affs, THRESHOLDS, fragments=frags)
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
    with pytest.raises(ValueError, match=r"threshold must be <= 0.9"):
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
