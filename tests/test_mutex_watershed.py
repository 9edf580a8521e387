"""xpress_fast.mutex_watershed against the Python reference (exact labels), hand-checked cases,
input handling, every validation error, and the reference against mwatershed (a peer package).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xpress_fast as xf
from reference_mutex import mutex_watershed_reference, mutex_watershed_weights, singletons_to_labels
from reference_segment import same_partition

# nearest neighbours both ways, long range (3 and beyond the small volumes), diagonals
OFFSET_POOL = [
    (-1, 0, 0), (0, -1, 0), (0, 0, -1), (1, 0, 0), (0, 1, 0), (0, 0, 1),
    (-3, 0, 0), (0, -3, 0), (0, 0, -3), (0, 2, 0), (-2, -2, 0), (0, 1, -1), (1, -2, 3), (0, 0, -9),
]
LEVELS_FLOAT = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)  # exact in binary: many ties, w == 0
U8_BIASES = [float(np.float32(k) / np.float32(255)) for k in (0, 64, 128, 255)]  # aff == bias on uint8


def lattice_cases(draw, max_side=5, max_channels=5):
    shape = tuple(draw(st.integers(1, max_side)) for _ in range(3))
    n = draw(st.integers(1, max_channels))
    offsets = [draw(st.sampled_from(OFFSET_POOL)) for _ in range(n)]  # repeats allowed
    return shape, n, offsets


@st.composite
def cases(draw):
    """(affs, offsets, kwargs): float32 or uint8, often with few distinct values (ties), scalar or
    per-channel bias (some equal to affinity values: ignored edges), strides, a bool or integer mask."""
    shape, n, offsets = lattice_cases(draw)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from(["float32", "uint8"]))
    ties = draw(st.booleans())
    size = (n,) + shape
    if dtype == "uint8":
        if ties:
            levels = rng.choice(256, size=draw(st.integers(1, 4)), replace=False)
            affs = rng.choice(levels, size=size).astype(np.uint8)
        else:
            affs = rng.integers(0, 256, size=size, dtype=np.uint8)
        bias_pool = st.sampled_from(U8_BIASES + [0.5, 0.3])
    else:
        affs = rng.choice(LEVELS_FLOAT, size=size) if ties else rng.random(size, dtype=np.float32)
        bias_pool = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.3])
    kwargs = {}
    kind = draw(st.sampled_from(["default", "scalar", "per-channel"]))
    if kind == "scalar":
        kwargs["bias"] = draw(bias_pool)
    elif kind == "per-channel":
        kwargs["bias"] = [draw(bias_pool) for _ in range(n)]
    if draw(st.booleans()):
        kwargs["strides"] = [tuple(draw(st.integers(1, 3)) for _ in range(3)) for _ in range(n)]
    mask_kind = draw(st.sampled_from([None, "bool", "int"]))
    if mask_kind == "bool":
        kwargs["mask"] = rng.random(shape) < 0.8
    elif mask_kind == "int":
        kwargs["mask"] = rng.integers(0, 4, size=shape).astype(np.int64)
    return affs, offsets, kwargs


# ----------------------------------------------------------------------------------------------
# against the reference
# ----------------------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(cases())
def test_matches_reference_exactly(case):
    affs, offsets, kwargs = case
    want = mutex_watershed_reference(affs, offsets, **kwargs)
    for threads in (1, 2):
        got = xf.mutex_watershed(affs, offsets, threads=threads, **kwargs)
        assert got.dtype == np.uint64 and got.shape == affs.shape[1:]
        assert np.array_equal(got, want), (threads, got, want)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 2, 4]))
def test_ties_larger_volume(seed, n_levels):
    """Many equal priorities in a bigger volume, default-style offsets: the tie rule decides."""
    rng = np.random.default_rng(seed)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3)]
    levels = rng.choice(256, size=n_levels, replace=False)
    affs = rng.choice(levels, size=(6, 4, 6, 7)).astype(np.uint8)
    bias = [U8_BIASES[2]] * 3 + [0.5] * 3
    want = mutex_watershed_reference(affs, offsets, bias=bias)
    assert np.array_equal(xf.mutex_watershed(affs, offsets, bias=bias, threads=2), want)


def test_default_threads_and_offsets():
    rng = np.random.default_rng(3)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3)]
    affs = rng.random((6, 4, 5, 6), dtype=np.float32)
    want = mutex_watershed_reference(affs, offsets)
    assert np.array_equal(xf.mutex_watershed(affs, offsets), want)
    assert np.array_equal(xf.mutex_watershed(affs, offsets, threads=1), want)


def test_threads_agree_on_a_larger_volume():
    """Large enough for the parallel edge gathering and sorting; four levels: many ties."""
    rng = np.random.default_rng(5)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3)]
    affs = (rng.integers(0, 4, size=(6, 24, 32, 40)) * 85).astype(np.uint8)
    strides = [(1, 1, 1)] * 3 + [(1, 2, 2)] * 3
    one = xf.mutex_watershed(affs, offsets, bias=0.4, strides=strides, threads=1)
    for threads in (2, 3, 8):
        assert np.array_equal(xf.mutex_watershed(affs, offsets, bias=0.4, strides=strides,
                                                 threads=threads), one)


# ----------------------------------------------------------------------------------------------
# hand-checked cases (one row of x voxels; channel c at x links x to x + offsets[c])
# ----------------------------------------------------------------------------------------------

def row(*channels):
    """(C, 1, 1, X) float32 affinities from C lists of X values."""
    return np.array(channels, np.float32)[:, None, None, :]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_line_with_long_range_repulsion(impl):
    """x = 0..3, nearest neighbours (x, x-1) at x = 1, 2, 3: [.875, .125, .875] (w = +.375, -.375,
    +.375); the long-range edge (3, 0) has affinity 0 (w = -.5): first 0 and 3 are kept apart, then
    (1, 0) merges, (2, 1) keeps {0, 1} and {2} apart, (3, 2) merges {2} and {3} (no mutex between
    them): [1, 1, 2, 2]."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    affs = row([0, 0.875, 0.125, 0.875], [0, 0, 0, 0.0])
    got = run(affs, [(0, 0, -1), (0, 0, -3)])
    assert got.tolist() == [[[1, 1, 2, 2]]]
    # all three nearest neighbours attractive (.375, .25, .125): the earlier repulsion splits
    # the row at the first attraction that would join 0 and 3, the last one, (3, 2)
    affs = row([0, 0.875, 0.75, 0.625], [0, 0, 0, 0.0])
    assert run(affs, [(0, 0, -1), (0, 0, -3)]).tolist() == [[[1, 1, 1, 2]]]
    # the same with a weak repulsion (priority .0625, after every attraction): one cluster
    affs = row([0, 0.875, 0.75, 0.625], [0, 0, 0, 0.4375])
    assert run(affs, [(0, 0, -1), (0, 0, -3)]).tolist() == [[[1, 1, 1, 1]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_repulsion_blocks_later_merge(impl):
    """x = 0..2: (2, 0) repels with priority .5, then (1, 0) attracts (.25), then (2, 1) attracts
    (.125) but {0, 1} inherited the mutex with {2}: [1, 1, 2]. Without the long-range edge: one."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    offsets = [(0, 0, -1), (0, 0, -2)]
    assert run(row([0, 0.75, 0.625], [0, 0, 0.0]), offsets).tolist() == [[[1, 1, 2]]]
    assert run(row([0, 0.75, 0.625], [0, 0, 0.5]), offsets).tolist() == [[[1, 1, 1]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_mutex_inherited_on_both_sides(impl):
    """x = 0..3: (3, 0) repels (.5); (1, 0) merges (.375); (2, 3) merges (.25, stored at x = 2 by
    the +1 channel); (2, 1) (.125) would join {0, 1} and {2, 3}, whose mutex both inherited."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    affs = row([0, 0.875, 0.625, 0.5],   # (x, x-1): (1, 0) .875, (2, 1) .625, (3, 2) ignored
               [0.5, 0.5, 0.75, 0],      # (x, x+1): (2, 3) .75, the others ignored
               [0, 0, 0, 0.0])           # (x, x-3): (3, 0) 0
    assert run(affs, [(0, 0, -1), (0, 0, 1), (0, 0, -3)]).tolist() == [[[1, 1, 2, 2]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_tie_broken_by_channel(impl):
    """Two edges between voxels 0 and 1 with equal priority .25, one attractive, one repulsive:
    the lower channel goes first."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    offsets = [(0, 0, -1), (0, 0, -1)]
    assert run(row([0, 0.75], [0, 0.25]), offsets).tolist() == [[[1, 1]]]
    assert run(row([0, 0.25], [0, 0.75]), offsets).tolist() == [[[1, 2]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_tie_broken_by_channel_before_raster_index(impl):
    """Channel (x, x+1), all priorities .25: (0, 1) repels (stored at x = 0), (1, 2) attracts
    (x = 1); channel (x, x+2) attracts (0, 2) at x = 0. Order: channel 0 at x = 0, x = 1, then
    channel 1: 0|1, then {1, 2}, then (0, 2) is blocked: [1, 2, 2]. Swapping the two channels
    takes (0, 2) first although it sits at x = 0 like (0, 1): {0, 2}, then {0, 2}|1, and (1, 2)
    is blocked: [1, 2, 1]."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    near = [0.25, 0.75, 0.0]
    far = [0.75, 0.0, 0.0]
    assert run(row(near, far), [(0, 0, 1), (0, 0, 2)]).tolist() == [[[1, 2, 2]]]
    assert run(row(far, near), [(0, 0, 2), (0, 0, 1)]).tolist() == [[[1, 2, 1]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_tie_broken_by_raster_index(impl):
    """x = 0..3: channel 1 (x, x+1) first merges {0, 1} and {2, 3} (priority .5; (1, 2) is
    ignored, w = 0). Channel 0 (x, x+2) then has two edges of priority .25 between these two
    clusters: the one at the lower x goes first. Repulsion at x = 0 first: kept apart; attraction
    at x = 0 first: one cluster."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    offsets = [(0, 0, 2), (0, 0, 1)]
    pairs = [1.0, 0.5, 1.0, 0.5]
    assert run(row([0.25, 0.75, 0.5, 0.5], pairs), offsets).tolist() == [[[1, 1, 2, 2]]]
    assert run(row([0.75, 0.25, 0.5, 0.5], pairs), offsets).tolist() == [[[1, 1, 1, 1]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_numbering_and_ignored_edges(impl):
    """w == 0 everywhere: no edges, every voxel alone, numbered in raster order; masked voxels 0
    and skipped by the numbering; a single voxel is label 1."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    affs = np.full((3, 2, 3, 4), 0.5, np.float32)
    assert np.array_equal(run(affs, offsets), np.arange(1, 25, dtype=np.uint64).reshape(2, 3, 4))
    mask = np.ones((2, 3, 4), bool)
    mask[0, 0, 1] = mask[1, 2, 3] = False
    want = np.zeros((2, 3, 4), np.uint64)
    want[mask] = np.arange(1, 23)
    assert np.array_equal(run(affs, offsets, mask=mask), want)
    assert run(np.ones((3, 1, 1, 1), np.float32), offsets).tolist() == [[[1]]]
    # uint8 255 with bias 1 and 0 with bias 0: w == 0 again
    assert np.array_equal(run(np.full((3, 2, 3, 4), 255, np.uint8), offsets, bias=1.0),
                          np.arange(1, 25, dtype=np.uint64).reshape(2, 3, 4))
    # all priorities .5: (1, 0) repels, (2, 1) merges, (2, 0) is blocked
    affs = row([0, 0.0, 1.0], [0, 0, 1.0])
    assert run(affs, [(0, 0, -1), (0, 0, -2)]).tolist() == [[[1, 2, 2]]]
    # numbering follows the first voxel of each cluster: {0, 2} is 1, {1} is 2
    affs = row([0, 0.0, 0.5], [0, 0, 1.0])
    assert run(affs, [(0, 0, -1), (0, 0, -2)]).tolist() == [[[1, 2, 1]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_mask_cuts_edges(impl):
    """A masked voxel in the middle of a strongly attractive row cuts it in two."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    affs = row([0, 1, 1, 1, 1], [0, 0, 1, 1, 1])
    mask = np.array([1, 1, 0, 1, 1], np.uint8).reshape(1, 1, 5)
    # the long-range (x, x-2) edge (3, 1) bridges the gap: it touches no masked voxel
    assert run(affs, [(0, 0, -1), (0, 0, -2)], mask=mask).tolist() == [[[1, 1, 0, 1, 1]]]
    assert run(affs[:1], [(0, 0, -1)], mask=mask).tolist() == [[[1, 1, 0, 2, 2]]]


@pytest.mark.parametrize("impl", ["xf", "reference"])
def test_strides(impl):
    """Stride 2 on (x, x+1): only the edges at even x exist: pairs."""
    run = xf.mutex_watershed if impl == "xf" else mutex_watershed_reference
    affs = row([1.0] * 7)
    assert run(affs, [(0, 0, 1)], strides=[(1, 1, 2)]).tolist() == [[[1, 1, 2, 2, 3, 3, 4]]]
    # (x, x-1) at even x: (2, 1), (4, 3), (6, 5)
    assert run(affs, [(0, 0, -1)], strides=[(1, 1, 2)]).tolist() == [[[1, 2, 2, 3, 3, 4, 4]]]
    assert run(affs, [(0, 0, -1)], strides=[(5, 5, 1)]).tolist() == [[[1, 1, 1, 1, 1, 1, 1]]]


# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_uint8_equals_float_multiples(seed):
    rng = np.random.default_rng(seed)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -2, 0), (0, 0, -3)]
    levels = rng.choice(256, size=rng.integers(2, 8), replace=False)
    a8 = rng.choice(levels, size=(5, 3, 4, 5)).astype(np.uint8)
    af = a8.astype(np.float32) / np.float32(255)
    bias = [U8_BIASES[rng.integers(0, 4)] for _ in range(5)]
    got8 = xf.mutex_watershed(a8, offsets, bias=bias)
    assert np.array_equal(got8, xf.mutex_watershed(af, offsets, bias=bias))
    assert np.array_equal(got8, mutex_watershed_reference(a8, offsets, bias=bias))


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_inputs_untouched_and_layout_independent(dtype):
    rng = np.random.default_rng(7)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, 0, -2)]
    big = rng.random((5, 6, 8, 10), dtype=np.float32)
    if dtype == np.uint8:
        big = (big * 255).astype(np.uint8)
    mask = rng.random((6, 8, 10)) < 0.9
    affs = np.ascontiguousarray(big[:, :3, :4, :5])
    m = np.ascontiguousarray(mask[:3, :4, :5])
    affs_before, mask_before = affs.copy(), m.copy()
    want = xf.mutex_watershed(affs, offsets, mask=m, strides=[(1, 1, 1)] * 4 + [(1, 2, 1)])
    assert np.array_equal(affs, affs_before) and np.array_equal(m, mask_before)
    assert np.array_equal(want, mutex_watershed_reference(affs, offsets, mask=m,
                                                          strides=[(1, 1, 1)] * 4 + [(1, 2, 1)]))
    for a, mm in [(np.asfortranarray(affs), np.asfortranarray(m)),
                  (big[:, :6:2, :8:2, :10:2], mask[:6:2, :8:2, :10:2]),  # strided views
                  (big[:, :3, :4, :5], mask[:3, :4, :5])]:               # non-contiguous slices
        want_here = mutex_watershed_reference(a, offsets, mask=mm, strides=[(1, 1, 1)] * 4 + [(1, 2, 1)])
        before = a.copy()
        got = xf.mutex_watershed(a, offsets, mask=mm, strides=[(1, 1, 1)] * 4 + [(1, 2, 1)])
        assert np.array_equal(got, want_here)
        assert np.array_equal(a, before)
    # offsets, bias, strides as numpy arrays
    got = xf.mutex_watershed(affs, np.array(offsets), bias=np.full(5, 0.5, np.float32), mask=m,
                             strides=np.array([(1, 1, 1)] * 4 + [(1, 2, 1)]))
    assert np.array_equal(got, want)


# ----------------------------------------------------------------------------------------------
# validation: every error names its argument
# ----------------------------------------------------------------------------------------------

OFFS3 = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
AFFS = np.full((3, 2, 3, 4), 0.75, np.float32)


@pytest.mark.parametrize("affs", [AFFS.astype(np.float64), AFFS.astype(np.int32), AFFS > 0.5,
                                  AFFS.astype(np.float16), AFFS.astype(np.uint16)])
def test_affs_dtype_error(affs):
    with pytest.raises(TypeError, match="affs"):
        xf.mutex_watershed(affs, OFFS3)


@pytest.mark.parametrize("affs", [
    AFFS[0],                                   # 3-D
    AFFS[None],                                # 5-D
    np.zeros((3, 0, 3, 4), np.float32),        # empty volume
    np.zeros((3, 2, 3, 0), np.uint8),
    np.where(np.arange(AFFS.size).reshape(AFFS.shape) == 5, np.float32(np.nan), AFFS),
    np.where(np.arange(AFFS.size).reshape(AFFS.shape) == 5, np.float32(1.5), AFFS),
    np.where(np.arange(AFFS.size).reshape(AFFS.shape) == 5, np.float32(-0.25), AFFS),
    np.where(np.arange(AFFS.size).reshape(AFFS.shape) == 5, np.float32(np.inf), AFFS),
    np.nextafter(np.ones_like(AFFS), np.float32(2)),   # just above 1
])
def test_affs_value_errors(affs):
    with pytest.raises(ValueError, match="affs"):
        xf.mutex_watershed(affs, OFFS3)


def test_offsets_count_error_names_both_counts():
    with pytest.raises(ValueError, match=r"(?s)(?=.*offsets)(?=.*\b3\b)(?=.*\b5\b)"):
        xf.mutex_watershed(AFFS, OFFS3 + [(-3, 0, 0), (0, -3, 0)])
    with pytest.raises(ValueError, match=r"(?s)(?=.*offsets)(?=.*\b3\b)(?=.*\b2\b)"):
        xf.mutex_watershed(AFFS, OFFS3[:2])


def test_channel_last_affinities_caught_by_offsets_count():
    affs = np.full((4, 5, 6, 3), 0.75, np.float32)  # (Z, Y, X, C) with C != Z
    with pytest.raises(ValueError, match="offsets"):
        xf.mutex_watershed(affs, OFFS3)


@pytest.mark.parametrize("offsets", [
    [(-1, 0, 0), (0, 0, 0), (0, 0, -1)],       # all zeros
    [(-1, 0, 0), (0, -1), (0, 0, -1)],         # not 3 numbers
    [(-1, 0, 0), (0, -1, 0, 0), (0, 0, -1)],
    [(-1, 0, 0), (0, -0.5, 0), (0, 0, -1)],    # not integers
    [(-1, 0, 0), (0, float("nan"), 0), (0, 0, -1)],
])
def test_offsets_errors(offsets):
    with pytest.raises(ValueError, match="offsets"):
        xf.mutex_watershed(AFFS, offsets)


@pytest.mark.parametrize("bias", [-0.25, 1.5, float("nan"), [0.5, 0.5, 1.25], [0.5, -0.1, 0.5],
                                  [0.5, 0.5], [0.5] * 4, [[0.5, 0.5, 0.5]] * 2])
def test_bias_errors(bias):
    with pytest.raises(ValueError, match="bias"):
        xf.mutex_watershed(AFFS, OFFS3, bias=bias)


@pytest.mark.parametrize("strides", [
    [(1, 1, 1), (1, 0, 1), (1, 1, 1)],         # < 1
    [(1, 1, 1), (1, -2, 1), (1, 1, 1)],
    [(1, 1, 1), (1, 1, 1)],                    # wrong count
    [(1, 1, 1), (1, 1), (1, 1, 1)],            # not triples
    [(1, 1, 1), (1, 1.5, 1), (1, 1, 1)],       # not integers
])
def test_strides_errors(strides):
    with pytest.raises(ValueError, match="strides"):
        xf.mutex_watershed(AFFS, OFFS3, strides=strides)


@pytest.mark.parametrize("mask", [np.ones((2, 3), bool), np.ones((2, 3, 5), bool),
                                  np.ones((1, 2, 3, 4), bool)])
def test_mask_shape_error(mask):
    with pytest.raises(ValueError, match="mask"):
        xf.mutex_watershed(AFFS, OFFS3, mask=mask)


# ----------------------------------------------------------------------------------------------
# the reference against mwatershed (a benchmark peer; skipped where it is not installed)
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mwatershed():
    return pytest.importorskip("mwatershed")


def mwatershed_stride_grid(shape, offset, stride):
    """Where mwatershed keeps an edge of a strided channel: its stride grid starts at the first
    voxel whose partner lies in the volume, ``max(0, -offset)``, not at 0."""
    z, y, x = [(np.arange(n) - max(0, -o)) % s == 0 for n, o, s in zip(shape, offset, stride)]
    return z[:, None, None] & y[None, :, None] & x[None, None, :]


@st.composite
def weight_cases(draw):
    """Bias-subtracted weights in [-1, 1] with all magnitudes distinct (no ties), a fraction of
    exact zeros, offsets that fit the volume (|offset| <= side: mwatershed panics otherwise),
    optional strides and mask."""
    shape = tuple(draw(st.integers(2, 6)) for _ in range(3))
    pool = [o for o in OFFSET_POOL if all(abs(o[d]) <= shape[d] for d in range(3))]
    n = draw(st.integers(3, 6))
    offsets = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n, unique=True))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = (n,) + shape
    magnitude = (rng.permutation(int(np.prod(size))) + 1).reshape(size) / np.prod(size)
    weights = (magnitude * rng.choice([-1, 1], size=size)).astype(np.float32)
    weights[rng.random(size) < draw(st.sampled_from([0.0, 0.2]))] = 0
    strides = None
    if draw(st.booleans()):
        strides = [tuple(int(s) for s in rng.integers(1, 4, size=3)) for _ in range(n)]
    mask = rng.random(shape) < 0.8 if draw(st.booleans()) else None
    return weights, offsets, strides, mask


@settings(max_examples=60, deadline=None)
@given(weight_cases())
def test_reference_matches_mwatershed(mwatershed, case):
    """The reference equals ``mwatershed.agglom`` up to relabelling where no priorities tie.

    Conventions found (mwatershed 0.5.4): ``agglom(weights, offsets)`` takes float64 weights that
    are already bias-subtracted; its channel ``c`` at ``v`` links ``v`` to ``v + offsets[c]``,
    the same as ours; every cluster of one voxel is labelled 0 (the others get arbitrary positive
    ids), so its zeros are made distinct singletons before comparing. An edge of weight exactly 0
    never merges there; a zero treated as repulsive would come after every other edge and change
    nothing, so it is the same as our "ignored". mwatershed panics (``start <= axis_len``) on an
    offset longer than the volume, so those are left out. Its strides differ from ours: it keeps
    an edge at ``v`` where ``(v - max(0, -offset)) % stride == 0`` (the grid starts at the first
    voxel with a partner inside the volume), ours where ``v % stride == 0``; they agree when every
    negative offset component is a multiple of its stride. So our strides (and our mask, which
    mwatershed has not) are given to it as zeroed weights, and its own strides are checked against
    the reference on weights zeroed off its grid.
    """
    weights, offsets, strides, mask = case
    n = weights.shape[0]
    shape = weights.shape[1:]
    ours = mutex_watershed_weights(weights, offsets, strides=strides, mask=mask)
    zeroed = weights.copy()
    inside = np.ones(shape, bool) if mask is None else mask
    for c, off in enumerate(offsets):
        stride = (1, 1, 1) if strides is None else strides[c]
        z, y, x = [np.arange(k) % s == 0 for k, s in zip(shape, stride)]
        keep = z[:, None, None] & y[None, :, None] & x[None, None, :] & inside
        partner = np.zeros(shape, bool)  # partner v + off inside and unmasked
        src = tuple(slice(max(0, -o), k - max(0, o)) for k, o in zip(shape, off))
        dst = tuple(slice(max(0, o), k - max(0, -o)) for k, o in zip(shape, off))
        partner[src] = inside[dst]
        zeroed[c][~(keep & partner)] = 0
    theirs = singletons_to_labels(mwatershed.agglom(zeroed.astype(np.float64), [list(o) for o in offsets]))
    assert same_partition(ours[inside], theirs[inside])
    assert np.all(ours[~inside] == 0)
    if strides is not None:
        native = mwatershed.agglom(weights.astype(np.float64), [list(o) for o in offsets],
                                   strides=[list(s) for s in strides])
        on_grid = weights.copy()
        for c in range(n):
            on_grid[c][~mwatershed_stride_grid(shape, offsets[c], strides[c])] = 0
        assert same_partition(mutex_watershed_weights(on_grid, offsets), singletons_to_labels(native))
        if all(o >= 0 or o % s == 0 for off, st_ in zip(offsets, strides) for o, s in zip(off, st_)):
            assert same_partition(mutex_watershed_weights(weights, offsets, strides=strides),
                                  singletons_to_labels(native))


def test_offsets_beyond_int64_are_refused_not_read_out_of_bounds():
    affs = np.full((4, 6, 7, 5), 0.75, np.float32)
    for bad in [(-2**63, 5, 0), (1e19, 0, 0), (2**31, 0, 0)]:
        with pytest.raises(ValueError, match=r"offsets must be smaller than 2\*\*31 in magnitude"):
            xf.mutex_watershed(affs, [(-1, 0, 0), (0, -1, 0), (0, 0, -1), bad], mask=np.ones((6, 7, 5), bool))
