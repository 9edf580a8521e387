"""Long-range-aware segmentation: the mutex watershed over every affinity offset.

The merge tree of :func:`xpress_fast.agglomerate` reads only the three nearest-neighbour
channels. The U-Net predicts long-range channels too (``-3``, ``-9``, ``-27`` voxels along each
axis); the mutex watershed (Wolf et al., ECCV 2018) uses them all: each edge's weight is
``affinity - bias``; positive weights attract, negative ones repel, and all edges are taken
from the strongest down, an attraction joining two clusters unless a repulsion already lies
between them (see ``cpp/include/xpress_fast/mutex_watershed.hpp``).

Example
-------
>>> seg = xpress_fast.mutex_watershed(affs, offsets=model.offsets, bias=0.5)    # doctest: +SKIP
"""
from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

from ._validate import as_array, check_ndim, check_nonempty, check_threads, check_thresholds

__all__ = ["mutex_watershed", "DEFAULT_OFFSETS"]

logger = logging.getLogger(__name__)

#: The U-Net's tiny preset (:class:`xpress_fast.unet.TrainConfig.tiny`): nearest neighbours, then
#: 3 and 9 voxels along each axis.
DEFAULT_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3),
                   (-9, 0, 0), (0, -9, 0), (0, 0, -9))


def _per_channel(name: str, value: npt.ArrayLike, n_channels: int) -> npt.NDArray[np.float32]:
    """A number for every channel, or one number per channel, each in [0, 1], as float32."""
    arr = check_thresholds(name, value, increasing=False)
    if np.ndim(value) == 0:
        arr = np.full(n_channels, arr[0])
    elif arr.size != n_channels:
        raise ValueError(f"{name} must be a number or {n_channels} numbers (one per channel); got {arr.size}")
    return arr.astype(np.float32)


def _strides(strides: npt.ArrayLike | None, n_channels: int) -> npt.NDArray[np.int64]:
    if strides is None:
        return np.ones((n_channels, 3), dtype=np.int64)
    try:
        arr = np.asarray(strides, dtype=np.float64)
    except TypeError:
        raise TypeError(f"strides must be None or one (z, y, x) integer triple per channel; got {strides!r}") from None
    except ValueError:  # ragged
        raise ValueError(f"strides must be None or one (z, y, x) integer triple per channel; got {strides!r}") \
            from None
    if arr.shape != (n_channels, 3):
        raise ValueError(f"strides must be None or one (z, y, x) integer triple per channel, shape "
                         f"({n_channels}, 3); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 1):
        raise ValueError(f"strides must be positive integers; got {strides!r}")
    return arr.astype(np.int64)


def mutex_watershed(
    affs: npt.ArrayLike,
    offsets: npt.ArrayLike = DEFAULT_OFFSETS,
    *,
    bias: npt.ArrayLike = 0.5,
    strides: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    threads: int | None = None,
) -> npt.NDArray[np.uint64]:
    """Segment affinities of any offsets with the mutex watershed.

    Parameters
    ----------
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8 (k means k / 255)
        Channel ``c`` links voxel ``v`` to ``v + offsets[c]`` (where both lie in the volume).
    offsets : C integer triples (z, y, x), none (0, 0, 0)
        Default :data:`DEFAULT_OFFSETS` (the U-Net's tiny preset, 9 channels).
    bias : number or C numbers in [0, 1]
        Edge weight ``w = affinity - bias[c]`` (float32): ``w > 0`` attracts with priority ``w``,
        ``w < 0`` repels with priority ``-w``, ``w == 0`` is no edge. A higher bias splits more.
    strides : None or C integer triples >= 1
        Channel ``c`` has an edge at voxel ``(z, y, x)`` only where each coordinate is a multiple
        of its stride (fewer long-range edges: less memory and time). Default: every voxel.
    mask : (Z, Y, X) bool or integer array, optional
        Voxels where it is 0 get label 0 and no edges.
    threads : int, optional
        Threads for gathering and sorting the edges (default: CPU count, at most 8); the greedy
        pass is sequential. The result does not depend on it.

    Returns
    -------
    (Z, Y, X) uint64
        Labels 1, 2, ... numbered in raster order of each cluster's first voxel; 0 where masked.

    Notes
    -----
    Edges are taken from the highest priority down, ties by channel, then by the raster index
    of ``v``; an attractive edge joins its two clusters unless a repulsive edge already taken
    lies between them; a repulsive edge between two clusters forbids them ever to join. Memory:
    8 bytes per edge (``C`` per voxel with unit strides) plus ~12 bytes per voxel and ~28 bytes
    per distinct constraint between clusters. Needs ``C * voxels < 2**32``; process larger
    volumes in blocks. Equal to ``mwatershed.agglom(affs - bias, offsets)`` up to relabelling
    where no two priorities tie (tested).
    """
    from .fragments import AFFINITY_DTYPES, _spatial, check_affinity_values
    from .region_graphs import check_offsets

    arr = as_array("affs", affs)
    if arr.dtype == np.bool_ or arr.dtype.name not in AFFINITY_DTYPES:
        raise TypeError(f"affs.dtype must be float32 or uint8; got {arr.dtype}")
    check_ndim("affs", arr, 4, "C, Z, Y, X")
    check_nonempty("affs", arr)
    n_channels = arr.shape[0]
    offs = check_offsets(offsets, n_channels, nearest_first=False)
    biases = _per_channel("bias", bias, n_channels)
    steps = _strides(strides, n_channels)
    check_affinity_values("affs", arr)  # every channel: all of them are edges here
    from . import _segment

    n_voxels = int(np.prod(arr.shape[1:]))
    if n_channels * n_voxels >= _segment.MUTEX_MAX_EDGES:
        raise ValueError(f"affs is too large for one mutex watershed: {n_channels} channels x {n_voxels} voxels "
                         f">= 2**32 edges (strides do not lift this limit); process it in blocks")
    mask_arr = None
    if mask is not None:
        mask_arr = _spatial("mask", mask, arr.shape[1:], "biu", "a boolean or integer array")
        mask_arr = np.ascontiguousarray(mask_arr != 0, dtype=np.uint8)
    threads = check_threads(threads)
    kernel = getattr(_segment, f"mutex_watershed_{arr.dtype.name}")
    labels: npt.NDArray[np.uint64] = kernel(np.ascontiguousarray(arr), offs, steps, biases, mask_arr, int(threads))
    logger.debug("mutex watershed: %d clusters", int(labels.max()))
    return labels
