"""The challenge's submission file: cropping, striding, writing and checking."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from xpress_fast import io
from xpress_fast.rois import TEST_ROI, Roi
from xpress_fast.submission import check_submission, make_submission, write_submission

SMALL = Roi(begin=(99, 198, 0), shape=(198, 297, 396))  # 2 x 3 x 4 voxels at 99 nm


def _seg(shape, seed=0):
    return np.random.default_rng(seed).integers(1, 50, size=shape).astype(np.uint32)


def test_crop_then_stride_small_roi():
    seg = _seg((12, 15, 14))  # 33 nm, offset 0
    sub = make_submission(seg, voxel_size=(33, 33, 33), roi=SMALL)
    # ROI begins at voxels (3, 6, 0) of 33 nm; every third voxel from there
    np.testing.assert_array_equal(sub, seg[3:9:3, 6:15:3, 0:12:3])
    assert sub.dtype == np.uint64 and sub.shape == (2, 3, 4)


def test_offset_of_input_is_respected():
    seg = _seg((12, 15, 14))
    sub = make_submission(seg, voxel_size=(33, 33, 33), offset=(33, 0, 0), roi=SMALL)
    np.testing.assert_array_equal(sub, seg[2:8:3, 6:15:3, 0:12:3])


def test_full_test_roi_equals_whole_array_stride_of_challenge_geometry():
    # the challenge's raw: 1200^3 at 33 nm; the test ROI begins at voxel 99 (a multiple of 3), so
    # cropping then striding equals the official whole-array stride then crop (quirk 4)
    class Lazy:
        shape = (1200, 1200, 1200)
        dtype = np.dtype(np.uint64)

        def __getitem__(self, idx):
            z, y, x = (np.arange(s.start, s.stop, s.step, dtype=np.uint64) for s in idx)
            return z[:, None, None] * 1_000_000 + y[None, :, None] * 1000 + x[None, None, :]

    sub = make_submission(Lazy(), voxel_size=(33, 33, 33))
    assert sub.shape == (334, 334, 334)
    whole = np.arange(0, 1200, 3)
    first = np.searchsorted(whole, 99)
    z = whole[first:first + 334]
    assert sub[5, 0, 0] == z[5] * 1_000_000 + 99 * 1000 + 99
    assert sub[-1, -1, -1] == z[-1] * 1_000_000 + z[-1] * 1000 + z[-1]


def test_write_then_check_ok(tmp_path):
    seg = _seg((12, 15, 14))
    p = write_submission(tmp_path / "submission.h5", seg, voxel_size=(33, 33, 33), roi=SMALL)
    check = check_submission(p, roi=SMALL)
    assert check.ok, check.problems
    assert check.shape == (2, 3, 4) and check.dtype == "uint64"
    assert check.voxel_size == (99.0, 99.0, 99.0) and check.offset == tuple(map(float, SMALL.begin))
    assert check.n_labels == len(np.unique(make_submission(seg, voxel_size=(33,) * 3, roi=SMALL)))
    with h5py.File(p, "r") as f:
        assert list(f.keys()) == ["submission"]
    # the real test ROI is the default: this small file fails it
    assert not check_submission(p).ok


def test_write_at_99nm_is_a_crop(tmp_path):
    seg = _seg((5, 6, 7))
    p = write_submission(tmp_path / "s.h5", seg, voxel_size=(99, 99, 99), roi=SMALL)
    np.testing.assert_array_equal(io.read_volume(p, "submission").data, seg[1:3, 2:5, 0:4])


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda f: f["submission"].attrs.__setitem__("resolution", [33, 33, 33]), "attr 'resolution' must be"),
        (lambda f: f["submission"].attrs.__setitem__("offset", [0, 0, 0]), "attr 'offset' must be"),
        (lambda f: f["submission"].attrs.__delitem__("offset"), "attr 'offset' is missing"),
        (lambda f: f["submission"].attrs.__setitem__("resolution", "99"), "three numbers"),
    ],
)
def test_check_finds_bad_attrs(tmp_path, edit, match):
    p = write_submission(tmp_path / "s.h5", _seg((12, 15, 14)), voxel_size=(33, 33, 33), roi=SMALL)
    with h5py.File(p, "a") as f:
        edit(f)
    check = check_submission(p, roi=SMALL)
    assert not check.ok
    assert any(match in problem for problem in check.problems), check.problems


def _raw_file(tmp_path, data, attrs=True, name="submission"):
    p = tmp_path / "s.h5"
    with h5py.File(p, "w") as f:
        f[name] = data
        if attrs:
            f[name].attrs["resolution"] = [99, 99, 99]
            f[name].attrs["offset"] = list(SMALL.begin)
    return p


@pytest.mark.parametrize(
    "data, match",
    [
        (np.ones((2, 3, 4), np.uint32), "dtype must be uint64"),
        (np.ones((2, 3, 5), np.uint64), r"shape must be \(2, 3, 4\)"),
        (np.ones((2, 3), np.uint64), "3-dimensional"),
        (np.zeros((2, 3, 4), np.uint64), "only background"),
    ],
)
def test_check_finds_bad_arrays(tmp_path, data, match):
    check = check_submission(_raw_file(tmp_path, data), roi=SMALL)
    assert not check.ok and any(match.replace("\\", "") in p or __import__("re").search(match, p)
                                for p in check.problems), check.problems


def test_check_missing_things(tmp_path):
    assert "no such file" in check_submission(tmp_path / "none.h5").problems[0]
    p = _raw_file(tmp_path, np.ones((2, 3, 4), np.uint64), name="segmentation")
    assert "no dataset 'submission'" in check_submission(p, roi=SMALL).problems[0]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    assert "not a readable HDF5 file" in check_submission(bad).problems[0]


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"voxel_size": (40, 33, 33)}, ValueError, "whole factors"),
        ({"voxel_size": (33, 33, 33), "offset": (132, 0, 0)}, ValueError, "outside the volume"),
        ({"voxel_size": (33, 33, 33), "roi": Roi((0, 0, 0), (99, 99, 100))}, ValueError, "not aligned"),
    ],
)
def test_make_submission_rejects(kwargs, exc, match):
    kwargs.setdefault("roi", SMALL)
    with pytest.raises(exc, match=match):
        make_submission(_seg((12, 15, 14)), **kwargs)


def test_make_submission_rejects_bad_labels():
    with pytest.raises(TypeError, match="integer label dtype"):
        make_submission(np.zeros((12, 15, 14), np.float32), voxel_size=(33,) * 3, roi=SMALL)
    with pytest.raises(ValueError, match="3-dimensional"):
        make_submission(np.zeros((12, 15), np.uint8), voxel_size=(33,) * 3, roi=SMALL)
    with pytest.raises(ValueError, match="negative labels"):
        make_submission(-np.ones((12, 15, 14), np.int32), voxel_size=(33,) * 3, roi=SMALL)


def test_write_submission_needs_h5_name(tmp_path):
    with pytest.raises(ValueError, match="ending in .h5"):
        write_submission(tmp_path / "s.zarr", _seg((12, 15, 14)), voxel_size=(33,) * 3, roi=SMALL)


def test_test_roi_geometry():
    assert TEST_ROI.voxels((99, 99, 99)) == (334, 334, 334)
