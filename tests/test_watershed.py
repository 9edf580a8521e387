from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import xpress_fast as xf
from xpress_fast.fragments import blockwise_watershed, distance_transform_seeds
from reference_segment import is_connected, label_affinities, ref_watershed


@st.composite
def volumes(draw, max_side=6):
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    channels = draw(st.integers(3, 4))
    if channels > 3 and shape[2] == 3 and min(shape[:2]) >= 4:
        channels = 3  # check_affinities refuses that shape as channel-last (tests/test_no_silent_wraps.py)
    affs = rng.integers(0, 256, size=(channels,) + shape, dtype=np.uint8)
    if draw(st.booleans()):  # few levels: many ties, which the FIFO order must settle identically
        affs = (affs // 64 * 64).astype(np.uint8)
    n_seeds = draw(st.integers(1, 4))
    seeds = np.zeros(shape, np.uint64)
    flat = rng.choice(seeds.size, size=min(n_seeds, seeds.size), replace=False)
    seeds.ravel()[flat] = rng.integers(1, 2**40, size=len(flat), dtype=np.uint64)
    mask = None
    if draw(st.booleans()):
        mask = rng.random(shape) < 0.8
    return affs, seeds, mask


@given(volumes())
def test_watershed_matches_reference(vol):
    affs, seeds, mask = vol
    ours = xf.watershed(affs, seeds=seeds, mask=mask)
    np.testing.assert_array_equal(ours, ref_watershed(affs, seeds, mask))


@st.composite
def blocked_volumes(draw):
    """Volumes cut into several first-level blocks (the kernel's tuning knob), seeds that may
    share ids, and a thread count: the blocks, the coarser levels and the threads must not
    change the result."""
    affs, seeds, mask = draw(volumes(max_side=9))
    if draw(st.booleans()):  # a few ids used by several seed voxels
        seeds[seeds != 0] = seeds[seeds != 0] % np.uint64(3) + np.uint64(1)
    block = tuple(draw(st.integers(1, 4)) for _ in range(3))
    threads = draw(st.integers(1, 3))
    return affs, seeds, mask, block, threads


@given(blocked_volumes())
def test_watershed_blocks_and_threads_match_reference(vol):
    from xpress_fast import _segment

    affs, seeds, mask, block, threads = vol
    expected = ref_watershed(affs, seeds, mask)
    labels = seeds.copy()
    mask_arr = None
    if mask is not None:
        labels[~mask] = 0
        mask_arr = mask.astype(np.uint8)
    _segment.watershed_uint8(affs, labels, mask_arr, threads, block)
    np.testing.assert_array_equal(labels, expected)
    labels = seeds.copy()
    if mask is not None:
        labels[~mask] = 0
    _segment.watershed_float32(affs.astype(np.float32) / np.float32(255), labels, mask_arr, threads, block)
    np.testing.assert_array_equal(labels, expected)


def test_watershed_on_a_volume_of_many_blocks_matches_reference():
    # smooth, noisy affinities of a few cells: large components that cross many block faces
    rng = np.random.default_rng(3)
    cells = ndimage.zoom(rng.integers(1, 6, size=(3, 4, 4)), (6, 5, 5), order=0)
    affs = (label_affinities(cells) * 200 + rng.integers(0, 56, size=(3,) + cells.shape)).astype(np.uint8)
    seeds = np.zeros(cells.shape, np.uint64)
    flat = rng.choice(seeds.size, size=12, replace=False)
    seeds.ravel()[flat] = np.arange(1, 13, dtype=np.uint64)
    from xpress_fast import _segment

    expected = ref_watershed(affs, seeds)
    np.testing.assert_array_equal(xf.watershed(affs, seeds=seeds, threads=2), expected)
    for block, threads in (((4, 4, 4), 2), ((3, 7, 5), 1), ((18, 1, 20), 3)):
        labels = seeds.copy()
        _segment.watershed_uint8(affs, labels, None, threads, block)
        np.testing.assert_array_equal(labels, expected)


@st.composite
def densely_seeded_volumes(draw):
    """Few affinity levels and seeds on up to half the voxels, in blocks of 3 or more voxels a
    side: ties at the boundary between two seeds are where the shortcuts of the blocks (edges
    dropped as the weakest of a square, voxels joined along their strongest edge) must follow
    the Kruskal order exactly."""
    shape = tuple(draw(st.integers(3, 9)) for _ in range(3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_levels = draw(st.integers(2, 4))
    affs = (rng.integers(0, n_levels, size=(3,) + shape) * (255 // (n_levels - 1))).astype(np.uint8)
    seeds = np.where(rng.random(shape) < draw(st.floats(0.05, 0.5)),
                     rng.integers(1, 6, size=shape), 0).astype(np.uint64)
    block = tuple(draw(st.integers(3, 6)) for _ in range(3))
    return affs, seeds, block


@given(densely_seeded_volumes())
def test_watershed_with_dense_seeds_and_ties_matches_reference(vol):
    from xpress_fast import _segment

    affs, seeds, block = vol
    expected = ref_watershed(affs, seeds)
    np.testing.assert_array_equal(xf.watershed(affs, seeds=seeds), expected)
    labels = seeds.copy()
    _segment.watershed_uint8(affs, labels, None, 2, block)
    np.testing.assert_array_equal(labels, expected)


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_watershed_rejects_bad_threads(threads):
    affs = np.zeros((3, 4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        xf.watershed(affs, threads=threads)


@given(volumes())
def test_watershed_invariants(vol):
    affs, seeds, mask = vol
    affs_before, seeds_before = affs.copy(), seeds.copy()
    mask_before = None if mask is None else mask.copy()
    ours = xf.watershed(affs, seeds=seeds, mask=mask)
    # inputs unchanged
    np.testing.assert_array_equal(affs, affs_before)
    np.testing.assert_array_equal(seeds, seeds_before)
    if mask is not None:
        np.testing.assert_array_equal(mask, mask_before)
        assert np.all(ours[~mask] == 0)
    assert ours.dtype == np.uint64 and ours.shape == seeds.shape
    inside = np.ones(seeds.shape, bool) if mask is None else mask
    # seeds keep their ids; every fragment is connected and holds exactly one seed (seeds are single voxels)
    kept = (seeds != 0) & inside
    np.testing.assert_array_equal(ours[kept], seeds[kept])
    for label in np.unique(ours[ours != 0]):
        region = ours == label
        assert is_connected(region)
        assert np.count_nonzero(region & kept) == 1
    # float32 on uint8-exact values gives the same fragments as uint8
    f32 = affs.astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(xf.watershed(f32, seeds=seeds, mask=mask), ours)


def test_watershed_flood_follows_strongest_edge():
    # 1 x 1 x 3: seed 1 at x=0, seed 2 at x=2; the middle voxel joins the stronger edge
    affs = np.zeros((3, 1, 1, 3), np.float32)
    affs[2, 0, 0, 1] = 0.2  # edge {x=0, x=1}
    affs[2, 0, 0, 2] = 0.9  # edge {x=1, x=2}
    seeds = np.array([[[1, 0, 2]]], np.uint64)
    np.testing.assert_array_equal(xf.watershed(affs, seeds=seeds), [[[1, 2, 2]]])
    affs[2, 0, 0, 1] = 0.95
    np.testing.assert_array_equal(xf.watershed(affs, seeds=seeds), [[[1, 1, 2]]])


def test_unreached_voxels_stay_zero():
    affs = np.ones((3, 1, 1, 4), np.float32)
    mask = np.array([[[1, 0, 1, 1]]], bool)
    seeds = np.array([[[5, 0, 0, 0]]], np.uint64)
    np.testing.assert_array_equal(xf.watershed(affs, seeds=seeds, mask=mask), [[[5, 0, 0, 0]]])


def _blobs(shape=(24, 32, 32), seed=0):
    rng = np.random.default_rng(seed)
    gt = ndimage.label(ndimage.gaussian_filter(rng.random(shape), 2) > 0.5)[0]
    affs = label_affinities(gt)
    affs = np.clip(affs * 0.8 + rng.random(affs.shape).astype(np.float32) * 0.3, 0, 1)
    return (affs * 255).round().astype(np.uint8), gt


def test_automatic_seeds_are_distance_transform_maxima():
    affs, _ = _blobs()
    seeds = distance_transform_seeds(affs, threshold=0.5, min_seed_distance=5)
    inside = affs[:3].astype(np.float32).mean(axis=0) / 255 > 0.5
    dist = ndimage.distance_transform_edt(inside)
    maxima = (ndimage.maximum_filter(dist, size=5) == dist) & inside
    expected, n = ndimage.label(maxima)
    assert n > 1
    np.testing.assert_array_equal(seeds, expected)
    frags = xf.watershed(affs, min_seed_distance=5)
    # each fragment grows from exactly one seed component and keeps its id
    np.testing.assert_array_equal(frags[seeds != 0], seeds[seeds != 0])
    assert set(np.unique(frags)) - {0} == set(range(1, n + 1))


def test_id_offset_shifts_automatic_seeds():
    affs, _ = _blobs(seed=1)
    base = xf.watershed(affs, min_seed_distance=5)
    shifted = xf.watershed(affs, min_seed_distance=5, id_offset=1000)
    np.testing.assert_array_equal(shifted[base != 0], base[base != 0] + 1000)
    np.testing.assert_array_equal(shifted[base == 0], 0)


def test_min_mean_affinity_removes_weak_fragments():
    affs, _ = _blobs(seed=2)
    frags = xf.watershed(affs, min_seed_distance=5)
    filtered = xf.watershed(affs, min_seed_distance=5, min_mean_affinity=0.45)
    mean = affs[:3].astype(np.float64).mean(axis=0) / 255
    ids = np.unique(frags[frags != 0])
    means = ndimage.mean(mean, frags, ids)
    weak = ids[means < 0.45]
    assert 0 < len(weak) < len(ids)
    np.testing.assert_array_equal(filtered, np.where(np.isin(frags, weak), 0, frags))


def test_float32_and_uint8_agree_on_automatic_seeds():
    affs, _ = _blobs(seed=3)
    np.testing.assert_array_equal(
        xf.watershed(affs, min_seed_distance=5), xf.watershed(affs.astype(np.float32) / 255, min_seed_distance=5)
    )


@pytest.mark.parametrize(
    "affs, kwargs, error, match",
    [
        (np.zeros((3, 2, 2, 2), np.float64), {}, TypeError, "affs.dtype must be float32 or uint8; got float64"),
        (np.zeros((3, 2, 2, 2), np.int32), {}, TypeError, "affs.dtype must be float32 or uint8; got int32"),
        (np.zeros((3, 2, 2), np.float32), {}, ValueError, "affs must be 4-dimensional"),
        (np.zeros((2, 2, 2, 2), np.float32), {}, ValueError, "at least 3 channels"),
        (np.zeros((3, 0, 2, 2), np.float32), {}, ValueError, "affs must not be empty"),
        (np.full((3, 2, 2, 2), np.nan, np.float32), {}, ValueError, "affs must not contain NaN"),
        (np.full((3, 2, 2, 2), 1.5, np.float32), {}, ValueError, r"affs must lie in \[0, 1\]"),
        ("affs", {}, TypeError, "affs must be a numpy array"),
        (np.zeros((3, 2, 2, 2), np.float32), {"seeds": np.zeros((2, 2), np.uint64)}, ValueError,
         "seeds must have the spatial shape of affs"),
        (np.zeros((3, 2, 2, 2), np.float32), {"seeds": np.zeros((2, 2, 2), np.float32)}, TypeError,
         "seeds must be an integer label array"),
        (np.zeros((3, 2, 2, 2), np.float32), {"seeds": -np.ones((2, 2, 2), np.int64)}, ValueError,
         "seeds must not contain negative labels"),
        (np.zeros((3, 2, 2, 2), np.float32), {"mask": np.ones((2, 2, 3), bool)}, ValueError,
         "mask must have the spatial shape of affs"),
        (np.zeros((3, 2, 2, 2), np.float32), {"mask": np.ones((2, 2, 2), np.float32)}, TypeError,
         "mask must be a boolean or integer array"),
        (np.zeros((3, 2, 2, 2), np.float32), {"id_offset": -1}, ValueError, "id_offset must be an integer in"),
        (np.zeros((3, 2, 2, 2), np.float32), {"threshold": 2.0}, ValueError, r"threshold must be a number in \[0, 1\]"),
        (np.zeros((3, 2, 2, 2), np.float32), {"min_mean_affinity": -0.1}, ValueError, "min_mean_affinity must be"),
        (np.zeros((3, 2, 2, 2), np.float32), {"min_seed_distance": 0}, ValueError, "min_seed_distance must be"),
    ],
)
def test_watershed_rejects_bad_input(affs, kwargs, error, match):
    with pytest.raises(error, match=match):
        xf.watershed(affs, **kwargs)


def test_watershed_accepts_fortran_order_and_extra_channels():
    rng = np.random.default_rng(5)
    affs = rng.integers(0, 256, size=(5, 4, 5, 6), dtype=np.uint8)
    seeds = np.zeros((4, 5, 6), np.int32)
    seeds[0, 0, 0], seeds[3, 4, 5] = 1, 2
    expected = xf.watershed(affs[:3], seeds=seeds)
    np.testing.assert_array_equal(xf.watershed(np.asfortranarray(affs), seeds=np.asfortranarray(seeds)), expected)


@st.composite
def inside_maps(draw):
    """Binary maps of varied shapes: thin (one voxel) along any axis, wider than the kernel's
    16-column chunks along x, all inside, all outside, or in between."""
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 12)), draw(st.sampled_from([1, 2, 5, 16, 17, 33, 40])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["random", "all inside", "all outside", "sparse outside"]))
    if kind == "random":
        inside = rng.random(shape) < draw(st.floats(0.05, 0.95))
    elif kind == "all inside":
        inside = np.ones(shape, bool)
    elif kind == "all outside":
        inside = np.zeros(shape, bool)
    else:  # a few outside voxels: long distances, lines without background
        inside = np.ones(shape, bool)
        inside.ravel()[rng.integers(inside.size, size=draw(st.integers(1, 3)))] = False
    return inside.astype(np.uint8)


def _scipy_seeds(inside, size, id_offset=0):
    """The baseline's seeds by scipy: squared EDT, maxima, labels (+ id_offset)."""
    if inside.all():  # no background: our distances are +inf everywhere (scipy's are not defined)
        d2 = np.full(inside.shape, np.inf, np.float32)
        maxima = inside != 0
    else:
        dist = ndimage.distance_transform_edt(inside)
        d2 = (dist**2).round().astype(np.float32)
        maxima = (ndimage.maximum_filter(dist, size=size) == dist) & (inside != 0)
    labels, n = ndimage.label(maxima, output=np.uint64)
    labels[labels != 0] += np.uint64(id_offset)
    return d2, maxima, labels, n


@given(inside_maps(), st.integers(1, 12), st.integers(1, 3), st.sampled_from([0, 1, 1000, 2**40]))
@settings(max_examples=300)
def test_distance_seeds_match_scipy(inside, size, threads, id_offset):
    from xpress_fast import _segment

    d2, maxima, labels, n = _scipy_seeds(inside, size, id_offset)
    np.testing.assert_array_equal(_segment.squared_edt(inside, threads), d2)
    np.testing.assert_array_equal(_segment.distance_maxima(inside, size, threads).view(bool), maxima)
    seeds, count = _segment.distance_seeds(inside, size, id_offset, threads)
    assert seeds.dtype == np.uint64 and count == n
    np.testing.assert_array_equal(seeds, labels)  # scipy's numbering exactly


@given(st.tuples(st.integers(1, 7), st.integers(1, 7), st.integers(1, 20)), st.integers(0, 2**32 - 1),
       st.floats(0.2, 0.9), st.integers(1, 3))
def test_distance_seeds_number_components_as_scipy_label(shape, seed, fill, threads):
    # size 1: every inside voxel is a maximum, so the seeds are the components of arbitrary masks
    from xpress_fast import _segment

    rng = np.random.default_rng(seed)
    inside = (rng.random(shape) < fill).astype(np.uint8)
    inside.ravel()[rng.integers(inside.size)] = 0
    expected, n = ndimage.label(inside, output=np.uint64)
    seeds, count = _segment.distance_seeds(inside, 1, 0, threads)
    assert count == n
    np.testing.assert_array_equal(seeds, expected)


@given(st.tuples(st.integers(1, 40), st.integers(1, 20), st.integers(1, 20)), st.integers(0, 2**32 - 1),
       st.floats(0.3, 0.97), st.integers(1, 16), st.integers(1, 4))
@settings(max_examples=200)
def test_distance_maxima_match_scipy_along_long_z(shape, seed, fill, size, threads):
    # the z maximum is streamed over blocks of `size` slices: several blocks per thread, thread
    # ranges that start inside a block, windows past both ends of z, size above Z, even sizes;
    # the x maximum runs over bands of 16 rows (a last band narrower)
    from xpress_fast import _segment

    rng = np.random.default_rng(seed)
    inside = (rng.random(shape) < fill).astype(np.uint8)
    inside.ravel()[rng.integers(inside.size)] = 0
    _, maxima, labels, n = _scipy_seeds(inside, size)
    np.testing.assert_array_equal(_segment.distance_maxima(inside, size, threads).view(bool), maxima)
    seeds, count = _segment.distance_seeds(inside, size, 0, threads)
    assert count == n
    np.testing.assert_array_equal(seeds, labels)


@pytest.mark.parametrize("shape", [(3, 140, 33), (140, 3, 33), (2, 70, 140), (40, 40, 40)])
def test_distance_seeds_match_scipy_far_from_background(shape):
    # distances beyond the kernel's direct search (64 rows) take the lower envelope
    from xpress_fast import _segment

    rng = np.random.default_rng(sum(shape))
    for fill in (0.999, 0.99995, 1.0):
        inside = (rng.random(shape) < fill).astype(np.uint8)
        inside[shape[0] // 2, 1, 0] = 0
        d2, maxima, labels, n = _scipy_seeds(inside, 7, 5)
        np.testing.assert_array_equal(_segment.squared_edt(inside, 2), d2)
        seeds, count = _segment.distance_seeds(inside, 7, 5, 2)
        assert count == n
        np.testing.assert_array_equal(seeds, labels)


def test_automatic_seeds_with_id_offset_match_scipy():
    affs, _ = _blobs(seed=4)
    inside = (affs[:3].astype(np.float32).mean(axis=0) / 255 > 0.5).astype(np.uint8)
    for threads in (1, 2, 3):
        got = distance_transform_seeds(affs, threshold=0.5, min_seed_distance=4, id_offset=77, threads=threads)
        np.testing.assert_array_equal(got, _scipy_seeds(inside, 4, 77)[2])


# ------------------------------------------------------------------------------------------------
# block-wise fragments (the pipeline's definition, in memory)


@given(volumes(), st.tuples(*[st.integers(0, 3)] * 3), st.tuples(*[st.integers(0, 4)] * 3), st.integers(1, 4))
def test_blockwise_watershed_with_one_block_is_the_watershed(vol, extra, context, min_seed_distance):
    # a block covering the volume is the whole volume (id offset 0), and its context falls outside
    affs = vol[0]
    before = affs.copy()
    block_shape = tuple(s + e for s, e in zip(affs.shape[1:], extra))
    got = blockwise_watershed(affs, block_shape=block_shape, context=context, min_seed_distance=min_seed_distance)
    np.testing.assert_array_equal(got, xf.watershed(affs, min_seed_distance=min_seed_distance))
    np.testing.assert_array_equal(affs, before)


def test_blockwise_watershed_is_each_blocks_watershed_with_context_core_kept():
    # the definition written out by hand for a (20, 24, 24) volume in blocks of (10, 16, 30),
    # context (3, 2, 5): a 2 x 2 x 1 grid; x is one block (30 clipped to 24, its context outside)
    affs, gt = _blobs(shape=(20, 24, 24), seed=4)
    stride = (10 + 2 * 3) * (16 + 2 * 2) * (24 + 2 * 5) + 1  # voxels of the largest read region + 1
    blocks = [  # (core z, core y, read z, read y), in C order of the grid
        ((0, 10), (0, 16), (0, 13), (0, 18)),
        ((0, 10), (16, 24), (0, 13), (14, 24)),
        ((10, 20), (0, 16), (7, 20), (0, 18)),
        ((10, 20), (16, 24), (7, 20), (14, 24)),
    ]
    want = np.zeros(gt.shape, np.uint64)
    for i, ((cz0, cz1), (cy0, cy1), (rz0, rz1), (ry0, ry1)) in enumerate(blocks):
        frag = xf.watershed(affs[:, rz0:rz1, ry0:ry1], min_seed_distance=4, id_offset=i * stride)
        want[cz0:cz1, cy0:cy1] = frag[cz0 - rz0:cz1 - rz0, cy0 - ry0:cy1 - ry0]
    got = blockwise_watershed(affs, block_shape=(10, 16, 30), context=(3, 2, 5), min_seed_distance=4)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want[10:, 16:])) > 2  # the last block holds fragments with offset ids


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"block_shape": (8, 8)}, ValueError, "block_shape must be three positive integers"),
        ({"block_shape": (8, 0, 8)}, ValueError, "block_shape must be three positive integers"),
        ({"block_shape": (8, 4.5, 8)}, ValueError, "block_shape must be three positive integers"),
        ({"block_shape": None}, TypeError, "block_shape must be three positive integers"),
        ({"block_shape": (8, 8, 8), "context": (1, 1)}, ValueError, "context must be three integers >= 0"),
        ({"block_shape": (8, 8, 8), "context": (1, -1, 1)}, ValueError, "context must be three integers >= 0"),
        ({"block_shape": (8, 8, 8), "id_offset": 5}, ValueError, "must not set id_offset"),
        ({"block_shape": (8, 8, 8), "seeds": np.ones((12, 12, 12), np.uint64)}, ValueError, "must not set seeds"),
        ({"block_shape": (8, 8, 8), "mask": np.ones((12, 12, 12), bool)}, ValueError, "must not set mask"),
        ({"block_shape": (8, 8, 8), "min_seed_distance": 0}, ValueError, "min_seed_distance must be"),
    ],
)
def test_blockwise_watershed_rejects_bad_input(kwargs, error, match):
    affs = np.full((3, 12, 12, 12), 0.9, np.float32)
    with pytest.raises(error, match=match):
        blockwise_watershed(affs, **kwargs)


def test_blockwise_watershed_rejects_bad_affinities():
    with pytest.raises(TypeError, match="affs.dtype must be float32 or uint8"):
        blockwise_watershed(np.zeros((3, 4, 4, 4)), block_shape=(2, 2, 2))


def test_agglomerate_refuses_context_without_block_shape():
    affs, _ = _blobs(shape=(8, 8, 8))
    with pytest.raises(ValueError, match="watershed_options sets context without block_shape"):
        xf.agglomerate(affs, 0.5, watershed_options={"context": (2, 2, 2)})


def test_clear_boundary_zeroes_exactly_the_voxels_outside_the_inside_map():
    affs, _ = _blobs(seed=4)
    full = xf.watershed(affs, min_seed_distance=5)
    cleared = xf.watershed(affs, min_seed_distance=5, clear_boundary=True)
    values = affs[:3].astype(np.float32) / np.float32(255)
    inside = (values[0] + values[1] + values[2]) / np.float32(3) > np.float32(0.5)
    assert 0 < inside.sum() < inside.size
    np.testing.assert_array_equal(cleared, np.where(inside, full, 0))
    np.testing.assert_array_equal(full, xf.watershed(affs, min_seed_distance=5, clear_boundary=False))
    with pytest.raises(TypeError, match="clear_boundary must be True or False"):
        xf.watershed(affs, clear_boundary="yes")


def test_channel_last_affinities_are_refused():
    affs = np.zeros((40, 8, 8, 3), np.float32)  # (Z, Y, X, C) read as C = 40
    with pytest.raises(ValueError, match=r"channel-last \(Z, Y, X, C\) affinities must be transposed"):
        xf.watershed(affs)
    with pytest.raises(ValueError, match="at most 32 channels"):
        xf.merge_history(affs, [0.5])
