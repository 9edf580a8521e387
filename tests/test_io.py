"""Volume I/O: HDF5 and zarr round trips, geometry attrs, validation, atomic writes."""
from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from xpress_fast import io
from xpress_fast.rois import Roi


@pytest.fixture(params=["vol.h5", "vol.zarr"])
def container(request, tmp_path):
    return tmp_path / request.param


def _data(shape=(4, 5, 6), dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def test_round_trip_keeps_data_and_geometry(container):
    a = _data()
    io.write_volume(container, "raw", a, voxel_size=(1, 2, 3), offset=(4, 5, 6))
    v = io.read_volume(container, "raw")
    np.testing.assert_array_equal(v.data, a)
    assert v.data.dtype == a.dtype
    assert v.voxel_size == (1.0, 2.0, 3.0) and v.offset == (4.0, 5.0, 6.0)
    assert v.shape == a.shape and v.spatial_shape == a.shape


def test_four_d_and_nested_dataset_names(container):
    affs = np.random.default_rng(1).random((3, 4, 5, 6)).astype(np.float32)
    io.write_volume(container, "volumes/affs", affs, voxel_size=(8, 8, 8))
    v = io.open_volume(container, "volumes/affs")
    assert v.shape == affs.shape and v.spatial_shape == (4, 5, 6)
    np.testing.assert_array_equal(v.data[1, 2], affs[1, 2])


def test_second_dataset_keeps_first_and_replace_is_whole(container):
    a, b = _data(seed=1), _data(seed=2)
    io.write_volume(container, "a", a, voxel_size=(1, 1, 1))
    io.write_volume(container, "b", b, voxel_size=(1, 1, 1))
    io.write_volume(container, "a", b[:2], voxel_size=(2, 2, 2))
    np.testing.assert_array_equal(io.read_volume(container, "b").data, b)
    va = io.read_volume(container, "a")
    np.testing.assert_array_equal(va.data, b[:2])
    assert va.voxel_size == (2.0, 2.0, 2.0)
    assert io.dataset_exists(container, "a") and not io.dataset_exists(container, "c")


def test_no_temporary_files_left(container):
    io.write_volume(container, "raw", _data(), voxel_size=(1, 1, 1))
    io.write_volume(container, "raw", _data(), voxel_size=(1, 1, 1))
    leftovers = [p for p in container.parent.rglob("*") if ".tmp" in p.name or ".old-" in p.name]
    assert leftovers == []


def test_read_roi(container):
    a = _data((6, 8, 10))
    io.write_volume(container, "raw", a, voxel_size=(2, 2, 2), offset=(10, 20, 30))
    v = io.read_volume(container, "raw", roi=Roi((12, 24, 34), (4, 6, 8)))
    np.testing.assert_array_equal(v.data, a[1:3, 2:5, 2:6])
    assert v.offset == (12.0, 24.0, 34.0)


def test_roi_outside_and_unaligned(container):
    io.write_volume(container, "raw", _data((6, 8, 10)), voxel_size=(2, 2, 2))
    with pytest.raises(ValueError, match="outside the volume"):
        io.read_volume(container, "raw", roi=Roi((0, 0, 0), (14, 2, 2)))
    with pytest.raises(ValueError, match="outside the volume"):
        io.read_volume(container, "raw", roi=Roi((-2, 0, 0), (2, 2, 2)))
    with pytest.raises(ValueError, match="not aligned"):
        io.read_volume(container, "raw", roi=Roi((1, 0, 0), (2, 2, 2)))


def test_missing_dataset_lists_what_is_there(container):
    io.write_volume(container, "raw", _data(), voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match=r"dataset 'labels' not found .* holds \['raw'\]"):
        io.read_volume(container, "labels")


def test_missing_container(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such HDF5 file"):
        io.read_volume(tmp_path / "nope.h5", "raw")
    with pytest.raises(FileNotFoundError, match="no such zarr container"):
        io.read_volume(tmp_path / "nope.zarr", "raw")


def test_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="HDF5 file .* or a zarr container"):
        io.write_volume(tmp_path / "vol.tif", "raw", _data(), voxel_size=(1, 1, 1))


def test_not_hdf5(tmp_path):
    p = tmp_path / "bad.h5"
    p.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        io.read_volume(p, "raw")


def test_missing_resolution_attr_and_override(tmp_path):
    p = tmp_path / "plain.h5"
    with h5py.File(p, "w") as f:
        f["raw"] = _data()
    with pytest.raises(ValueError, match="no 'resolution' attr"):
        io.read_volume(p, "raw")
    v = io.read_volume(p, "raw", voxel_size=(3, 3, 3))
    assert v.voxel_size == (3.0, 3.0, 3.0) and v.offset == (0.0, 0.0, 0.0)


def test_bad_resolution_attr(tmp_path):
    p = tmp_path / "bad.h5"
    with h5py.File(p, "w") as f:
        f["raw"] = _data()
        f["raw"].attrs["resolution"] = [0, 1, 1]
        f["two_d"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="resolution must be positive"):
        io.read_volume(p, "raw")
    with pytest.raises(ValueError, match="must be 3-D"):
        io.read_volume(p, "two_d", voxel_size=(1, 1, 1))


@pytest.mark.parametrize(
    "data, kwargs, exc, match",
    [
        (np.zeros((3, 3)), {}, ValueError, "3-D"),
        (np.zeros((0, 3, 3)), {}, ValueError, "empty"),
        ("text", {}, TypeError, "numpy array"),
        (np.zeros((2, 2, 2)), {"voxel_size": (1, -1, 1)}, ValueError, "voxel_size must be positive"),
        (np.zeros((2, 2, 2)), {"voxel_size": (1, 1)}, ValueError, "voxel_size must be three"),
        (np.zeros((2, 2, 2)), {"offset": (np.nan, 0, 0)}, ValueError, "offset must be finite"),
    ],
)
def test_write_rejects_bad_input(tmp_path, data, kwargs, exc, match):
    kw = {"voxel_size": (1, 1, 1), **kwargs}
    with pytest.raises(exc, match=match):
        io.write_volume(tmp_path / "x.h5", "raw", data, **kw)
    assert not (tmp_path / "x.h5").exists()


def test_bad_dataset_name(tmp_path):
    with pytest.raises(ValueError, match="dataset must be a non-empty relative name"):
        io.write_volume(tmp_path / "x.h5", "/raw", _data(), voxel_size=(1, 1, 1))


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="output directory does not exist"):
        io.write_volume(tmp_path / "no" / "x.h5", "raw", _data(), voxel_size=(1, 1, 1))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_unwritable_directory_leaves_nothing(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        with pytest.raises(OSError):
            io.write_volume(d / "x.h5", "raw", _data(), voxel_size=(1, 1, 1))
    finally:
        d.chmod(0o700)
    assert list(d.iterdir()) == []


def test_interrupted_h5_write_keeps_old_file(tmp_path, monkeypatch):
    p = tmp_path / "x.h5"
    a = _data(seed=3)
    io.write_volume(p, "raw", a, voxel_size=(1, 1, 1))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left"):
        io.write_volume(p, "raw", _data(seed=4), voxel_size=(1, 1, 1))
    monkeypatch.undo()
    np.testing.assert_array_equal(io.read_volume(p, "raw").data, a)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["x.h5"]


def test_interrupted_zarr_write_leaves_no_dataset(tmp_path, monkeypatch):
    p = tmp_path / "x.zarr"
    io.write_volume(p, "keep", _data(), voxel_size=(1, 1, 1))

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    # fail our final move only: patching os.replace itself also breaks zarr's own atomic
    # metadata writes, whose temporary files are zarr's business, not ours
    monkeypatch.setattr(io, "_zarr_move_into_place", boom)
    with pytest.raises(OSError, match="No space left"):
        io.write_volume(p, "raw", _data(), voxel_size=(1, 1, 1))
    monkeypatch.undo()
    assert not io.dataset_exists(p, "raw")
    assert sorted(x.name for x in p.iterdir()) == ["keep", "zarr.json"]


def test_input_not_modified(container):
    a = _data()
    before = a.copy()
    io.write_volume(container, "raw", a, voxel_size=(1, 1, 1))
    np.testing.assert_array_equal(a, before)


def test_check_same_geometry():
    a = io.Volume(np.zeros((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    affs = io.Volume(np.zeros((3, 2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    io.check_same_geometry([("raw", a), ("affinities", affs)])
    with pytest.raises(ValueError, match="labels has shape"):
        io.check_same_geometry([("raw", a), ("labels", io.Volume(np.zeros((2, 3, 5)), a.voxel_size, a.offset))])
    with pytest.raises(ValueError, match="labels has voxel size"):
        io.check_same_geometry([("raw", a), ("labels", io.Volume(a.data, (2.0, 1.0, 1.0), a.offset))])
    with pytest.raises(ValueError, match="labels has offset"):
        io.check_same_geometry([("raw", a), ("labels", io.Volume(a.data, a.voxel_size, (1.0, 0.0, 0.0)))])
