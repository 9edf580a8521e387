"""Agglomeration of fragments into segments at many thresholds, from one merge run.

Semantics are waterz's: the score of an edge is ``1 - statistic`` of its boundary affinities,
the edge with the lowest score merges while that score is ``< threshold``, statistics of edges
that become one are combined exactly (see ``cpp/include/xpress_fast/agglomeration.hpp``), so
thresholds tuned with the XPRESS baseline (lsd + waterz, 0.05 ... 0.95) carry over.
"""
from __future__ import annotations

import logging
import numbers
import warnings
from typing import Any, Iterable, Mapping, Sequence, overload

import numpy as np
import numpy.typing as npt

from ._validate import as_array, check_choice, check_threshold, check_thresholds, label_array
from .region_graphs import DEFAULT_INSIDE_THRESHOLD, RegionGraph, _region_graph
from .fragments import _watershed, blockwise_watershed, check_affinities

__all__ = ["MERGE_FUNCTIONS", "DEFAULT_MERGE_FUNCTION", "Agglomeration", "agglomerate", "agglomerate_graph",
           "merge_history", "check_merge_function", "needs_histograms"]

logger = logging.getLogger(__name__)

_QUANTILES = tuple(range(10, 95, 5))
#: Names of the merge functions: ``mean``, ``max``, ``min``, ``hist_quant_Q`` (the Q-th
#: percentile from a 256-bin histogram, lsd's names for waterz's
#: ``HistogramQuantileAffinity<..., Q, ..., 256, false>``) and ``hist_quant_Q_initmax`` (waterz's
#: InitWithMax: each initial edge's histogram holds only its largest affinity).
#: The default merge function: the best measured without validation data (benchmarks/bench_quality.py:
#: best XPRESS ERL+Rand, synthetic tubes at 3 held-out seeds, mean 0.931 vs hist_quant_75 0.928 and
#: hist_quant_50 0.907; real-label affinities 0.508 vs 0.504 and 0.492).
DEFAULT_MERGE_FUNCTION = "mean"
MERGE_FUNCTIONS = ("mean", "max", "min") + tuple(
    f"hist_quant_{q}{suffix}" for suffix in ("", "_initmax") for q in _QUANTILES
)

#: Why a query's threshold is bounded (an Agglomeration knows the merges up to its largest threshold).
_LARGEST_MERGED = "the largest threshold this run merged to"


def check_merge_function(name: object) -> str:
    """``name`` if it is one of :data:`MERGE_FUNCTIONS` (TypeError / ValueError otherwise, naming
    the choices): the check every API entry point and the CLI make before any work."""
    if not isinstance(name, str):
        raise TypeError(f"merge_function must be a string, one of {', '.join(MERGE_FUNCTIONS)}; got {name!r}")
    check_choice("merge_function", name, MERGE_FUNCTIONS)
    return name


def needs_histograms(name: object) -> bool:
    """Whether the merge function ``name`` reads the region graph's histograms (``hist_quant_*``)."""
    return check_merge_function(name).startswith("hist_quant")


def _parse_merge_function(name: object) -> tuple[int, int, bool]:
    """(statistic code, quantile, init_with_max) of a merge-function name, the codes the
    compiled module defines (``_segment.STATISTIC_*``)."""
    from . import _segment

    name = check_merge_function(name)
    if not needs_histograms(name):  # mean, max, min; the quantile is then unused
        code: int = getattr(_segment, f"STATISTIC_{name.upper()}")
        return code, 50, False
    parts = name.split("_")
    return _segment.STATISTIC_QUANTILE, int(parts[2]), name.endswith("_initmax")


class Agglomeration:
    """The result of one merge run: the merge history and, per threshold, a fragment -> segment map.

    Segment ids are fragment ids: each segment carries the smallest fragment id it contains.
    Fragments without edges (and 0) map to themselves. Every method returns a new array.

    Attributes
    ----------
    fragments : (Z, Y, X) uint64 or None
        The fragments (None when built from a region graph alone).
    fragment_ids : (N,) uint64
        Sorted ids of the fragments in the region graph.
    merge_function : str
    thresholds : (T,) float64
        The thresholds asked for; any threshold up to ``thresholds[-1]`` can be queried.
    merges : (M, 2) uint64
        Fragment ids representing the two segments joined by each merge, in merge order.
    scores : (M,) float64
        The score at which each merge happened (not monotone: waterz's statistics can go down).
    levels : (M,) float64
        Non-decreasing; merge ``i`` is part of the segmentation at ``t`` iff ``levels[i] < t``.
    """

    def __init__(self, fragments: npt.NDArray[np.uint64] | None, fragment_ids: npt.NDArray[np.uint64],
                 merge_function: str, thresholds: npt.NDArray[np.float64], nodes_u: npt.NDArray[np.int64],
                 nodes_v: npt.NDArray[np.int64], scores: npt.NDArray[np.float64], levels: npt.NDArray[np.float64]
                 ) -> None:
        self.fragments = fragments
        self.fragment_ids = fragment_ids
        self.merge_function = merge_function
        self.thresholds = thresholds
        self._u = nodes_u
        self._v = nodes_v
        self.scores = scores
        self.levels = levels
        self.merges = np.stack([fragment_ids[nodes_u], fragment_ids[nodes_v]], axis=1) if len(nodes_u) else (
            np.zeros((0, 2), dtype=np.uint64))

    def __repr__(self) -> str:
        return (f"Agglomeration({self.merge_function!r}, {len(self.fragment_ids)} fragments, "
                f"{len(self.scores)} merges, thresholds {self.thresholds[0]:g}..{self.thresholds[-1]:g})")

    def _threshold(self, threshold: float) -> float:
        return check_threshold("threshold", threshold, low=None, high=self.thresholds[-1],
                               high_reason=_LARGEST_MERGED)

    def n_merges(self, threshold: float) -> int:
        """Number of merges in the segmentation at ``threshold``."""
        return int(np.searchsorted(self.levels, self._threshold(threshold), side="left"))

    def lut(self, threshold: float) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """``(fragment_ids, segment_ids)``: two (N,) uint64 arrays, the segment of each graph fragment."""
        from . import _segment

        k = self.n_merges(threshold)
        rep = _segment.merge_components(len(self.fragment_ids), self._u, self._v, k)
        return self.fragment_ids.copy(), self.fragment_ids[rep]

    def map(self, fragment_ids: npt.ArrayLike, threshold: float) -> npt.NDArray[np.uint64]:
        """Segment ids (uint64, same shape) of an array of fragment ids at ``threshold``."""
        from .relabel import map_labels

        ids = _fragment_id_array(fragment_ids)
        return map_labels(ids, *self.lut(threshold))

    def map_many(self, fragment_ids: npt.ArrayLike, thresholds: Iterable[float]) -> npt.NDArray[np.uint64]:
        """Segment ids of the same fragment ids at several thresholds, from one pass over the history.

        Parameters
        ----------
        fragment_ids : integer array, any shape
            Fragment ids (non-negative); ids outside the region graph (and 0) map to themselves.
        thresholds : sequence of float
            Any order; each at most ``thresholds[-1]`` of this run.

        Returns
        -------
        (T, *fragment_ids.shape) uint64
            Row ``i`` equals ``map(fragment_ids, thresholds[i])``. Meant for a few ids at many
            thresholds (the fragments under skeleton nodes in a sweep): one union-find walks the
            merges once, where ``map`` builds a lookup table over every fragment per threshold.
        """
        from . import _segment

        ids = _fragment_id_array(fragment_ids)
        values = check_thresholds("thresholds", thresholds, low=None, high=self.thresholds[-1], increasing=False,
                                  scalar=False, nonempty=False, high_reason=_LARGEST_MERGED)
        # merges with level < t make the segmentation at t (as n_merges counts them)
        prefix = np.searchsorted(self.levels, values, side="left").astype(np.int64)
        flat = np.ascontiguousarray(ids, dtype=np.uint64).ravel()
        keys = np.ascontiguousarray(self.fragment_ids, dtype=np.uint64)
        pos = np.searchsorted(keys, flat)
        inside = pos < len(keys)
        inside[inside] = keys[pos[inside]] == flat[inside]
        item_fragment = np.where(inside, pos, _segment.NO_FRAGMENT).astype(np.int64)
        # the kernel reads prefixes of the history in order; rows go back to the caller's order
        order = np.argsort(prefix, kind="stable")
        out = np.empty((len(values), flat.size), dtype=np.uint64)
        out[order] = _segment.merge_history_labels(
            keys, np.ascontiguousarray(self._u, dtype=np.int64),
            np.ascontiguousarray(self._v, dtype=np.int64), prefix[order], item_fragment, flat)
        return out.reshape((len(values),) + ids.shape)

    def segmentation(self, threshold: float) -> npt.NDArray[np.uint64]:
        """The (Z, Y, X) uint64 segmentation at ``threshold`` (a new array)."""
        if self.fragments is None:
            raise ValueError("segmentation needs fragments; pass fragments= when agglomerating a graph")
        return self.map(self.fragments, threshold)


def _fragment_id_array(fragment_ids: npt.ArrayLike) -> npt.NDArray[Any]:
    """``fragment_ids`` as a non-negative integer array (not copied)."""
    ids = as_array("fragment_ids", fragment_ids)
    if ids.dtype == np.bool_ or ids.dtype.kind not in "iu":
        raise TypeError(f"fragment_ids must be an integer array; got dtype {ids.dtype}")
    if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
        raise ValueError(f"fragment_ids must not be negative; got minimum {ids.min()}")
    return ids


def agglomerate_graph(graph: RegionGraph, thresholds: npt.ArrayLike, *, merge_function: str = DEFAULT_MERGE_FUNCTION,
                      fragments: npt.ArrayLike | None = None) -> Agglomeration:
    """Agglomerate a region graph (e.g. ``RegionGraph.concatenate`` of per-block graphs).

    Parameters
    ----------
    graph : RegionGraph
    thresholds : sequence of float in [0, 1], strictly increasing
        The run merges up to ``thresholds[-1]``; every threshold up to it can be queried.
    merge_function : str
        One of :data:`MERGE_FUNCTIONS`.
    fragments : (Z, Y, X) integer array, optional
        Kept for :meth:`Agglomeration.segmentation`.
    """
    from . import _segment

    if not isinstance(graph, RegionGraph):
        raise TypeError(f"graph must be a RegionGraph; got {type(graph).__name__}")
    statistic, quantile, init_max = _parse_merge_function(merge_function)
    ts = check_thresholds("thresholds", thresholds)
    if needs_histograms(merge_function) and not graph.has_histograms:
        raise ValueError(f"merge_function {merge_function!r} needs a graph built with histograms=True")
    frag = None if fragments is None else label_array("fragments", fragments)
    ids, inverse = np.unique(graph.edges, return_inverse=True)
    inverse = inverse.reshape(-1, 2).astype(np.int64)
    empty_i = np.zeros(1, dtype=np.int64)
    if needs_histograms(merge_function):
        hist_offsets, hist_bins, hist_counts = graph._histograms()
        hist = (np.ascontiguousarray(hist_offsets, dtype=np.int64), np.ascontiguousarray(hist_bins),
                np.ascontiguousarray(hist_counts, dtype=np.uint64))
    else:
        hist = (empty_i, np.zeros(0, np.uint8), np.zeros(0, np.uint64))
    u, v, scores, levels = _segment.agglomerate(
        len(ids), np.ascontiguousarray(inverse[:, 0]), np.ascontiguousarray(inverse[:, 1]),
        np.ascontiguousarray(graph.counts, dtype=np.uint64), np.ascontiguousarray(graph.sums, dtype=np.float64),
        np.ascontiguousarray(graph.mins, dtype=np.float32), np.ascontiguousarray(graph.maxs, dtype=np.float32),
        *hist, statistic, quantile, init_max, float(ts[-1]),
    )
    logger.debug("%s: %d merges up to threshold %g", merge_function, len(u), ts[-1])
    return Agglomeration(frag, ids.astype(np.uint64), merge_function, ts, u, v, scores, levels)


def _make_fragments(affs: npt.NDArray[Any], watershed_options: Mapping[str, Any] | None) -> npt.NDArray[np.uint64]:
    """The whole-volume watershed; the block-wise one, deprecated, when the options name a block shape."""
    opts = dict(watershed_options or {})
    if "block_shape" in opts:
        # An option that silently switches the algorithm surprised users; the explicit call is
        # fragments=blockwise_watershed(...). Kept working, with a warning, until 0.3.
        warnings.warn("block_shape in watershed_options is deprecated and stops working in 0.3: pass "
                      "fragments=xpress_fast.blockwise_watershed(affs, block_shape=..., context=..., ...) "
                      "instead", FutureWarning, stacklevel=3)
        return blockwise_watershed(affs, **opts)
    if "context" in opts:  # a margin without blocks would be silently meaningless
        raise ValueError("watershed_options sets context without block_shape (context is the margin of blocks)")
    return _watershed(affs, **opts)


def merge_history(affs: npt.ArrayLike | None, thresholds: npt.ArrayLike, *, fragments: npt.ArrayLike | None = None,
                  merge_function: str = DEFAULT_MERGE_FUNCTION, graph: RegionGraph | None = None,
                  watershed_options: Mapping[str, Any] | None = None, offsets: npt.ArrayLike | None = None,
                  inside_threshold: float | None = DEFAULT_INSIDE_THRESHOLD) -> Agglomeration:
    """One merge run over the region graph of ``affs``: the merge history, from which the
    segmentation, lookup table or node labels at any threshold up to the largest are read.

    Parameters
    ----------
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8, or None
        Affinities (channels 0, 1, 2: ``v`` to ``v - e_z``, ``- e_y``, ``- e_x``). May be None
        when ``graph`` is given.
    thresholds : float or sequence of float in [0, 1]
        Strictly increasing; the history is recorded up to the largest.
    fragments : (Z, Y, X) integer array, optional
        Default: :func:`xpress_fast.watershed` of ``affs`` (with ``watershed_options``). For the
        block-wise pipeline's fragments pass ``fragments=xpress_fast.blockwise_watershed(affs,
        block_shape=..., context=...)``.
    merge_function : str
        One of :data:`MERGE_FUNCTIONS`; default :data:`DEFAULT_MERGE_FUNCTION` (``mean``, the best
        measured without validation data; the XPRESS baseline uses ``hist_quant_50``). With
        validation skeletons, :func:`xpress_fast.sweep_methods` picks the best for the data.
    graph : RegionGraph, optional
        A precomputed region graph of ``fragments`` (e.g. merged from blocks).
    watershed_options : mapping, optional
        Keyword arguments for :func:`xpress_fast.watershed` when fragments are made here.
        (Deprecated: with ``block_shape`` and ``context`` they go to
        :func:`xpress_fast.blockwise_watershed`, with a FutureWarning, until 0.3.)
    offsets : C integer triples, optional
        The offset of every channel of ``affs`` (first the three nearest neighbours): the
        long-range channels then add their voxel pairs' affinities to the scores of touching
        fragments (see :func:`xpress_fast.region_graph`). Default: channels 0-2 only.
    inside_threshold : float or None
        The region graph counts only voxel pairs whose voxels are both inside (mean of channels
        0-2 ``> inside_threshold``); default 0.5, the seeds' inside map. ``None`` counts every
        voxel pair (as earlier releases and waterz do). Every voxel keeps
        its fragment either way. Measured on synthetic XNH tubes (benchmarks/bench_quality.py):
        with ``hist_quant_50`` the best XPRESS ERL+Rand goes from about 0.45 to about 0.9, since
        two fragments of one thin axon otherwise touch mostly through its myelin sheath.

    Returns
    -------
    Agglomeration
    """
    ts = check_thresholds("thresholds", thresholds)
    _parse_merge_function(merge_function)
    if graph is None:
        if affs is None:
            raise ValueError("affs must be given unless graph is")
        arr = check_affinities(affs, offsets_given=offsets is not None)
        if fragments is None:
            fragments = _make_fragments(arr, watershed_options)
        else:
            fragments = label_array("fragments", fragments)
            if fragments.shape != arr.shape[1:]:
                raise ValueError(
                    f"fragments must have the spatial shape of affs, {arr.shape[1:]}; got {fragments.shape}"
                )
        graph = _region_graph(fragments, arr, histograms=needs_histograms(merge_function), offsets=offsets,
                              inside_threshold=inside_threshold)
    return agglomerate_graph(graph, ts, merge_function=merge_function, fragments=fragments)


def _is_single(thresholds: object) -> bool:
    """A number, or a 0-d array, is one threshold (a 0-d array used to count as a sequence)."""
    if isinstance(thresholds, (bool, np.bool_)):
        return False
    return isinstance(thresholds, numbers.Real) or (isinstance(thresholds, np.ndarray) and thresholds.ndim == 0)


@overload
def agglomerate(affs: npt.ArrayLike | None, thresholds: float, *, fragments: npt.ArrayLike | None = None,
                merge_function: str = DEFAULT_MERGE_FUNCTION, graph: RegionGraph | None = None,
                watershed_options: Mapping[str, Any] | None = None, offsets: npt.ArrayLike | None = None,
                inside_threshold: float | None = DEFAULT_INSIDE_THRESHOLD) -> npt.NDArray[np.uint64]: ...
@overload
def agglomerate(affs: npt.ArrayLike | None, thresholds: Sequence[float], *, fragments: npt.ArrayLike | None = None,
                merge_function: str = DEFAULT_MERGE_FUNCTION, graph: RegionGraph | None = None,
                watershed_options: Mapping[str, Any] | None = None, offsets: npt.ArrayLike | None = None,
                inside_threshold: float | None = DEFAULT_INSIDE_THRESHOLD) -> Agglomeration: ...
@overload
def agglomerate(affs: npt.ArrayLike | None, thresholds: npt.ArrayLike, *, fragments: npt.ArrayLike | None = None,
                merge_function: str = DEFAULT_MERGE_FUNCTION, graph: RegionGraph | None = None,
                watershed_options: Mapping[str, Any] | None = None, offsets: npt.ArrayLike | None = None,
                inside_threshold: float | None = DEFAULT_INSIDE_THRESHOLD
                ) -> npt.NDArray[np.uint64] | Agglomeration: ...
def agglomerate(affs: npt.ArrayLike | None, thresholds: npt.ArrayLike, *, fragments: npt.ArrayLike | None = None,
                merge_function: str = DEFAULT_MERGE_FUNCTION, graph: RegionGraph | None = None,
                watershed_options: Mapping[str, Any] | None = None, offsets: npt.ArrayLike | None = None,
                inside_threshold: float | None = DEFAULT_INSIDE_THRESHOLD) -> npt.NDArray[np.uint64] | Agglomeration:
    """The segmentation of ``affs`` at ``threshold``: (Z, Y, X) uint64.

    Takes the arguments of :func:`merge_history` (which returns the merge history for many
    thresholds at once: ``merge_history(...).segmentation(t)`` for each ``t``).

    .. deprecated:: 0.2
        A *sequence* of thresholds still returns an :class:`Agglomeration` (with a
        FutureWarning); from 0.3 it will return a list of segmentations, one per threshold. Call
        :func:`merge_history` for the history.
    """
    # the keywords of merge_history
    kwargs: dict[str, Any] = dict(fragments=fragments, merge_function=merge_function, graph=graph,
                                  watershed_options=watershed_options, offsets=offsets,
                                  inside_threshold=inside_threshold)
    if not _is_single(thresholds):
        warnings.warn("agglomerate(affs, [t1, t2, ...]) returns an Agglomeration for now; from 0.3 it returns a "
                      "list of segmentations, one per threshold. Call xpress_fast.merge_history(...) for the "
                      "merge history", FutureWarning, stacklevel=2)
        return merge_history(affs, thresholds, **kwargs)
    if graph is not None and fragments is None:
        raise ValueError("a single threshold returns a segmentation, which needs fragments")
    result = merge_history(affs, thresholds, **kwargs)
    return result.segmentation(result.thresholds[0])
