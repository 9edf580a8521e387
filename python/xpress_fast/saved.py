"""Saving and loading region graphs and agglomerations (merge histories) as ``.npz`` files.

What a block-wise run writes and reads back between its stages, and what a user keeps to sweep
thresholds later without recomputing anything. A loaded file is an input like any other: every
array is checked (shapes, dtypes, ids in range, finite and ordered merge levels, consistent
histograms) before it is used, so a damaged or edited file gives a ``ValueError`` naming the
file and what is wrong, never a wrong score. Files are written atomically (a temporary name,
then a rename) and read without unpickling.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping, NoReturn

import numpy as np
import numpy.typing as npt

from ._npz import read_npz
from ._typing import StrPath
from ._validate import label_array
from .agglomeration import Agglomeration, check_merge_function
from .io import atomic_file
from .region_graphs import RegionGraph

if TYPE_CHECKING:
    from .region_graphs import _MaybeHistograms

__all__ = ["save_region_graph", "load_region_graph", "save_agglomeration", "load_agglomeration"]

_GRAPH_REQUIRED = ("edges", "counts", "sums", "mins", "maxs")
_GRAPH_HIST = ("hist_offsets", "hist_bins", "hist_counts")
_AGG_REQUIRED = ("fragment_ids", "u", "v", "scores", "levels", "thresholds", "merge_function")


def _atomic_savez(path: StrPath, arrays: dict[str, Any]) -> None:  # Any: np.savez types **arrays as allow_pickle
    with atomic_file(path) as tmp:  # a failed save (disk full) leaves nothing behind
        np.savez(tmp, **arrays)


class _Checker:
    """Checks of the arrays of one file; every failure names the file."""

    def __init__(self, name: str, arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        self.name, self.arrays = name, arrays

    def fail(self, what: str) -> NoReturn:
        raise ValueError(f"{self.name}: {what}")

    def get(self, key: str, kinds: str, ndim: int, length: int | None = None) -> npt.NDArray[Any]:
        arr = self.arrays[key]
        if arr.dtype.kind not in kinds or arr.ndim != ndim:
            self.fail(f"{key!r} must be a {ndim}-D array of kind {kinds!r}; got {arr.dtype} with shape {arr.shape}")
        if length is not None and arr.shape[0] != length:
            self.fail(f"{key!r} must have {length} entries; got {arr.shape[0]}")
        return arr

    def finite(self, key: str, arr: npt.NDArray[Any]) -> None:
        if arr.size and not np.all(np.isfinite(arr)):
            self.fail(f"{key!r} must be finite; found {int(np.sum(~np.isfinite(arr)))} NaN or infinite values")

    def non_negative(self, key: str, arr: npt.NDArray[Any]) -> None:
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            self.fail(f"{key!r} must not be negative; got {arr.min()}")


# ------------------------------------------------------------------------------------------------
# region graphs


def save_region_graph(graph: RegionGraph, path: StrPath) -> None:
    """Write ``graph`` to ``path`` (``.npz``), atomically."""
    if not isinstance(graph, RegionGraph):
        raise TypeError(f"graph must be a RegionGraph; got {type(graph).__name__}")
    arrays: dict[str, Any] = {"edges": graph.edges, "counts": graph.counts, "sums": graph.sums, "mins": graph.mins,
                              "maxs": graph.maxs}
    if graph.has_histograms:
        hist_offsets, hist_bins, hist_counts = graph._histograms()
        arrays.update(hist_offsets=hist_offsets, hist_bins=hist_bins, hist_counts=hist_counts)
    _atomic_savez(path, arrays)


def load_region_graph(path: StrPath) -> RegionGraph:
    """Read a region graph written by :func:`save_region_graph`, checking every array.

    Raises
    ------
    ValueError
        The file is damaged or its arrays are not a region graph (edges not sorted, unique and
        with ``u < v``; a count of 0; statistics outside [0, 1] or not finite; histograms that do
        not add up to the counts).
    """
    name = repr(os.fspath(path))
    arrays = read_npz(path, name=name, required=_GRAPH_REQUIRED, optional=_GRAPH_HIST)
    return _checked_graph(_Checker(name, arrays))


def _checked_graph(c: _Checker) -> RegionGraph:
    edges = c.get("edges", "u", 2)
    if edges.shape[1:] != (2,):
        c.fail(f"'edges' must have shape (E, 2); got {edges.shape}")
    n = edges.shape[0]
    edges = edges.astype(np.uint64)
    if n and np.any(edges[:, 0] >= edges[:, 1]):
        c.fail("'edges' must have edges[:, 0] < edges[:, 1]")
    if n > 1:
        later = (edges[1:, 0] > edges[:-1, 0]) | ((edges[1:, 0] == edges[:-1, 0]) & (edges[1:, 1] > edges[:-1, 1]))
        if not np.all(later):
            c.fail("'edges' must be sorted lexicographically and unique")
    if n and edges[0, 0] == 0:
        c.fail("'edges' must not involve fragment 0 (background)")
    counts = c.get("counts", "u", 1, n).astype(np.uint64)
    if n and counts.min() == 0:
        c.fail("'counts' must be positive (an edge has at least one voxel pair)")
    sums = c.get("sums", "f", 1, n).astype(np.float64)
    mins = c.get("mins", "f", 1, n).astype(np.float32)
    maxs = c.get("maxs", "f", 1, n).astype(np.float32)
    for key, arr in (("sums", sums), ("mins", mins), ("maxs", maxs)):
        c.finite(key, arr)
    if n and (mins.min() < 0 or maxs.max() > 1 or np.any(mins > maxs)):
        c.fail("'mins' and 'maxs' must satisfy 0 <= mins <= maxs <= 1")
    if n and (np.any(sums < mins * counts * (1 - 1e-6) - 1e-6) or np.any(sums > maxs * counts * (1 + 1e-6) + 1e-6)):
        c.fail("'sums' must lie between counts * mins and counts * maxs")
    present = [k for k in _GRAPH_HIST if k in c.arrays]
    if present and len(present) != 3:
        c.fail(f"histograms need all of {list(_GRAPH_HIST)}; got only {present}")
    hist: _MaybeHistograms = (None, None, None)
    if present:
        offsets = c.get("hist_offsets", "iu", 1, n + 1).astype(np.int64)
        bins = c.get("hist_bins", "u", 1)
        h = bins.shape[0]
        hcounts = c.get("hist_counts", "u", 1, h).astype(np.uint64)
        if offsets[0] != 0 or offsets[-1] != h or np.any(np.diff(offsets) < 1):
            c.fail(f"'hist_offsets' must rise from 0 to {h} by at least 1 per edge")
        from . import _segment

        if bins.size and bins.max() >= _segment.HISTOGRAM_BINS:
            c.fail(f"'hist_bins' must lie in 0..{_segment.HISTOGRAM_BINS - 1}")
        bins = bins.astype(np.uint8)
        first = np.zeros(h, dtype=bool)
        first[offsets[:-1]] = True
        if h > 1 and np.any((np.diff(bins.astype(np.int64)) <= 0) & ~first[1:]):
            c.fail("'hist_bins' must increase within each edge")
        if h and (hcounts.min() == 0 or np.any(np.add.reduceat(hcounts, offsets[:-1]) != counts)):
            c.fail("'hist_counts' must be positive and add up to each edge's count")
        hist = (offsets, bins, hcounts)
    return RegionGraph(edges, counts, sums, mins, maxs, *hist)


# ------------------------------------------------------------------------------------------------
# agglomerations


def save_agglomeration(agglomeration: Agglomeration, path: StrPath) -> None:
    """Write the merge history of ``agglomeration`` (not its fragments) to ``path`` (``.npz``),
    atomically. :func:`load_agglomeration` gives it back; pass the fragments to
    :func:`xpress_fast.sweep` or :meth:`~xpress_fast.Agglomeration.segmentation` as needed."""
    if not isinstance(agglomeration, Agglomeration):
        raise TypeError(f"agglomeration must be an Agglomeration; got {type(agglomeration).__name__}")
    agg = agglomeration
    index = np.searchsorted(agg.fragment_ids, agg.merges) if len(agg.merges) else np.zeros((0, 2), np.int64)
    _atomic_savez(path, {"fragment_ids": agg.fragment_ids, "u": index[:, 0].astype(np.int64),
                         "v": index[:, 1].astype(np.int64), "scores": agg.scores, "levels": agg.levels,
                         "thresholds": agg.thresholds, "merge_function": np.array(agg.merge_function)})


def load_agglomeration(path: StrPath, *, fragments: npt.ArrayLike | None = None) -> Agglomeration:
    """Read a merge history written by :func:`save_agglomeration` (or by a block-wise run),
    checking every array; ``fragments`` (optional) becomes the result's ``fragments``.

    Raises
    ------
    ValueError
        The file is damaged or inconsistent: fragment ids not sorted and unique, merge indices
        out of range, NaN or decreasing merge levels, bad thresholds or merge function.
    """
    name = repr(os.fspath(path))
    arrays = read_npz(path, name=name, required=_AGG_REQUIRED)
    return checked_agglomeration(arrays, name, fragments=fragments)


def checked_agglomeration(arrays: Mapping[str, npt.NDArray[Any]], name: str, *, fragments: npt.ArrayLike | None = None
                          ) -> Agglomeration:
    """An :class:`Agglomeration` from the arrays of a saved merge history, every one checked."""
    from ._validate import check_thresholds

    c = _Checker(name, arrays)
    ids = c.get("fragment_ids", "u", 1).astype(np.uint64)
    if ids.size > 1 and np.any(ids[1:] <= ids[:-1]):
        c.fail("'fragment_ids' must be sorted and unique")
    u = c.get("u", "iu", 1)
    m = u.shape[0]
    v = c.get("v", "iu", 1, m)
    for key, arr in (("u", u), ("v", v)):
        c.non_negative(key, arr)
        if m and int(arr.max()) >= ids.size:
            c.fail(f"{key!r} must index 'fragment_ids' (0..{ids.size - 1}); got {int(arr.max())}")
    scores = c.get("scores", "f", 1, m).astype(np.float64)
    levels = c.get("levels", "f", 1, m).astype(np.float64)
    if m and np.any(np.isnan(scores)):
        c.fail("'scores' must not be NaN")
    c.finite("levels", levels)
    if m > 1 and np.any(np.diff(levels) < 0):
        c.fail("'levels' must be non-decreasing")
    mf = arrays["merge_function"]
    if mf.dtype.kind != "U" or mf.ndim != 0:
        c.fail(f"'merge_function' must be a string; got {mf.dtype} with shape {mf.shape}")
    try:
        thresholds = check_thresholds("thresholds", arrays["thresholds"])
        check_merge_function(str(mf))
    except (TypeError, ValueError) as exc:
        c.fail(str(exc))
    # checked as agglomerate_graph checks them: Agglomeration.fragments is a uint64 volume
    frag = None if fragments is None else label_array("fragments", fragments)
    return Agglomeration(frag, ids, str(mf), thresholds, u.astype(np.int64), v.astype(np.int64), scores, levels)
