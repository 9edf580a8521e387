"""Fragments from affinities: a seeded watershed on the affinity graph (see watershed.hpp).

Affinities are ``(C, Z, Y, X)``, float32 in [0, 1] or uint8 (0..255 meaning 0..1), with the first
three channels linking each voxel ``v`` to ``v - e_z``, ``v - e_y``, ``v - e_x`` (the waterz /
gunpowder convention); further channels are ignored.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, SupportsInt, TypedDict

import numpy as np
import numpy.typing as npt

from ._typing import ArraySource
from ._validate import as_array, check_nonempty, check_threads, check_threshold, int_triple
from .blocking import Block, BlockLayout

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["watershed", "blockwise_watershed", "WatershedBlocks", "watershed_blocks", "watershed_block",
           "check_block_options", "check_affinities", "check_affinity_values", "distance_transform_seeds"]

logger = logging.getLogger(__name__)

AFFINITY_DTYPES = ("float32", "uint8")
#: More channels than this are taken for a channel-last array read as (C, Z, Y, X) (the U-Net's
#: default has 12, its tiny preset 9).
MAX_CHANNELS = 32
#: Voxels of margin read around each block by :func:`blockwise_watershed` (and the pipeline).
DEFAULT_CONTEXT = (8, 8, 8)


def check_affinities(value: npt.ArrayLike, name: str = "affs", *, offsets_given: bool = False) -> npt.NDArray[Any]:
    """Validate an affinity array; returns it C-contiguous (a copy only if needed).

    float32 must be finite and in [0, 1]; uint8 is taken as ``k / 255``. ``offsets_given``: the
    caller has one offset per channel, so the channel count is checked against those and the
    channel-last guess of :func:`check_affinity_shape` is skipped.
    """
    arr = as_array(name, value)
    if arr.dtype == np.bool_ or arr.dtype.name not in AFFINITY_DTYPES:
        raise TypeError(f"{name}.dtype must be float32 or uint8; got {arr.dtype}")
    check_affinity_shape(name, arr.shape, offsets_given=offsets_given)
    check_nonempty(name, arr)
    check_affinity_values(name, arr[:3])
    return np.ascontiguousarray(arr)


def check_affinity_shape(name: str, shape: tuple[int, ...], *, offsets_given: bool = False) -> None:
    """An affinity shape must be (C, Z, Y, X) with 3 <= C <= MAX_CHANNELS, and must not look like
    a channel-last (Z, Y, X, 3) array (unless the channels are declared by offsets)."""
    if len(shape) != 4:
        raise ValueError(f"{name} must be 4-dimensional (C, Z, Y, X); got shape {tuple(shape)}")
    if shape[0] < 3:
        raise ValueError(f"{name} must have at least 3 channels (the z, y, x nearest neighbours); got shape {shape}")
    if shape[0] > MAX_CHANNELS:
        raise ValueError(
            f"{name} must be (C, Z, Y, X) with at most {MAX_CHANNELS} channels; got shape {shape} "
            f"(channel-last (Z, Y, X, C) affinities must be transposed: np.moveaxis(affs, -1, 0))"
        )
    # A channel-last (Z, Y, X, 3) array of a volume at least 4 voxels along z, y and x would
    # otherwise pass as Z channels over a (Y, X, 3) volume and give a wrong-shaped result; the
    # price is that a channel-first array with more than 3 channels, Z, Y >= 4 and X == 3 is
    # refused too, unless offsets declare its channels (README, limitations).
    if not offsets_given and shape[-1] == 3 and shape[0] > 3 and min(shape[1], shape[2]) >= 4:
        raise ValueError(
            f"{name} must be (C, Z, Y, X); got shape {shape}, which looks channel-last (Z, Y, X, 3): "
            f"transpose it with np.moveaxis(affs, -1, 0) (a channel-first array with 3 voxels along x "
            f"and more than 3 channels is refused too, unless offsets are given: pad x)"
        )


def check_affinity_values(name: str, values: npt.NDArray[Any], where: str = "") -> None:
    """float32 affinities must be finite and in [0, 1] (uint8 always are); ``where`` ends the message."""
    if values.dtype != np.float32 or values.size == 0:
        return
    low, high = float(np.min(values)), float(np.max(values))
    if np.isnan(low) or np.isnan(high):
        raise ValueError(f"{name} must not contain NaN{where}")
    if low < 0.0 or high > 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{low}, {high}]{where}")


def _kernel(name: str, affs: npt.NDArray[Any]) -> Callable[..., Any]:
    """The compiled ``{name}_{dtype}`` kernel for ``affs`` (dispatch by name: the stubs type each one)."""
    from . import _segment

    kernel: Callable[..., Any] = getattr(_segment, f"{name}_{affs.dtype.name}")
    return kernel


def _spatial(name: str, value: npt.ArrayLike, shape: Iterable[int], dtype_kinds: str, what: str) -> npt.NDArray[Any]:
    arr = as_array(name, value)
    if arr.dtype.kind not in dtype_kinds:
        raise TypeError(f"{name} must be {what}; got dtype {arr.dtype}")
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have the spatial shape of affs, {tuple(shape)}; got {arr.shape}")
    return arr


def distance_transform_seeds(
    affs: npt.ArrayLike, *, threshold: float = 0.5, min_seed_distance: int = 10, id_offset: int = 0,
    threads: int | None = None,
) -> npt.NDArray[np.uint64]:
    """Seeds at the maxima of the distance transform of the "inside" map, as the XPRESS baseline.

    ``inside`` = mean of the first three affinity channels > ``threshold``; seeds are the
    connected components (6-connectivity) of the inside voxels whose Euclidean distance to the
    nearest outside voxel equals the maximum within a ``min_seed_distance`` cube around them
    (``scipy.ndimage.maximum_filter(distance, min_seed_distance) == distance``), numbered in the
    order ``scipy.ndimage.label`` numbers them, all computed in C++. Seed ids are
    ``id_offset + 1, id_offset + 2, ...``; 0 elsewhere. Returns uint64 (Z, Y, X).
    """
    return _distance_transform_seeds(check_affinities(affs), check_threshold("threshold", threshold),
                                     min_seed_distance, _check_id_offset(id_offset), check_threads(threads))


MAX_LABEL = 2**64 - 1


def _check_id_offset(id_offset: object) -> int:
    if not isinstance(id_offset, (int, np.integer)) or isinstance(id_offset, (bool, np.bool_)) \
            or not 0 <= int(id_offset) <= MAX_LABEL:
        raise ValueError(f"id_offset must be an integer in [0, 2**64 - 1]; got {id_offset!r}")
    return int(id_offset)


def _distance_transform_seeds(affs: npt.NDArray[Any], threshold: float, min_seed_distance: int, id_offset: int,
                              threads: int) -> npt.NDArray[np.uint64]:
    """:func:`distance_transform_seeds` of affinities that :func:`check_affinities` passed."""
    from . import _segment

    inside = _kernel("inside", affs)(affs, float(threshold))
    # maxima and their components (numbered as scipy.ndimage.label numbers them) in one kernel
    seeds, n = _segment.distance_seeds(inside, int(min_seed_distance), id_offset, threads)
    if n > MAX_LABEL - id_offset:  # the ids wrapped modulo 2**64 and could collide with another block's
        raise ValueError(f"id_offset {id_offset} leaves room for {MAX_LABEL - id_offset} uint64 ids, but there are "
                         f"{n} seeds; use a smaller id_offset")
    logger.debug("distance-transform seeds: %d", n)
    return seeds


def watershed(
    affs: npt.ArrayLike,
    *,
    seeds: npt.ArrayLike | None = None,
    mask: npt.ArrayLike | None = None,
    threshold: float = 0.5,
    min_seed_distance: int = 10,
    min_mean_affinity: float | None = None,
    clear_boundary: bool = False,
    id_offset: int = 0,
    threads: int | None = None,
) -> npt.NDArray[np.uint64]:
    """Fragments by a seeded watershed that floods the affinity graph from seeds.

    Parameters
    ----------
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8
        Affinities; channels 0, 1, 2 link voxel ``v`` to ``v - e_z``, ``v - e_y``, ``v - e_x``.
    seeds : (Z, Y, X) integer array, optional
        Non-zero voxels are seeds and keep their id. Without seeds: the maxima of the distance
        transform of the "inside" map (mean affinity > ``threshold``) at least
        ``min_seed_distance`` apart, numbered ``id_offset + 1, ...`` (the XPRESS baseline's seeds).
    mask : (Z, Y, X) bool or integer array, optional
        Voxels where the mask is 0 stay 0 and are never flooded through.
    threshold : float
        Inside-map threshold: the inside map is where the mean of the first three affinity
        channels is ``> threshold``; it places the automatic seeds and, with
        ``clear_boundary``, says which voxels keep their fragment.
    min_seed_distance : int
        Size of the maximum filter (voxels) that picks the distance-transform maxima.
    min_mean_affinity : float, optional
        Remove (set to 0) fragments whose mean affinity (over their voxels, of the mean of the
        three channels) is below this level; the baseline uses 0.3.
    clear_boundary : bool
        Set the voxels outside the inside map (boundary voxels) to 0 after the flood, as the
        XPRESS baseline does (lsd's ``watershed_from_affinities``). Default False: every voxel
        keeps its fragment, and :func:`xpress_fast.agglomerate` leaves the boundary voxels out
        of the region graph instead (its ``inside_threshold``), which scores the same edges
        without splitting skeleton nodes that fall on a noisy boundary voxel.
    id_offset : int
        Added to the automatic seed ids, so blocks processed separately get disjoint ids. Given
        ``seeds`` are used as they are.
    threads : int, optional
        Worker threads (default: the CPU count, at most 8); the result does not depend on it.

    Returns
    -------
    fragments : (Z, Y, X) uint64
        Every voxel joins the seed it reaches over the path whose weakest affinity is strongest
        (a seeded maximum spanning forest; affinities quantised to 1/255 for the order, ties in
        raster order). 0 where masked, where no seed is reachable, and (with
        ``clear_boundary``) outside the inside map.

    Notes
    -----
    The watershed is global: a block processed alone can differ from the same block inside a
    larger volume near its faces (a voxel may be reached from a seed outside the block, and the
    automatic seeds depend on distances across the faces); no finite margin of context makes
    them agree in general. Block-wise fragments are therefore a definition of their own,
    :func:`blockwise_watershed` (each block's watershed with a margin, core kept), which the
    pipeline computes exactly; they differ from this whole-volume watershed near block faces.
    """
    return _watershed(check_affinities(affs), seeds=seeds, mask=mask, threshold=threshold,
                      min_seed_distance=min_seed_distance, min_mean_affinity=min_mean_affinity,
                      clear_boundary=clear_boundary, id_offset=id_offset, threads=threads)


def _watershed(affs: npt.NDArray[Any], *, seeds: npt.ArrayLike | None = None, mask: npt.ArrayLike | None = None,
               threshold: float = 0.5, min_seed_distance: int = 10, min_mean_affinity: float | None = None,
               clear_boundary: bool = False, id_offset: int = 0, threads: int | None = None
               ) -> npt.NDArray[np.uint64]:
    """:func:`watershed` of affinities that :func:`check_affinities` passed (it reads them
    twice over otherwise, a tenth of the whole watershed's time)."""
    shape = affs.shape[1:]
    threads = check_threads(threads)
    id_offset = _check_id_offset(id_offset)
    threshold = check_threshold("threshold", threshold)
    min_mean_affinity = check_threshold("min_mean_affinity", min_mean_affinity, optional=True)
    if not isinstance(min_seed_distance, (int, np.integer)) or min_seed_distance < 1:
        raise ValueError(f"min_seed_distance must be a positive integer; got {min_seed_distance!r}")
    if not isinstance(clear_boundary, (bool, np.bool_)):
        raise TypeError(f"clear_boundary must be True or False; got {clear_boundary!r}")

    if seeds is None:
        labels = _distance_transform_seeds(affs, threshold, min_seed_distance, id_offset, threads)
    else:
        seeds = _spatial("seeds", seeds, shape, "iu", "an integer label array")
        if seeds.dtype.kind == "i" and seeds.min() < 0:
            raise ValueError(f"seeds must not contain negative labels; got minimum {seeds.min()}")
        from . import _segment

        labels = _segment.zeros_uint64(shape, threads)  # prefaulted: the watershed's threads write it
        np.copyto(labels, seeds, casting="unsafe")  # negative ids were refused above
    mask_arr = None
    if mask is not None:
        mask_arr = _spatial("mask", mask, shape, "biu", "a boolean or integer array")
        mask_arr = np.ascontiguousarray(mask_arr != 0, dtype=np.uint8)
    _kernel("watershed", affs)(affs, labels, mask_arr, threads)
    if clear_boundary:
        cleared = _kernel("clear_boundary", affs)(affs, labels, threshold, threads)
        logger.debug("cleared %d boundary voxels", cleared)
    if min_mean_affinity is not None:
        removed = _kernel("filter", affs)(affs, labels, min_mean_affinity)
        logger.debug("removed %d fragments with mean affinity < %s", removed, min_mean_affinity)
    return labels


# ------------------------------------------------------------------------------------------------
# Block-wise fragments: ONE definition, used by blockwise_watershed here and by the dask pipeline
# (xpress_fast.pipeline.stages), so that the two cannot drift apart.

#: Watershed options a block-wise run sets itself (or cannot cut into blocks), with the reason.
_BLOCK_SET_OPTIONS = {
    "id_offset": "each block's ids start at block.index * id_stride",
    "seeds": "seeds of the whole volume are not cut into blocks",
    "mask": "a mask of the whole volume is not cut into blocks",
    "block_shape": "give block_shape as its own argument",
    "context": "give context as its own argument",
}


class WatershedOptions(TypedDict, total=False):
    """The :func:`watershed` options a block-wise run passes to each block."""

    threshold: float
    min_seed_distance: int
    min_mean_affinity: float | None
    clear_boundary: bool
    threads: int | None


def check_block_options(options: Mapping[str, Any] | None, name: str = "watershed_options") -> dict[str, Any]:
    """The watershed options of a block-wise run as a new dict; ValueError for the options a
    block-wise run sets itself (``id_offset``) or cannot cut into blocks (``seeds``, ``mask``)."""
    opts = dict(options or {})
    for key, reason in _BLOCK_SET_OPTIONS.items():
        if key in opts:
            raise ValueError(f"{name} must not set {key} ({reason})")
    return opts


@dataclass(frozen=True)
class WatershedBlocks:
    """How block-wise fragments cut a volume (make one with :func:`watershed_blocks`).

    Attributes
    ----------
    layout : BlockLayout
        Blocks of ``block_shape`` (clipped to the volume) from the origin, the last ones smaller.
    context : tuple of 3 int
        Voxels of margin read around each block (clipped at the volume's border).
    id_stride : int
        Block ``i``'s automatic seed ids start after ``i * id_stride``; one more than the voxels
        of the largest read region, so no two blocks can share an id.
    """

    layout: BlockLayout
    context: tuple[int, int, int]
    id_stride: int


def watershed_blocks(shape: Iterable[SupportsInt], block_shape: Iterable[SupportsInt],
                     context: Iterable[SupportsInt] = DEFAULT_CONTEXT) -> WatershedBlocks:
    """The :class:`WatershedBlocks` of a (Z, Y, X) volume of ``shape``.

    ``block_shape`` (positive integers) is clipped to ``shape``, so a block larger than the volume
    is the whole volume (and the id stride does not depend on how much larger it was).
    ``context`` are non-negative integers. Raises ValueError/TypeError naming the argument.
    """
    shape = int_triple("shape", shape)
    block = tuple(min(b, s) for b, s in zip(int_triple("block_shape", block_shape), shape))
    ctx = int_triple("context", context, minimum=0)
    id_stride = math.prod(b + 2 * c for b, c in zip(block, ctx)) + 1
    return WatershedBlocks(BlockLayout(shape, block), ctx, id_stride)


def watershed_block(affs: ArraySource, block: Block, blocks: WatershedBlocks,
                    **watershed_options: Unpack[WatershedOptions]) -> npt.NDArray[np.uint64]:
    """The fragments of one block's core: :func:`watershed` of the block grown by
    ``blocks.context`` (clipped to the volume), ids offset by ``block.index * blocks.id_stride``,
    cut back to the core.

    ``affs`` is the whole volume's (C, Z, Y, X) affinities as any array that slices into numpy
    (numpy, zarr, h5py); only the block's read region is read. Returns a new C-contiguous
    (Z, Y, X) uint64 array of ``block.shape``.
    """
    read, inner = block.with_context(blocks.context, tuple(affs.shape[1:]))
    a = np.asarray(affs[(slice(None),) + read])
    frag = watershed(a, id_offset=block.index * blocks.id_stride, **watershed_options)
    return np.ascontiguousarray(frag[inner])


def blockwise_watershed(affs: npt.ArrayLike, *, block_shape: Iterable[SupportsInt],
                        context: Iterable[SupportsInt] = DEFAULT_CONTEXT, **watershed_options: Unpack[WatershedOptions]
                        ) -> npt.NDArray[np.uint64]:
    """Fragments made block by block, exactly as the block-wise pipeline makes them, in memory.

    Parameters
    ----------
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8
        Affinities, as for :func:`watershed`.
    block_shape : 3 positive ints
        Blocks from the origin, the last ones smaller; clipped to the volume.
    context : 3 non-negative ints
        Voxels of margin read around each block (clipped at the volume's border).
    **watershed_options
        ``threshold``, ``min_seed_distance``, ``min_mean_affinity``, ``clear_boundary`` of
        :func:`watershed`, applied
        to each block (not ``id_offset``, ``seeds``, ``mask``).

    Returns
    -------
    fragments : (Z, Y, X) uint64
        Each block's core holds :func:`watershed` of the block read with ``context`` voxels of
        margin, its automatic seed ids offset by ``block.index * id_stride`` (see
        :func:`watershed_blocks`), so ids are unique across blocks.

    Notes
    -----
    :func:`xpress_fast.pipeline.segment_volume` computes each block with the same function
    (:func:`watershed_block`), so its fragments equal these exactly given the same
    ``block_shape``, ``context`` and options (its uint32 ids widened to uint64). Objects cut by
    block faces become several fragments, which the agglomeration joins again through their
    shared face; a ``block_shape`` covering the volume gives :func:`watershed` itself.
    """
    affs = check_affinities(affs)
    opts = check_block_options(watershed_options)
    blocks = watershed_blocks(affs.shape[1:], block_shape, context)
    fragments = np.zeros(affs.shape[1:], dtype=np.uint64)
    for block in blocks.layout:
        fragments[block.core] = watershed_block(affs, block, blocks, **opts)
    return fragments
