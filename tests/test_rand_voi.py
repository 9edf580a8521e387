"""xpress_fast.rand_voi (dense volumes) vs the plain-Python reference and scikit-image.

scikit-image's argument order (checked against its source, skimage 0.2x):
``variation_of_information(image0, image1, ignore_labels=...)`` returns
``[H(image1 | image0), H(image0 | image1)]`` ("false splits, false merges" when image0 is the
ground truth) and ignores the voxels where *image0* holds an ignored label;
``adapted_rand_error(image_true, image_test, ignore_labels=(0,))`` returns
``(error, precision, recall)`` with pair counts ``Σ x² − N`` and ignores voxels by *image_true*.
So with ``gt`` the ground truth and ``seg`` the segmentation:
``rand_voi(seg, gt).voi_split, .voi_merge == variation_of_information(gt, seg)`` and
``.adapted_rand_* == adapted_rand_error(gt, seg)``. (skimage's "precision" divides by the
*ground-truth* pair count and its "recall" by the segmentation's — the reverse of its
docstring; we follow its numbers.)
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_metrics import reference_rand_voi
from strategies import LABEL_DTYPES  # noqa: F401  (also installs the hypothesis failure-report fix)

import xpress_fast as xf  # noqa: E402  (the compiled modules are required: a broken build fails here)
import xpress_fast.metrics  # noqa: E402,F401
from xpress_fast import rand_voi  # noqa: E402

skm = pytest.importorskip("skimage.metrics")

KEYS = ("rand_split", "rand_merge", "voi_split", "voi_merge", "nvi_split", "nvi_merge",
        "adapted_rand_error", "adapted_rand_precision", "adapted_rand_recall")


def _close(a, b, rel=1e-9, abs_=1e-12):
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


def check_reference(seg, gt, ignore_labels=(0,), **kw):
    got = rand_voi(seg, gt, ignore_labels=ignore_labels, **kw)
    want = reference_rand_voi(seg, gt, ignore_labels=ignore_labels)
    for key in KEYS:
        assert _close(getattr(got, key), want[key]), f"{key}: got {getattr(got, key)!r}, want {want[key]!r}"
    assert got.n_voxels == want["n"]
    return got


def check_skimage(seg, gt, ignore_labels=(0,)):
    got = rand_voi(seg, gt, ignore_labels=ignore_labels)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # skimage divides by zero on degenerate tables
        vi = skm.variation_of_information(gt, seg, ignore_labels=list(ignore_labels))
        are, prec, rec = skm.adapted_rand_error(gt, seg, ignore_labels=list(ignore_labels))
    assert _close(got.voi_split, vi[0], abs_=1e-9), (got.voi_split, vi)
    assert _close(got.voi_merge, vi[1], abs_=1e-9), (got.voi_merge, vi)
    assert _close(got.adapted_rand_error, are), (got.adapted_rand_error, are)
    assert _close(got.adapted_rand_precision, prec), (got.adapted_rand_precision, prec)
    assert _close(got.adapted_rand_recall, rec), (got.adapted_rand_recall, rec)


@st.composite
def volume_pairs(draw, dtypes=(np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    shape = tuple(draw(st.integers(1, 6)) for _ in range(draw(st.integers(1, 3))))
    n_seg = draw(st.integers(1, 6))
    n_gt = draw(st.integers(1, 6))
    seg = rng.integers(0, n_seg, size=shape).astype(draw(st.sampled_from(dtypes)))
    gt = rng.integers(0, n_gt, size=shape).astype(draw(st.sampled_from(dtypes)))
    if draw(st.booleans()):  # correlate them: gt a coarsening of seg, so scores are not all noise
        gt = (seg // 2).astype(gt.dtype)
    ignore = draw(st.sampled_from([(0,), (), (0, 2), (3,)]))
    return seg, gt, ignore


@given(pair=volume_pairs())
@settings(max_examples=100)
def test_matches_reference(pair):
    seg, gt, ignore = pair
    check_reference(seg, gt, ignore)


@given(pair=volume_pairs())
@settings(max_examples=100)
def test_matches_skimage(pair):
    seg, gt, ignore = pair
    check_skimage(seg, gt, ignore)


@pytest.mark.parametrize("seg_dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64])
@pytest.mark.parametrize("gt_dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_every_dtype_pair_gives_the_same_numbers(seg_dtype, gt_dtype):
    rng = np.random.default_rng(21)
    seg = rng.integers(0, 5, size=(4, 5, 6))
    gt = (seg + rng.integers(0, 2, size=seg.shape)) // 2
    want = rand_voi(seg.astype(np.uint64), gt.astype(np.uint64))
    got = rand_voi(seg.astype(seg_dtype), gt.astype(gt_dtype))
    for key in KEYS:
        assert _close(getattr(got, key), getattr(want, key), rel=1e-12), key
    check_skimage(seg.astype(seg_dtype), gt.astype(gt_dtype))


def test_hand_computed_example():
    # gt: 4 voxels of 1, 2 of 2 (and 2 ignored zeros); seg: (1,1,1,5 | 5,5) over them.
    # n_ij: (1,1)=3, (1,5)=1, (2,5)=2 -> Σn² = 14; a = (4, 2) -> Σa² = 20; b = (3, 3) -> Σb² = 18.
    gt = np.array([1, 1, 1, 1, 2, 2, 0, 0], dtype=np.uint8)
    seg = np.array([1, 1, 1, 5, 5, 5, 7, 1], dtype=np.uint8)
    got = check_reference(seg, gt)
    assert got.n_voxels == 6
    assert got.rand_split == pytest.approx(14 / 20, rel=1e-12)
    assert got.rand_merge == pytest.approx(14 / 18, rel=1e-12)
    h_joint = -(3 / 6 * math.log2(3 / 6) + 1 / 6 * math.log2(1 / 6) + 2 / 6 * math.log2(2 / 6))
    h_gt = -(4 / 6 * math.log2(4 / 6) + 2 / 6 * math.log2(2 / 6))
    assert got.voi_split == pytest.approx(h_joint - h_gt, rel=1e-12)  # H(seg | gt)
    assert got.voi_merge == pytest.approx(h_joint - 1.0, rel=1e-12)  # H(gt | seg); H(seg) = 1 bit
    # adapted Rand (skimage): pairs Σn² − N = 8, Σa² − N = 14, Σb² − N = 12
    assert got.adapted_rand_precision == pytest.approx(8 / 14, rel=1e-12)
    assert got.adapted_rand_recall == pytest.approx(8 / 12, rel=1e-12)
    assert got.adapted_rand_error == pytest.approx(1 - 8 / 13, rel=1e-12)
    check_skimage(seg, gt)


def test_label_zero_of_the_segmentation_is_an_ordinary_segment():
    gt = np.array([1, 1, 2, 2], dtype=np.uint16)
    seg = np.array([0, 0, 3, 3], dtype=np.uint16)
    got = check_reference(seg, gt)
    assert got.rand_split == 1.0 and got.rand_merge == 1.0 and got.voi_split == 0.0 and got.voi_merge == 0.0


def test_no_pair_in_common_gives_error_one_as_skimage():
    # Σn² − N = 0 with segment and truth pairs present: precision = recall = 0 and skimage's
    # error is 1 − 0 / (…) = 1 (not 1 − 2PR/(P+R) = NaN)
    gt = np.array([1, 1, 2, 2], dtype=np.uint8)
    seg = np.array([1, 2, 1, 2], dtype=np.uint8)
    got = check_reference(seg, gt)
    assert got.adapted_rand_error == 1.0
    check_skimage(seg, gt)


def test_degenerate_tables_follow_skimage():
    # all-singleton segmentation: no segment pair -> skimage's adapted Rand error is 1 (fscore 0)
    gt = np.array([[1, 1, 2], [2, 3, 3]], dtype=np.uint8)
    seg = np.arange(6, dtype=np.uint8).reshape(2, 3)
    check_reference(seg, gt)
    check_skimage(seg, gt)
    # all-singleton ground truth
    check_reference(np.ones((2, 3), dtype=np.uint8), seg + 1)
    check_skimage(np.ones((2, 3), dtype=np.uint8), seg + 1)


def test_everything_ignored_gives_nan_not_a_crash():
    gt = np.zeros((3, 3), dtype=np.uint8)
    seg = np.arange(9, dtype=np.uint8).reshape(3, 3)
    got = check_reference(seg, gt)
    assert got.n_voxels == 0
    assert all(math.isnan(getattr(got, k)) for k in KEYS)


@pytest.mark.parametrize("labels", [(2**64 - 1, 2**64 - 2), (2**53, 2**53 + 1), (2**63, 2**63 + 1)])
def test_labels_near_the_top_of_uint64_are_exact(labels):
    a, b = labels
    seg = np.array([a, a, b, b, b], dtype=np.uint64)
    gt = np.array([1, 1, 2, 2, 2], dtype=np.uint64)
    got = check_reference(seg, gt)
    assert got.rand_merge == 1.0 and got.voi_merge == 0.0
    got = check_reference(gt, seg)  # the big labels as ground truth
    assert got.rand_split == 1.0 and got.voi_split == 0.0


def test_ignore_labels_at_the_top_of_uint64():
    gt = np.array([2**64 - 1, 2**64 - 1, 5, 5], dtype=np.uint64)
    seg = np.array([1, 2, 3, 3], dtype=np.uint64)
    got = check_reference(seg, gt, ignore_labels=(2**64 - 1,))
    assert got.n_voxels == 2


def test_ignore_labels_outside_the_dtype_are_harmless():
    gt = np.array([0, 1, 1, 2, 2], dtype=np.uint8)
    seg = np.array([1, 1, 1, 2, 2], dtype=np.uint8)
    got = check_reference(seg, gt, ignore_labels=(300, -1, 0))
    assert got.n_voxels == 4


def test_threads_give_the_same_numbers():
    rng = np.random.default_rng(22)
    seg = rng.integers(0, 50, size=(20, 20, 20)).astype(np.uint32)
    gt = (seg // 3).astype(np.uint32)
    one = rand_voi(seg, gt, threads=1)
    two = rand_voi(seg, gt, threads=2)
    for key in KEYS:
        assert _close(getattr(one, key), getattr(two, key), rel=1e-12), key
    check_skimage(seg, gt)


def test_n_threads_is_the_deprecated_name_of_threads():
    rng = np.random.default_rng(23)
    seg = rng.integers(0, 9, size=(6, 6, 6)).astype(np.uint16)
    gt = (seg // 2).astype(np.uint16)
    want = rand_voi(seg, gt, threads=2)
    for old in (2, 0):  # 0 was the old spelling of the default
        with pytest.warns(FutureWarning, match=r"n_threads=\.\.\.\) is deprecated .* use threads="):
            got = rand_voi(seg, gt, n_threads=old)
        assert got == want
    with pytest.raises(TypeError, match="both threads and n_threads"):
        rand_voi(seg, gt, threads=1, n_threads=1)


@pytest.mark.parametrize("threads", [0, -2, 1.5, True, "2"])
def test_bad_threads_are_refused(threads):
    seg = np.zeros((2, 2, 2), np.uint8)
    with pytest.raises(ValueError, match="threads must be a positive integer or None"):
        rand_voi(seg, seg, threads=threads)


def test_inputs_unchanged_read_only_and_strided():
    rng = np.random.default_rng(23)
    seg = rng.integers(0, 4, size=(6, 8)).astype(np.int32)
    gt = rng.integers(0, 3, size=(6, 8)).astype(np.uint16)
    seg_before, gt_before = seg.copy(), gt.copy()
    seg.flags.writeable = False
    gt.flags.writeable = False
    want = check_reference(seg, gt)
    np.testing.assert_array_equal(seg, seg_before)
    np.testing.assert_array_equal(gt, gt_before)
    # strided and Fortran-ordered views score like their contiguous copies
    for s, g in ((seg[::2, 1::3], gt[::2, 1::3]), (np.asfortranarray(seg), np.asfortranarray(gt)), (seg.T, gt.T)):
        check_reference(s, g)
    got = rand_voi(np.asfortranarray(seg), np.asfortranarray(gt))
    for key in KEYS:
        assert _close(getattr(got, key), getattr(want, key), rel=1e-12), key


@pytest.mark.parametrize(
    "seg, gt, kwargs, exc, match",
    [
        (np.ones(4, dtype=np.float32), np.ones(4, dtype=np.uint8), {}, TypeError, "segmentation"),
        (np.ones(4, dtype=np.uint8), np.ones(4, dtype=np.float64), {}, TypeError, "ground_truth"),
        (np.ones(4, dtype=bool), np.ones(4, dtype=np.uint8), {}, TypeError, "segmentation"),
        (np.ones(4, dtype=np.uint8), np.ones(4, dtype=bool), {}, TypeError, "ground_truth"),
        (np.ones(4, dtype=np.uint8), np.ones(5, dtype=np.uint8), {}, ValueError, "same shape"),
        (np.ones((2, 2), dtype=np.uint8), np.ones(4, dtype=np.uint8), {}, ValueError, "same shape"),
        (-np.ones(4, dtype=np.int8), np.ones(4, dtype=np.uint8), {}, ValueError, "segmentation"),
        (np.ones(4, dtype=np.uint8), -np.ones(4, dtype=np.int64), {}, ValueError, "ground_truth"),
        (np.ones(0, dtype=np.uint8), np.ones(0, dtype=np.uint8), {}, ValueError, "segmentation"),
        ("seg", np.ones(4, dtype=np.uint8), {}, TypeError, "segmentation"),
        (np.ones(4, dtype=np.uint8), np.ones(4, dtype=np.uint8), {"ignore_labels": [[0, 1]]}, ValueError,
         "ignore_labels"),
        (np.ones(4, dtype=np.uint8), np.ones(4, dtype=np.uint8), {"ignore_labels": ["a"]}, (ValueError, TypeError),
         "ignore_labels"),
    ],
)
def test_bad_input_raises(seg, gt, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        rand_voi(seg, gt, **kwargs)
