"""The synthetic XNH-like volume generator (numpy/scipy only)."""
from __future__ import annotations

import subprocess
import sys

import warnings

import numpy as np
import pytest
from scipy import ndimage

import xpress_fast as xf

from xpress_fast.synthetic import SyntheticVolume, make_volume


@pytest.fixture(scope="module")
def vol() -> SyntheticVolume:
    return make_volume((64, 64, 64), seed=0)


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two label volumes (every label, 0 included, is a cluster)."""
    a = np.unique(a.ravel(), return_inverse=True)[1].astype(np.int64)
    b = np.unique(b.ravel(), return_inverse=True)[1].astype(np.int64)
    nij = np.unique(a * (b.max() + 1) + b, return_counts=True)[1].astype(float)

    def c2(x):
        return float((x * (x - 1) / 2).sum())

    sij, sa, sb = c2(nij), c2(np.bincount(a).astype(float)), c2(np.bincount(b).astype(float))
    total = a.size * (a.size - 1) / 2
    expected = sa * sb / total
    return (sij - expected) / (0.5 * (sa + sb) - expected)


def test_types_shapes_and_geometry(vol):
    assert vol.raw.shape == vol.labels.shape == (64, 64, 64)
    assert vol.raw.dtype == np.uint8 and vol.labels.dtype == np.uint64
    np.testing.assert_array_equal(vol.voxel_size, [33, 33, 33])
    np.testing.assert_array_equal(vol.offset, [0, 0, 0])
    ids = np.unique(vol.labels)
    assert ids[0] == 0 and len(ids) > 10  # background plus many axons
    assert 0.15 < (vol.labels > 0).mean() < 0.7  # packed, but with myelin and extracellular space
    assert vol.raw.std() > 10  # not a flat image


def test_deterministic_by_seed():
    a = make_volume((24, 24, 24), seed=3)
    b = make_volume((24, 24, 24), seed=3)
    c = make_volume((24, 24, 24), seed=4)
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.skeletons.positions, b.skeletons.positions)
    assert not np.array_equal(a.labels, c.labels)


def test_axon_radius_matches_white_matter(vol):
    # median axoplasm cross-section radius along the main axis (z): a few hundred nm at 33 nm voxels
    radii = []
    for z in (16, 32, 48):
        ids, areas = np.unique(vol.labels[z], return_counts=True)
        radii += list(np.sqrt(areas[ids > 0] / np.pi) * 33.0)
    assert 80 < np.median(radii) < 400


def test_skeletons_lie_in_their_own_axon(vol):
    sk = vol.skeletons
    assert sk.n_nodes > 50 and sk.ids is not None
    # on the scoring grid (voxel q covers [q, q + 1) * voxel_size + offset), each node's voxel
    vox = np.floor((sk.positions - vol.offset) / vol.voxel_size).astype(int)
    assert np.all((vox >= 0) & (vox < 64))
    np.testing.assert_array_equal(vol.labels[tuple(vox.T)], sk.ids)
    # ... so the labels themselves score perfectly, with no node outside the volume
    with warnings.catch_warnings():
        warnings.simplefilter("error", xf.XpressWarning)
        scores = xf.xpress_scores(vol.labels, sk, voxel_size=vol.voxel_size, offset=vol.offset)
    # a merge only where one axon's skeleton is in several pieces (it left its label for a while)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = sk.n_nodes
    _, comp = connected_components(coo_matrix((np.ones(len(sk.edges)), tuple(sk.edges.T)), (n, n)))
    pieces = np.unique(np.stack([comp, sk.ids]), axis=1)[1]  # axon id of each component
    assert scores.split_count == 0
    assert scores.merge_count == sum(k * (k - 1) // 2 for k in np.unique(pieces, return_counts=True)[1])
    # edges join nodes of one axon, a few voxels apart
    assert np.all(sk.ids[sk.edges[:, 0]] == sk.ids[sk.edges[:, 1]])
    assert np.all(sk.edge_lengths() < 8 * 33.0)
    # every axon with a sizeable label has a skeleton
    ids, counts = np.unique(vol.labels, return_counts=True)
    assert set(ids[(ids > 0) & (counts > 2000)]) <= set(np.unique(sk.ids))


def test_offset_voxel_size_and_main_axis():
    a = make_volume((40, 24, 24), seed=2, voxel_size=(40, 33, 33), offset=(100, 200, 300), main_axis=0)
    vox = (a.skeletons.positions - [100, 200, 300]) / [40, 33, 33]
    assert np.all(vox >= 0) and np.all(vox < np.array([40, 24, 24]))
    b = make_volume((24, 24, 40), seed=2, main_axis=2)
    # the axons run along x: label runs are long along x
    assert (b.labels[:, :, 1:] == b.labels[:, :, :-1]).mean() > (b.labels[1:] == b.labels[:-1]).mean()


def test_naive_thresholding_fails(vol):
    # connected components of thresholded (optionally smoothed) raw, at every threshold
    best = 0.0
    for sigma in (0.0, 1.0):
        r = ndimage.gaussian_filter(vol.raw.astype(np.float32), sigma) if sigma else vol.raw
        for t in range(40, 220, 12):
            cc, _ = ndimage.label(r > t)
            best = max(best, _ari(cc, vol.labels))
    assert best < 0.6


def test_import_is_torch_free():
    code = "import sys, xpress_fast.synthetic; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(shape=(4, 32, 32)), ValueError, "shape must be three integers >= 8"),
        (dict(shape=(32, 32)), ValueError, "shape must be three integers"),
        (dict(shape=None), TypeError, "shape must be three integers"),
        (dict(voxel_size=(0, 1, 1)), ValueError, "voxel_size must be positive"),
        (dict(main_axis=3), ValueError, "main_axis must be 0, 1 or 2"),
        (dict(g_ratio=1.2), ValueError, "g_ratio must lie in"),
        (dict(myelinated_fraction=-0.1), ValueError, "myelinated_fraction must lie in"),
        (dict(radius_nm=-1.0), ValueError, "radius_nm must be > 0"),
        (dict(gap_voxels=(2.0, 1.0)), ValueError, "gap_voxels must be"),
        (dict(noise=-1.0), ValueError, "blur_sigma and noise must be >= 0"),
        (dict(node_spacing=0), ValueError, "node_spacing must be > 0"),
    ],
)
def test_errors(kwargs, exc, match):
    kwargs = {"shape": (16, 16, 16), **kwargs}
    shape = kwargs.pop("shape")
    with pytest.raises(exc, match=match):
        make_volume(shape, **kwargs)


def ref_noisy_affinities(labels, offsets, noise, gaps, seed):
    """Voxel by voxel: the truth, the gap boxes, then the smoothed noise (same draws, same order)."""
    rng = np.random.default_rng(seed)
    shape = labels.shape
    truth = np.zeros((len(offsets),) + shape, np.float32)
    for c, off in enumerate(offsets):
        for v in np.ndindex(*shape):
            w = tuple(a + o for a, o in zip(v, off))
            if all(0 <= a < n for a, n in zip(w, shape)) and labels[v] != 0 and labels[v] == labels[w]:
                truth[(c,) + v] = 1.0
    for _ in range(gaps):
        z, y, x = (int(rng.integers(0, s)) for s in shape)
        for v in np.ndindex(*shape):
            if abs(v[0] - z) <= 2 and abs(v[1] - y) <= 2 and abs(v[2] - x) <= 2:
                truth[(slice(None),) + v] = np.maximum(truth[(slice(None),) + v], 0.85)
    out = np.empty_like(truth)
    for c in range(len(offsets)):
        field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0) * noise
        out[c] = np.clip(truth[c] * 0.8 + 0.1 + field, 0.0, 1.0)
    return out


def test_noisy_affinities_equal_reference():
    from xpress_fast.synthetic import noisy_affinities

    labels = np.random.default_rng(3).integers(0, 3, (6, 7, 5))
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 2, 0), (-3, 0, 1)]
    got = noisy_affinities(labels, offsets, noise=0.4, gaps=2, seed=5)
    np.testing.assert_array_equal(got, ref_noisy_affinities(labels, offsets, 0.4, 2, 5))
    # no noise: exactly the scaled truth, and the labels are not modified
    before = labels.copy()
    clean = noisy_affinities(labels, noise=0.0)
    np.testing.assert_array_equal(labels, before)
    assert clean.shape == (3, 6, 7, 5) and clean.dtype == np.float32
    np.testing.assert_allclose(np.unique(clean), [0.1, 0.9], rtol=1e-6)
    same = labels[1, 2, 3] == labels[0, 2, 3] != 0
    assert abs(clean[0, 1, 2, 3] - (0.9 if same else 0.1)) < 1e-6 and clean[0, 0, 2, 3] < 0.2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(labels=np.zeros((4, 4))), TypeError, "labels must be a 3-D integer array"),
    (dict(labels=np.zeros((4, 4, 4), np.float32)), TypeError, "labels must be a 3-D integer array"),
    (dict(offsets=[]), ValueError, "at least one"),
    (dict(offsets=[(0, 0, 0)]), ValueError, "zero offset"),
    (dict(offsets=[(1, 0)]), ValueError, "integer triples"),
    (dict(noise=float("nan")), ValueError, "noise must be"),
    (dict(gaps=-1), ValueError, "gaps must be"),
    (dict(gaps=1.5), ValueError, "gaps must be"),
])
def test_noisy_affinities_errors(kwargs, error, match):
    from xpress_fast.synthetic import noisy_affinities

    args = dict(labels=np.ones((4, 4, 4), np.uint8)) | kwargs
    with pytest.raises(error, match=match):
        noisy_affinities(args.pop("labels"), **args)
