"""Relabelling label arrays through a lookup table (fragments -> segments, merges, renumbering)."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from ._validate import as_array

__all__ = ["map_labels"]


def _ids(name: str, value: npt.ArrayLike) -> npt.NDArray[Any]:
    arr = as_array(name, value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array; got dtype {arr.dtype}")
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(f"{name} must not be negative; got minimum {arr.min()}")
    return arr


def map_labels(labels: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """``labels`` with every id ``keys[i]`` replaced by ``values[i]``; ids not in ``keys`` (and 0,
    unless it is a key) keep their value.

    Parameters
    ----------
    labels : integer array, any shape
        Non-negative ids (any unsigned dtype, or a signed one without negatives); never modified.
    keys, values : (K,) integer arrays
        The lookup table: unique, non-negative ``keys`` in any order.

    Returns
    -------
    uint64 array of ``labels``' shape. Runs in C++ (a dense table when the keys are small, else a
    binary search per voxel), two threads for large arrays.
    """
    from . import _segment

    lab = _ids("labels", labels)
    k = _ids("keys", keys).ravel()
    v = _ids("values", values).ravel()
    if k.shape != v.shape:
        raise ValueError(f"keys and values must have the same length; got {k.size} and {v.size}")
    k = k.astype(np.uint64)
    v = v.astype(np.uint64)
    if k.size > 1 and np.any(k[1:] <= k[:-1]):
        order = np.argsort(k, kind="stable")
        k, v = k[order], v[order]
        if np.any(k[1:] == k[:-1]):
            raise ValueError(f"keys must be unique; {int(k[1:][k[1:] == k[:-1]][0])} appears more than once")
    k, v = np.ascontiguousarray(k), np.ascontiguousarray(v)
    if lab.dtype == np.uint32:
        return _segment.map_labels_uint32(np.ascontiguousarray(lab), k, v)
    return _segment.map_labels_uint64(np.ascontiguousarray(lab, dtype=np.uint64), k, v)
