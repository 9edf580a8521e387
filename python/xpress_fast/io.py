"""Volume I/O: HDF5 and zarr datasets with the field's ``resolution`` / ``offset`` attrs.

A volume is a (z, y, x) array (or ``(C, Z, Y, X)`` for affinities) with ``resolution`` (the voxel
size, nm, z y x) and ``offset`` (nm, z y x, the world position of voxel 0) stored as dataset
attrs -- the convention of the field's HDF5 and zarr files.

Containers are chosen by the path: ``*.h5``, ``*.hdf5``, ``*.hdf`` are HDF5 (h5py), ``*.zarr``
(a directory) is zarr. Datasets are addressed by their name inside the container (``"raw"``,
``"volumes/affs"``).

Writes are atomic: a dataset is written under a temporary name and moved into place only when it
is complete, so an interrupted run never leaves a half-written dataset that looks complete. For
HDF5 the whole file is written to a temporary file beside it (a copy of the existing file, when
there is one) and renamed over the original; for zarr the array directory is written under a
temporary name inside the group and renamed.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Optional, Sequence, TypedDict

import numpy as np
import numpy.typing as npt

from ._extras import require
from ._typing import FloatTriple, StrPath
from ._validate import as_array, float_triple, warn_user

if TYPE_CHECKING:
    import h5py

    from .rois import Roi

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_SUFFIXES = (".zarr", ".zr")


@dataclass(frozen=True)
class Volume:
    """An array with its geometry.

    Attributes
    ----------
    data : numpy.ndarray or array-like
        ``(Z, Y, X)`` or ``(C, Z, Y, X)``; a numpy array after :func:`read_volume`, an open
        h5py/zarr array after :func:`open_volume` (read slices from it).
    voxel_size : tuple of float
        nm, (z, y, x).
    offset : tuple of float
        nm, (z, y, x): the world position of voxel 0.
    """

    data: Any = field(repr=False)  # numpy, or an h5py / zarr array (h5py ships no types)
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The (z, y, x) shape (the last three axes)."""
        return tuple(self.data.shape[-3:])


def container_kind(path: StrPath) -> Literal["hdf5", "zarr"]:
    """``"hdf5"`` or ``"zarr"`` for ``path``, by its suffix (an existing directory is zarr)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in ZARR_SUFFIXES or (p.is_dir() and suffix not in HDF5_SUFFIXES):
        return "zarr"
    raise ValueError(
        f"path must name an HDF5 file ({', '.join(HDF5_SUFFIXES)}) or a zarr container "
        f"({', '.join(ZARR_SUFFIXES)}); got {str(path)!r}"
    )


def _geometry_from_attrs(attrs: Mapping[str, object], where: str, voxel_size: npt.ArrayLike | None = None,
                         offset: npt.ArrayLike | None = None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    def get(key: str, given: object, default: object) -> object:
        if given is not None:
            return given
        if key in attrs:
            return attrs[key]
        return default

    vs = get("resolution", voxel_size, None)
    if vs is None:
        raise ValueError(
            f"{where} has no 'resolution' attr (voxel size, nm, z y x); pass voxel_size explicitly"
        )
    off = get("offset", offset, (0, 0, 0))
    try:
        vs_used = tuple(float(v) for v in float_triple(f"{where} resolution", vs, positive=True))
        off_used = tuple(float(v) for v in float_triple(f"{where} offset", off))
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    # a given value overrides the file's, but one that contradicts it is usually a mistake
    for key, given, used in (("resolution", voxel_size, vs_used), ("offset", offset, off_used)):
        if given is None or key not in attrs:
            continue
        try:
            stored = tuple(float(v) for v in float_triple(f"{where} {key}", attrs[key]))
        except (TypeError, ValueError):
            continue  # an unreadable attr is overridden, nothing to compare
        if not np.allclose(stored, used, rtol=1e-9, atol=0):
            name = "voxel_size" if key == "resolution" else "offset"
            warn_user(f"{where}: {name} {list(used)} given, but its {key!r} attr says {list(stored)}; "
                      f"using {list(used)}")
    return vs_used, off_used


def _open_h5_dataset(path: Path, dataset: str) -> tuple[h5py.File, h5py.Dataset]:
    import h5py

    if not path.is_file():
        raise FileNotFoundError(f"no such HDF5 file: {str(path)!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
        names = _h5_dataset_names(f)
        f.close()
        raise ValueError(
            f"dataset {dataset!r} not found in {str(path)!r}; it holds {names or 'no datasets'}"
        )
    return f, f[dataset]


def _h5_dataset_names(f: h5py.File) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


def _open_zarr_array(path: Path, dataset: str, mode: str = "r") -> Any:  # a zarr array (an optional extra)
    zarr = require("zarr", "zarr containers")

    if not path.exists():
        raise FileNotFoundError(f"no such zarr container: {str(path)!r}")
    try:
        root = zarr.open_group(str(path), mode=mode)
    except Exception as exc:  # zarr raises several error types for a non-group path
        raise ValueError(f"{str(path)!r} is not a readable zarr group ({exc})") from None
    try:
        arr = root[dataset]
    except KeyError:
        arr = None
    if arr is None or not hasattr(arr, "dtype"):
        names = sorted(name for name, _ in root.arrays())
        raise ValueError(
            f"dataset {dataset!r} not found in {str(path)!r}; it holds {names or 'no arrays'}"
        )
    return arr


def open_volume(path: StrPath, dataset: str, *, voxel_size: npt.ArrayLike | None = None,
                offset: npt.ArrayLike | None = None) -> Volume:
    """Open a dataset lazily: ``Volume.data`` is an h5py/zarr array; read slices from it.

    For HDF5 the file stays open (read-only) as long as the returned object is referenced.

    Raises
    ------
    FileNotFoundError
        The container does not exist.
    ValueError
        The dataset is missing, or its attrs do not give a valid voxel size / offset (pass
        ``voxel_size`` / ``offset`` to override the attrs).
    """
    path = Path(path)
    kind = container_kind(path)
    arr: Any  # h5py.Dataset or zarr array
    if kind == "hdf5":
        _, arr = _open_h5_dataset(path, dataset)
    else:
        arr = _open_zarr_array(path, dataset)
    where = f"dataset {dataset!r} of {str(path)!r}"
    if len(arr.shape) not in (3, 4):
        raise ValueError(f"{where} must be 3-D (z, y, x) or 4-D (c, z, y, x); got shape {arr.shape}")
    vs, off = _geometry_from_attrs(dict(arr.attrs), where, voxel_size, offset)
    return Volume(arr, vs, off)


def read_volume(path: StrPath, dataset: str, *, voxel_size: npt.ArrayLike | None = None,
                offset: npt.ArrayLike | None = None, roi: Roi | None = None) -> Volume:
    """Read a dataset (or the part inside ``roi``) into memory.

    Parameters
    ----------
    path : str or Path
        HDF5 file or zarr container.
    dataset : str
        The dataset's name inside it.
    voxel_size, offset : 3 numbers, optional
        Override the ``resolution`` / ``offset`` attrs (nm, z y x).
    roi : Roi, optional
        A world box (nm); only that part is read and the result's offset is ``roi.begin``. It
        must lie inside the volume and be aligned to its voxel grid.
    """
    vol = open_volume(path, dataset, voxel_size=voxel_size, offset=offset)
    if roi is None:
        data = np.asarray(vol.data[...])
        return Volume(data, vol.voxel_size, vol.offset)
    slices = roi_slices(roi, vol.spatial_shape, vol.voxel_size, vol.offset, name="roi")
    index = (slice(None),) * (len(vol.shape) - 3) + slices
    data = np.asarray(vol.data[index])
    return Volume(data, vol.voxel_size, tuple(float(b) for b in roi.begin))


def roi_slices(roi: Roi, shape: Sequence[int], voxel_size: FloatTriple, offset: FloatTriple, *, name: str = "roi"
               ) -> tuple[slice, ...]:
    """Voxel slices of a world ``roi`` (nm) in an array of ``shape`` at ``voxel_size``/``offset``.

    Raises ValueError when the ROI is not aligned to the voxel grid or not inside the array.
    """
    begin = np.asarray(roi.begin, dtype=np.float64)
    size = np.asarray(roi.shape, dtype=np.float64)
    vs = np.asarray(voxel_size, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    start_f = (begin - off) / vs
    count_f = size / vs
    start = np.round(start_f).astype(np.int64)
    count = np.round(count_f).astype(np.int64)
    if np.any(np.abs(start_f - start) > 1e-6) or np.any(np.abs(count_f - count) > 1e-6):
        raise ValueError(
            f"{name} (begin {tuple(roi.begin)}, shape {tuple(roi.shape)} nm) is not aligned to the "
            f"voxel grid (voxel size {tuple(voxel_size)}, offset {tuple(offset)} nm)"
        )
    if np.any(count <= 0):
        raise ValueError(f"{name} must have a positive shape; got {tuple(roi.shape)} nm")
    end = start + count
    shp = np.asarray(shape, dtype=np.int64)
    if np.any(start < 0) or np.any(end > shp):
        extent_end = off + shp * vs
        raise ValueError(
            f"{name} (begin {tuple(roi.begin)}, end {tuple(roi.end)} nm) lies outside the volume "
            f"(begin {tuple(off)}, end {tuple(extent_end)} nm)"
        )
    return tuple(slice(int(s), int(e)) for s, e in zip(start, end))


def check_same_geometry(named_volumes: Sequence[tuple[str, Volume]], *, spatial: bool = True) -> None:
    """Raise ValueError unless all ``(name, Volume)`` pairs share shape, voxel size and offset.

    Only the (z, y, x) part of the shapes is compared when ``spatial`` (affinities carry a
    leading channel axis).
    """
    if len(named_volumes) < 2:
        return
    name0, v0 = named_volumes[0]
    for name, v in named_volumes[1:]:
        s0 = v0.spatial_shape if spatial else v0.shape
        s1 = v.spatial_shape if spatial else v.shape
        if s0 != s1:
            raise ValueError(f"{name} has shape {s1} but {name0} has shape {s0}; they must match")
        if not np.allclose(v0.voxel_size, v.voxel_size):
            raise ValueError(
                f"{name} has voxel size {v.voxel_size} nm but {name0} has {v0.voxel_size} nm; "
                "they must match"
            )
        if not np.allclose(v0.offset, v.offset):
            raise ValueError(
                f"{name} has offset {v.offset} nm but {name0} has {v0.offset} nm; they must match"
            )


def _default_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    spatial = tuple(min(64, s) for s in shape[-3:])
    return (1,) * (len(shape) - 3) + spatial if len(shape) > 3 else spatial


def write_volume(
    path: StrPath,
    dataset: str,
    data: npt.ArrayLike,
    *,
    voxel_size: npt.ArrayLike,
    offset: npt.ArrayLike = (0, 0, 0),
    chunks: Optional[Sequence[int]] = None,
    compression: Optional[str] = "gzip",
    attrs: Optional[Mapping[str, Any]] = None,
) -> Path:
    """Write ``data`` as ``dataset`` of ``path`` (HDF5 or zarr) atomically.

    Other datasets already in the container are kept; an existing dataset of the same name is
    replaced, but only once the new one is completely written.

    Parameters
    ----------
    data : array-like
        ``(Z, Y, X)`` or ``(C, Z, Y, X)``.
    voxel_size, offset : 3 numbers
        nm, (z, y, x); stored as the ``resolution`` / ``offset`` attrs.
    chunks : tuple, optional
        Chunk shape (default: 64 per spatial axis, 1 per channel).
    compression : "gzip" or None
        HDF5 gzip / zarr's default codec when not None.
    attrs : dict, optional
        Extra attrs (JSON-serialisable).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OSError
        The destination cannot be written (permissions, full disk); nothing is left behind.
    """
    path = Path(path)
    kind = container_kind(path)
    arr = as_array("data", data)
    if arr.ndim not in (3, 4):
        raise ValueError(f"data must be 3-D (z, y, x) or 4-D (c, z, y, x); got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"data must not be empty; got shape {arr.shape}")
    if not dataset or dataset.startswith("/") or dataset.endswith("/"):
        raise ValueError(f"dataset must be a non-empty relative name like 'raw'; got {dataset!r}")
    vs = [float(v) for v in float_triple("voxel_size", voxel_size, positive=True)]
    off = [float(v) for v in float_triple("offset", offset)]
    meta = {"resolution": vs, "offset": off, **(attrs or {})}
    chunk_shape = tuple(chunks) if chunks is not None else _default_chunks(arr.shape)
    if kind == "hdf5":
        _write_h5_atomic(path, dataset, arr, meta, chunk_shape, compression)
    else:
        _write_zarr_atomic(path, dataset, arr, meta, chunk_shape, compression)
    log.info("wrote %s:%s %s %s", path, dataset, arr.shape, arr.dtype)
    return path


def _write_h5_atomic(path: Path, dataset: str, arr: npt.NDArray[Any], meta: Mapping[str, Any], chunks: tuple[int, ...],
                     compression: str | None) -> None:
    import h5py

    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output directory does not exist: {str(parent)!r}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    try:
        if path.exists():
            shutil.copyfile(path, tmp)
            mode = "a"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as f:
            if dataset in f:
                del f[dataset]
            ds = f.create_dataset(
                dataset, data=arr, chunks=tuple(min(c, s) for c, s in zip(chunks, arr.shape)),
                compression=compression,
            )
            for k, v in meta.items():
                ds.attrs[k] = v
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _zarr_compressors(compression: str | None) -> str | None:
    return None if compression is None else "auto"


def _write_zarr_atomic(path: Path, dataset: str, arr: npt.NDArray[Any], meta: Mapping[str, Any],
                       chunks: tuple[int, ...], compression: str | None) -> None:
    zarr = require("zarr", "zarr containers")

    root = zarr.open_group(str(path), mode="a")
    final = path / dataset
    parent_name, _, leaf = dataset.rpartition("/")
    if parent_name:
        root.require_group(parent_name)
    tmp_name = (parent_name + "/" if parent_name else "") + f".{leaf}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        z = root.create_array(
            tmp_name, shape=arr.shape, dtype=arr.dtype,
            chunks=tuple(min(c, s) for c, s in zip(chunks, arr.shape)),
            compressors=_zarr_compressors(compression),
        )
        z[...] = arr
        z.attrs.update(meta)
        _zarr_move_into_place(path / tmp_name, final)
    except BaseException:
        if (path / tmp_name).exists():
            shutil.rmtree(path / tmp_name, ignore_errors=True)
        raise


def _zarr_move_into_place(tmp: Path, final: Path) -> None:
    """Rename a finished zarr array directory onto ``final`` (replacing an old one)."""
    if final.exists():
        trash = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)


def create_zarr_array(
    path: StrPath, dataset: str, *, shape: Sequence[int], dtype: npt.DTypeLike, chunks: Sequence[int],
    voxel_size: npt.ArrayLike, offset: npt.ArrayLike = (0, 0, 0), attrs: Optional[Mapping[str, Any]] = None,
    compression: Optional[str] = "gzip", overwrite: bool = False,
) -> Any:  # a zarr array (zarr is an optional extra)
    """Create (or open, when it exists with the same shape/dtype and not ``overwrite``) an empty
    zarr array for block-wise writing, with ``resolution`` / ``offset`` attrs.

    Used by :mod:`xpress_fast.pipeline` for its intermediate stores: a block-wise stage writes
    into it, and :func:`publish_zarr_array` renames it into place when every block is done.
    """
    zarr = require("zarr", "zarr containers")

    path = Path(path)
    root = zarr.open_group(str(path), mode="a")
    parent_name, _, _ = dataset.rpartition("/")
    if parent_name:
        root.require_group(parent_name)
    vs = [float(v) for v in float_triple("voxel_size", voxel_size, positive=True)]
    off = [float(v) for v in float_triple("offset", offset)]
    if not overwrite and (path / dataset).exists():
        z = root[dataset]
        if tuple(z.shape) == tuple(shape) and np.dtype(z.dtype) == np.dtype(dtype):
            return z
    z = root.create_array(
        dataset, shape=tuple(shape), dtype=dtype, chunks=tuple(chunks),
        compressors=_zarr_compressors(compression), overwrite=True, fill_value=0,
    )
    z.attrs.update({"resolution": vs, "offset": off, **(attrs or {})})
    return z


def publish_zarr_array(path: StrPath, tmp_dataset: str, dataset: str) -> None:
    """Atomically rename the zarr array ``tmp_dataset`` to ``dataset`` inside ``path``."""
    path = Path(path)
    _zarr_move_into_place(path / tmp_dataset, path / dataset)


def dataset_exists(path: StrPath, dataset: str) -> bool:
    """Whether ``dataset`` exists in the container at ``path`` (False when the file is absent)."""
    path = Path(path)
    if not path.exists():
        return False
    if container_kind(path) == "hdf5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                return bool(dataset in f)
        except OSError:
            return False
    return (path / dataset).is_dir()


@contextlib.contextmanager
def atomic_file(path: StrPath) -> Iterator[Path]:
    """Write a file atomically: yields a temporary name beside ``path`` (``.<name>.<id>.tmp<suffix>``,
    the suffix kept for writers that add their own), moved onto ``path`` when the block ends
    without an error; the temporary is removed whatever happens, so no half-written file stays."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class DatasetFingerprint(TypedDict):
    """What :func:`dataset_fingerprint` records (JSON-ready)."""

    shape: list[int]
    dtype: str
    chunks: list[int] | None
    store: str  # the digest of the store's modification data


def dataset_fingerprint(path: StrPath, dataset: str) -> DatasetFingerprint:
    """What a resumable run records of an input dataset, to notice when it changes.

    ``shape``, ``dtype`` and ``chunks`` of the dataset, and a digest of its store's modification
    data: for zarr, the relative path, size and modification time (ns) of every file of the
    array (one stat per chunk file: cheap, and rewriting any chunk changes it); for HDF5, the
    file's size, modification time and inode (any write to the file changes it, also one to
    another dataset). Reading every byte would be sound against a tool that restores
    modification times, but costs a full read of the input on every run; this is what make and
    ninja trust too.
    """
    import hashlib

    path = Path(path)
    h = hashlib.sha1()
    if container_kind(path) == "hdf5":
        f, arr = _open_h5_dataset(path, dataset)
        shape, dtype, chunks = arr.shape, arr.dtype, arr.chunks
        f.close()
        st = path.stat()
        h.update(f"{st.st_size} {st.st_mtime_ns} {st.st_ino}".encode())
    else:
        arr = _open_zarr_array(path, dataset)
        shape, dtype, chunks = arr.shape, arr.dtype, arr.chunks
        root = path / dataset
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                full = os.path.join(dirpath, name)
                st = os.stat(full)
                h.update(f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"shape": [int(s) for s in shape], "dtype": str(np.dtype(dtype)),
            "chunks": None if chunks is None else [int(c) for c in chunks], "store": h.hexdigest()}
