"""Region adjacency graph of a fragment volume, with boundary-affinity statistics per edge."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, Union

import numpy as np
import numpy.typing as npt

from ._validate import check_threads, check_threshold, label_array
from .fragments import _kernel, check_affinities, check_affinity_values

if TYPE_CHECKING:
    from ._segment import RegionGraphArrays

__all__ = ["RegionGraph", "region_graph", "long_range_graph", "axis_offsets", "check_offsets",
           "check_inside_threshold"]

logger = logging.getLogger(__name__)

#: A graph's sparse histograms (offsets, bins, counts), or none.
_Histograms = tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint64]]
_MaybeHistograms = Union[_Histograms, tuple[None, None, None]]


@dataclass(frozen=True)
class RegionGraph:
    """Edges between touching non-zero fragments and the statistics of their boundary affinities.

    A voxel edge ``{v, v - e_c}`` (affinity ``affs[c][v]``) between fragments ``u != v`` (both
    non-zero) counts toward the graph edge ``(min, max)``. Affinities are values in [0, 1]
    (uint8 ``k`` is ``k / 255``).

    Attributes
    ----------
    edges : (E, 2) uint64
        Fragment ids, ``edges[:, 0] < edges[:, 1]``, sorted lexicographically, unique.
    counts : (E,) uint64
        Number of voxel edges on the boundary.
    sums : (E,) float64
        Sum of their affinities (``means = sums / counts``).
    mins, maxs : (E,) float32
        Smallest and largest boundary affinity.
    hist_offsets : (E + 1,) int64, or None
        Sparse 256-bin histograms in CSR form: edge ``e`` owns entries
        ``hist_offsets[e]:hist_offsets[e + 1]`` of ``hist_bins`` / ``hist_counts``.
        The bin of affinity ``a`` is ``min(floor(a * 256), 255)`` (waterz's; uint8 ``k`` -> bin ``k``).
        Only non-empty bins are stored, increasing within an edge: 9 bytes per distinct bin.
    hist_bins : (H,) uint8, or None
    hist_counts : (H,) uint64, or None
    """

    edges: npt.NDArray[np.uint64]
    counts: npt.NDArray[np.uint64]
    sums: npt.NDArray[np.float64]
    mins: npt.NDArray[np.float32]
    maxs: npt.NDArray[np.float32]
    hist_offsets: npt.NDArray[np.int64] | None = None
    hist_bins: npt.NDArray[np.uint8] | None = None
    hist_counts: npt.NDArray[np.uint64] | None = None

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def has_histograms(self) -> bool:
        return self.hist_offsets is not None

    def _histograms(self) -> _Histograms:
        """``(hist_offsets, hist_bins, hist_counts)`` of a graph that :attr:`has_histograms`."""
        if self.hist_offsets is None or self.hist_bins is None or self.hist_counts is None:
            raise ValueError("the graph has no histograms")
        return self.hist_offsets, self.hist_bins, self.hist_counts

    @property
    def means(self) -> npt.NDArray[np.float64]:
        """(E,) float64 mean boundary affinity."""
        means: npt.NDArray[np.float64] = self.sums / np.maximum(self.counts, 1)
        return means

    @property
    def fragment_ids(self) -> npt.NDArray[np.uint64]:
        """(N,) uint64 sorted ids of the fragments that have at least one edge."""
        return np.unique(self.edges)

    def quantile(self, q: int) -> npt.NDArray[np.float64]:
        """(E,) float64 ``q``-th percentile of each edge's boundary affinities from its histogram.

        waterz's rule: the first bin whose cumulative count reaches ``q * total // 100 + 1``, as
        the bin centre ``(bin + 0.5) / 256``.
        """
        if not self.has_histograms:
            raise ValueError("quantile needs histograms; build the graph with histograms=True")
        if not isinstance(q, (int, np.integer)) or not 0 <= q <= 100:
            raise ValueError(f"q must be an integer percentage in [0, 100]; got {q!r}")
        if self.n_edges == 0:
            return np.zeros(0, dtype=np.float64)
        from . import _segment

        hist_offsets, hist_bins, hist_counts = self._histograms()
        counts = hist_counts.astype(np.int64)
        edge_of = np.repeat(np.arange(self.n_edges), np.diff(hist_offsets))
        cum = np.cumsum(counts)
        before = np.concatenate([[0], cum])[hist_offsets[:-1]]  # count before each edge
        within = cum - before[edge_of]
        total = np.add.reduceat(counts, hist_offsets[:-1])
        pivot = (q * total) // 100 + 1
        idx = np.flatnonzero(within >= pivot[edge_of])
        # cumulative counts grow within an edge: the first reaching entry of each edge
        _, first = np.unique(edge_of[idx], return_index=True)
        return (hist_bins[idx[first]].astype(np.float64) + 0.5) / _segment.HISTOGRAM_BINS

    def add_evidence(self, lifted: RegionGraph) -> RegionGraph:
        """This graph with the statistics of ``lifted``'s edges that are also edges here added
        (counts and sums add, min/max and histograms combine); ``lifted``'s other edges (pairs
        of fragments that do not touch) are dropped. See :func:`long_range_graph`."""
        if not isinstance(lifted, RegionGraph):
            raise TypeError(f"lifted must be a RegionGraph; got {type(lifted).__name__}")
        if self.has_histograms != lifted.has_histograms:
            raise ValueError("both graphs must have histograms, or neither")
        return _add_evidence(self, lifted)

    @classmethod
    def concatenate(cls, graphs: Sequence[RegionGraph]) -> RegionGraph:
        """One graph from several (e.g. per-block graphs): statistics of shared edges combine.

        Counts and sums add, min/max combine, histograms add bin by bin. Histograms are kept
        only if every graph has them. The result equals the graph of the whole volume when the
        blocks' voxel edges partition the volume's (see ``region_graph(..., context=...)``).
        """
        graphs = list(graphs)
        if not graphs or not all(isinstance(g, RegionGraph) for g in graphs):
            raise TypeError("graphs must be a non-empty sequence of RegionGraph")
        edges = np.concatenate([g.edges for g in graphs]).reshape(-1, 2)
        order = np.lexsort((edges[:, 1], edges[:, 0]))
        edges = edges[order]
        new = np.ones(len(edges), dtype=bool)
        if len(edges):
            new[1:] = np.any(edges[1:] != edges[:-1], axis=1)
        starts = np.flatnonzero(new)
        group = np.cumsum(new) - 1

        def reduce(ufunc: np.ufunc, name: str, dtype: type[np.generic]) -> npt.NDArray[Any]:
            values = np.concatenate([getattr(g, name) for g in graphs]).astype(dtype)[order]
            reduced: npt.NDArray[Any] = ufunc.reduceat(values, starts) if len(values) else values
            return reduced

        counts = reduce(np.add, "counts", np.uint64)
        sums = reduce(np.add, "sums", np.float64)
        mins = reduce(np.minimum, "mins", np.float32)
        maxs = reduce(np.maximum, "maxs", np.float32)
        hist: _MaybeHistograms = (None, None, None)
        if all(g.has_histograms for g in graphs):
            from . import _segment

            bins_per_edge = np.int64(_segment.HISTOGRAM_BINS)
            # each histogram entry gets its (global) edge and bin, then equal pairs are summed
            edge_of_old = []
            base = 0
            for g in graphs:
                edge_of_old.append(np.repeat(np.arange(base, base + g.n_edges), np.diff(g._histograms()[0])))
                base += g.n_edges
            old_edge = np.concatenate(edge_of_old)
            inverse = np.empty(len(order), dtype=np.int64)
            inverse[order] = group
            entry_group = inverse[old_edge]
            bins = np.concatenate([g._histograms()[1] for g in graphs])
            hcounts = np.concatenate([g._histograms()[2] for g in graphs]).astype(np.uint64)
            key = entry_group * bins_per_edge + bins.astype(np.int64)
            korder = np.argsort(key, kind="stable")
            key = key[korder]
            first = np.ones(len(key), dtype=bool)
            first[1:] = key[1:] != key[:-1]
            kstarts = np.flatnonzero(first)
            hcounts = np.add.reduceat(hcounts[korder], kstarts) if len(key) else hcounts
            ukey = key[kstarts]
            offsets = np.searchsorted(ukey // bins_per_edge, np.arange(len(starts) + 1)).astype(np.int64)
            hist = (offsets, (ukey % bins_per_edge).astype(np.uint8), hcounts)
        return cls(edges[starts], counts, sums, mins, maxs, *hist)


def _context(value: npt.ArrayLike) -> tuple[int, ...]:
    try:
        ctx = tuple(int(c) for c in np.broadcast_to(np.asarray(value), (3,)))
    except (TypeError, ValueError):
        raise ValueError(f"context must be a non-negative int or three of them (z, y, x); got {value!r}") from None
    if any(c < 0 for c in ctx):
        raise ValueError(f"context must be non-negative; got {value!r}")
    return ctx


#: The nearest-neighbour offsets that channels 0, 1, 2 must have.
NEAREST_OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))
#: Default ``inside_threshold`` of :func:`xpress_fast.agglomerate` (the inside map of the seeds).
DEFAULT_INSIDE_THRESHOLD = 0.5


def check_offsets(offsets: npt.ArrayLike, n_channels: int, name: str = "offsets", *, nearest_first: bool = True
                  ) -> npt.NDArray[np.int64]:
    """(C, 3) int64 offsets, one per affinity channel, none zero, each component below 2**31 in
    magnitude; with ``nearest_first`` (the merge tree's channel layout) the first three are the
    nearest neighbours."""
    try:
        arr = np.asarray(offsets, dtype=np.float64)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of (z, y, x) integer triples; got {offsets!r}") from None
    except ValueError:  # ragged: not all triples
        raise ValueError(f"{name} must be a sequence of (z, y, x) integer triples; got {offsets!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must be a sequence of (z, y, x) integer triples; got shape {arr.shape}")
    if arr.shape[0] != n_channels:
        raise ValueError(f"{name} must give one offset per affinity channel: affs has {n_channels} channels, "
                         f"{name} has {arr.shape[0]} (if affs is channel-last (Z, Y, X, C), transpose it to "
                         f"(C, Z, Y, X))")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be integers; got {offsets!r}")
    if np.any(np.abs(arr) >= 2 ** 31):
        raise ValueError(f"{name} must be smaller than 2**31 in magnitude; got {offsets!r}")
    if np.any(np.all(arr == 0, axis=1)):
        raise ValueError(f"{name} must not contain a zero offset (0, 0, 0); got {arr.astype(int).tolist()}")
    if nearest_first and (arr.shape[0] < 3 or arr[:3].astype(int).tolist() != [list(o) for o in NEAREST_OFFSETS]):
        raise ValueError(f"{name} must start with the nearest neighbours {list(NEAREST_OFFSETS)} (what channels "
                         f"0, 1, 2 hold); got {arr[:3].astype(int).tolist()}")
    return arr.astype(np.int64)


def axis_offsets(long_range: Sequence[int] = ()) -> list[tuple[int, int, int]]:
    """The U-Net's channel layout: nearest neighbours ``-e_z, -e_y, -e_x``, then ``-k e_axis``
    for every k in ``long_range`` (``axis_offsets((3, 9))`` is the tiny preset's 9 channels)."""
    offs: list[tuple[int, int, int]] = list(NEAREST_OFFSETS)
    for k in long_range:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"long_range must be positive integers; got {list(long_range)!r}")
        offs += [(-int(k), 0, 0), (0, -int(k), 0), (0, 0, -int(k))]
    return offs


def check_inside_threshold(value: object) -> float | None:
    """``inside_threshold`` as a plain float, or None: a number in [0, 1] (the shared threshold
    validator, :func:`xpress_fast._validate.check_threshold`)."""
    return check_threshold("inside_threshold", value, optional=True)


def region_graph(fragments: npt.ArrayLike, affs: npt.ArrayLike, *, context: npt.ArrayLike = 0, histograms: bool = True,
                 threads: int | None = None, offsets: npt.ArrayLike | None = None,
                 inside_threshold: float | None = None) -> RegionGraph:
    """The region adjacency graph of ``fragments`` with boundary-affinity statistics.

    Parameters
    ----------
    fragments : (Z, Y, X) integer labels
        0 is background and has no edges.
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8
        Channels 0, 1, 2 link voxel ``v`` to ``v - e_z``, ``v - e_y``, ``v - e_x``.
    context : int or (int, int, int)
        Voxels in the first ``context`` planes along each axis own no voxel edges. For
        block-wise processing pass each block with a one-plane overlap at its lower faces
        (except at the volume's lower faces) and ``context=1`` there (0 at the volume's faces):
        every voxel edge of the volume is then counted exactly once and
        ``RegionGraph.concatenate`` of the block graphs equals the whole volume's graph.
    histograms : bool
        Build the sparse histograms (needed by the ``hist_quant_*`` merge functions).
    threads : int, optional
        Worker threads (default: the CPU count, at most 8).
    offsets : C integer triples, optional
        The offset of every channel of ``affs`` (the first three must be the nearest neighbours).
        Given, the further (long-range) channels add evidence: a voxel pair ``{v, v + offsets[c]}``
        whose fragments touch adds its affinity to their edge's statistics, so an edge's score
        is read from many more voxel pairs. Pairs of fragments that do not touch are not edges.
        Default: only channels 0, 1, 2.
    inside_threshold : float, optional
        Count only voxel pairs whose two voxels are both inside (mean of channels 0-2 ``>``
        this, the inside map of the seeds): the boundary voxels between two fragments (myelin,
        membranes) then do not dilute their score, while every voxel keeps its fragment. Default:
        every voxel.

    Returns
    -------
    RegionGraph
    """
    return _region_graph(fragments, check_affinities(affs, offsets_given=offsets is not None), context=context, histograms=histograms, threads=threads,
                         offsets=offsets, inside_threshold=inside_threshold)


def _region_graph(fragments: npt.ArrayLike, affs: npt.NDArray[Any], *, context: npt.ArrayLike = 0,
                  histograms: bool = True, threads: int | None = None, offsets: npt.ArrayLike | None = None,
                  inside_threshold: float | None = None) -> RegionGraph:
    """:func:`region_graph` with affinities that :func:`check_affinities` passed."""
    frag, offs, inside_threshold, threads, ctx = _graph_inputs(fragments, affs, context, threads, offsets,
                                                               inside_threshold)
    no_further = np.zeros((0, 4), dtype=np.int64)
    graph = _graph_of(_kernel("region_graph", affs)(frag, affs, *ctx, bool(histograms), threads, True, no_further),
                      histograms)
    if offs is not None and len(offs) > 3:
        graph = _add_evidence(graph, _long_range(frag, affs, offs, ctx, histograms, threads))
    logger.debug("region graph: %d edges", graph.n_edges)
    return graph


def long_range_graph(fragments: npt.ArrayLike, affs: npt.ArrayLike, offsets: npt.ArrayLike, *,
                     context: npt.ArrayLike = 0, histograms: bool = True, threads: int | None = None,
                     inside_threshold: float | None = None) -> RegionGraph:
    """The graph of the long-range channels alone: every pair ``{v, v + offsets[c]}``, c >= 3,
    between different non-zero fragments, touching or not.

    ``region_graph(f, affs, offsets=o, inside_threshold=t)`` equals
    ``region_graph(f, affs, inside_threshold=t).add_evidence(long_range_graph(f, affs, o,
    inside_threshold=t))``. Block-wise: the pair belongs to ``v``, so with non-positive offsets,
    blocks read with ``max(-offset)`` planes of overlap at their lower faces and that
    ``context`` count every pair once, and ``RegionGraph.concatenate`` of the blocks' graphs
    equals the whole volume's (restrict to touching pairs only after concatenating).
    """
    arr = check_affinities(affs, offsets_given=offsets is not None)
    frag, offs, inside_threshold, n_threads, ctx = _graph_inputs(fragments, arr, context, threads, offsets,
                                                                 inside_threshold)
    if offs is None:
        raise ValueError("offsets are required (one per channel of affs)")
    return _long_range(frag, arr, offs, ctx, histograms, n_threads)


def _graph_inputs(fragments: npt.ArrayLike, affs: npt.NDArray[Any], context: npt.ArrayLike, threads: int | None,
                  offsets: npt.ArrayLike | None, inside_threshold: float | None
                  ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64] | None, float | None, int, tuple[int, ...]]:
    frag = label_array("fragments", fragments)
    if frag.shape != affs.shape[1:]:
        raise ValueError(f"fragments must have the spatial shape of affs, {affs.shape[1:]}; got {frag.shape}")
    ctx = _context(context)
    n_threads = check_threads(threads)
    offs = None if offsets is None else check_offsets(offsets, affs.shape[0])
    if offs is not None and affs.shape[0] > 3:
        # check_affinities read channels 0-2; the long-range ones now feed the scores too
        check_affinity_values("affs", affs[3:], " in its long-range channels")
    inside_threshold = check_inside_threshold(inside_threshold)
    if inside_threshold is not None:
        # the boundary voxels as label 0 in a copy: the caller's fragments keep every voxel
        from . import _segment

        cleared = _segment.zeros_uint64(frag.shape, int(n_threads))  # prefaulted by the threads
        _kernel("clear_boundary", affs)(affs, frag, inside_threshold, int(n_threads), cleared)
        frag = cleared
    return frag, offs, inside_threshold, int(n_threads), ctx


def _long_range(frag: npt.NDArray[np.uint64], affs: npt.NDArray[Any], offs: npt.NDArray[np.int64],
                ctx: tuple[int, ...], histograms: bool, threads: int) -> RegionGraph:
    further = np.concatenate([np.arange(3, len(offs), dtype=np.int64)[:, None], offs[3:]], axis=1)
    return _graph_of(_kernel("region_graph", affs)(frag, affs, *ctx, bool(histograms), threads, False,
                                                   np.ascontiguousarray(further, dtype=np.int64)), histograms)


def _graph_of(out: RegionGraphArrays, histograms: bool) -> RegionGraph:
    edges = np.stack([out["u"], out["v"]], axis=1)
    hist: _MaybeHistograms = (out["hist_offsets"], out["hist_bins"], out["hist_counts"]) if histograms \
        else (None, None, None)
    return RegionGraph(edges, out["count"], out["sum"], out["min"], out["max"], *hist)


def _edge_rows(graph: RegionGraph, keep: npt.NDArray[np.bool_]) -> RegionGraph:
    """The graph restricted to the edges where ``keep`` is True."""
    hist: _MaybeHistograms = (None, None, None)
    if graph.has_histograms:
        hist_offsets, hist_bins, hist_counts = graph._histograms()
        lengths = np.diff(hist_offsets)
        entry_keep = np.repeat(keep, lengths)
        offsets = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
        hist = (offsets, hist_bins[entry_keep], hist_counts[entry_keep])
    return RegionGraph(graph.edges[keep], graph.counts[keep], graph.sums[keep], graph.mins[keep], graph.maxs[keep],
                       *hist)


def _add_evidence(graph: RegionGraph, lifted: RegionGraph) -> RegionGraph:
    """``graph`` with the statistics of ``lifted``'s edges that are also edges of ``graph`` added."""
    if graph.n_edges == 0 or lifted.n_edges == 0:
        return graph
    # dense ranks of the ids in both graphs, so that a pair of them is one int64 key
    ids, rank = np.unique(np.concatenate([graph.edges.ravel(), lifted.edges.ravel()]), return_inverse=True)
    rank = rank.astype(np.int64).reshape(-1, 2)
    n = np.int64(len(ids))
    keys = rank[:graph.n_edges, 0] * n + rank[:graph.n_edges, 1]
    lifted_keys = rank[graph.n_edges:, 0] * n + rank[graph.n_edges:, 1]
    keep = np.isin(lifted_keys, keys)
    return RegionGraph.concatenate([graph, _edge_rows(lifted, keep)])
