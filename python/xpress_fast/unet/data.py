"""Training volumes and random crops read lazily from numpy, HDF5 or zarr arrays.

A :class:`TrainingVolume` holds a raw array-like and, optionally, voxel labels and/or skeletons
sharing its geometry (``voxel_size`` and ``offset`` in nm, z y x). Arrays are only sliced, never
loaded whole, so ``h5py.Dataset`` and ``zarr.Array`` work for volumes larger than memory; a volume
opened from a path (:func:`open_training_volume`) re-opens its file lazily in every process, so it
can be handed to data-loader workers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .._validate import float_triple

__all__ = ["TrainingVolume", "open_training_volume", "open_array", "normalize_raw", "RAW_DTYPES"]

logger = logging.getLogger(__name__)

#: raw dtypes accepted for training and prediction
RAW_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)


def normalize_raw(raw: np.ndarray) -> np.ndarray:
    """Map raw intensities to float32 in about [-1, 1]: uint8 / 255, uint16 / 65535, floats as 0..1."""
    arr = np.asarray(raw)
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / np.float32(255.0)
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / np.float32(65535.0)
    else:
        x = arr.astype(np.float32)
    return x * np.float32(2.0) - np.float32(1.0)


def check_raw(name: str, raw: Any) -> None:
    """Validate the dtype and dimensionality of a raw array-like without reading it."""
    if isinstance(raw, (str, bytes)) or raw is None or not hasattr(raw, "shape") or not hasattr(raw, "dtype"):
        raise TypeError(f"{name} must be a 3-d array (numpy, h5py or zarr); got {type(raw).__name__}")
    if len(raw.shape) != 3:
        raise ValueError(f"{name} must be 3-dimensional (z, y, x); got shape {tuple(raw.shape)}")
    if any(s == 0 for s in raw.shape):
        raise ValueError(f"{name} must not be empty; got shape {tuple(raw.shape)}")
    if np.dtype(raw.dtype) not in [np.dtype(d) for d in RAW_DTYPES]:
        raise TypeError(f"{name}.dtype must be uint8, uint16, float32 or float64; got {np.dtype(raw.dtype)}")


class _LazyArray:
    """An array in an HDF5 or zarr file, opened on first access in each process (picklable)."""

    def __init__(self, path: str, key: str):
        self.path = str(path)
        self.key = key
        self._arr: Any = None  # an h5py dataset or zarr array, opened in this process
        self._pid: int | None = None
        arr = self._open()
        self.shape = tuple(arr.shape)
        self.dtype = np.dtype(arr.dtype)
        self.attrs = dict(arr.attrs)

    def _open(self):
        import os

        if self._arr is None or self._pid != os.getpid():
            self._arr = _open_raw_array(self.path, self.key)
            self._pid = os.getpid()
        return self._arr

    def __getitem__(self, item):
        return np.asarray(self._open()[item])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arr"] = None
        state["_pid"] = None
        return state


def _open_raw_array(path: str, key: str):
    p = str(path)
    if p.endswith((".h5", ".hdf", ".hdf5")):
        import h5py

        f = h5py.File(p, "r")
        if key not in f:
            raise KeyError(f"dataset {key!r} not found in {p}")
        return f[key]
    import zarr

    root: Any = zarr.open(p, mode="r")  # a group, read by name (zarr types it as array or group)
    try:
        return root[key]
    except KeyError:
        raise KeyError(f"dataset {key!r} not found in {p}") from None


def open_array(path, key: str) -> _LazyArray:
    """Open ``key`` of an HDF5 (``.h5/.hdf/.hdf5``) or zarr file lazily; ``.attrs`` copied."""
    return _LazyArray(str(path), key)


@dataclass
class TrainingVolume:
    """Raw plus voxel labels and/or skeletons for training (one geometry).

    Attributes
    ----------
    raw : (Z, Y, X) array-like of uint8, uint16, float32 or float64
    labels : (Z, Y, X) integer array-like or None; 0 = background (boundary / extracellular)
    skeletons : xpress_fast.Skeletons (or challenge networkx graph) or None; nm, z y x
    voxel_size, offset : three floats, nm (z, y, x)
    labelled : (Z, Y, X) bool array-like or None; voxels whose label is known (default all)
    """

    raw: Any
    labels: Any = None
    skeletons: Any = None
    voxel_size: Any = (1.0, 1.0, 1.0)
    offset: Any = (0.0, 0.0, 0.0)
    labelled: Any = None
    _skeletons: Any = field(default=None, init=False, repr=False)

    def __post_init__(self):
        check_raw("raw", self.raw)
        self.voxel_size = float_triple("voxel_size", self.voxel_size, positive=True)
        self.offset = float_triple("offset", self.offset)
        if self.labels is None and self.skeletons is None:
            raise ValueError("a training volume needs labels or skeletons (or both); got neither")
        if self.labels is not None:
            lab = self.labels
            if not hasattr(lab, "shape") or not hasattr(lab, "dtype"):
                raise TypeError(f"labels must be a 3-d integer array; got {type(lab).__name__}")
            if np.dtype(lab.dtype).kind not in "iu":
                raise TypeError(f"labels must have an integer dtype; got {np.dtype(lab.dtype)}")
            if tuple(lab.shape) != tuple(self.raw.shape):
                raise ValueError(
                    f"labels and raw must have the same shape; got labels {tuple(lab.shape)}, "
                    f"raw {tuple(self.raw.shape)}"
                )
        if self.labelled is not None and tuple(self.labelled.shape) != tuple(self.raw.shape):
            raise ValueError(
                f"labelled and raw must have the same shape; got {tuple(self.labelled.shape)}, {tuple(self.raw.shape)}"
            )
        if self.skeletons is not None:
            from ..skeletons import as_skeletons
            from .targets import check_skeletons_in_volume

            self.skeletons = as_skeletons(self.skeletons)
            from .skeleton_training import check_skeleton_units

            check_skeleton_units(self.skeletons, self.raw.shape, voxel_size=self.voxel_size, offset=self.offset)
            check_skeletons_in_volume(self.skeletons, self.raw.shape, voxel_size=self.voxel_size, offset=self.offset)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.raw.shape)


def _attr_triple(attrs, names: Sequence[str]):
    for n in names:
        if n in attrs:
            return np.asarray(attrs[n], dtype=np.float64)
    return None


def open_training_volume(
    path,
    *,
    raw_key: str = "volumes/raw",
    labels_key: str | None = "volumes/labels",
    skeletons=None,
    voxel_size=None,
    offset=None,
) -> TrainingVolume:
    """Open a challenge-style HDF5/zarr volume lazily as a :class:`TrainingVolume`.

    ``voxel_size`` / ``offset`` default to the raw dataset's ``resolution`` / ``offset`` attrs (nm,
    z y x). If the labels carry their own ``resolution`` it must equal the raw's. ``labels_key=None``
    (or a missing labels dataset when ``skeletons`` are given) trains from skeletons only;
    ``skeletons`` may be a path for :func:`xpress_fast.load_skeletons` or a Skeletons object.
    """
    raw = open_array(path, raw_key)
    vs = _attr_triple(raw.attrs, ("resolution", "voxel_size")) if voxel_size is None else voxel_size
    off = _attr_triple(raw.attrs, ("offset",)) if offset is None else offset
    vs = (1.0, 1.0, 1.0) if vs is None else vs
    off = (0.0, 0.0, 0.0) if off is None else off
    labels = None
    if labels_key is not None:
        try:
            labels = open_array(path, labels_key)
        except KeyError:
            if skeletons is None:
                raise
        if labels is not None:
            lvs = _attr_triple(labels.attrs, ("resolution", "voxel_size"))
            if lvs is not None and not np.allclose(lvs, np.asarray(vs, dtype=np.float64)):
                raise ValueError(
                    f"labels and raw must have the same voxel size; got labels {lvs.tolist()}, raw {list(vs)}"
                )
    if isinstance(skeletons, (str, bytes)) or hasattr(skeletons, "__fspath__"):
        from ..skeletons import load_skeletons

        skeletons = load_skeletons(skeletons)
    return TrainingVolume(raw=raw, labels=labels, skeletons=skeletons, voxel_size=vs, offset=off)
