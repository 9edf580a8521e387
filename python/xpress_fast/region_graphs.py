"""Region adjacency graph of a fragment volume, with boundary-affinity statistics per edge."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._validate import label_array
from .fragments import _kernel, check_affinities

__all__ = ["RegionGraph", "region_graph"]

logger = logging.getLogger(__name__)


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

    edges: np.ndarray
    counts: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    hist_offsets: np.ndarray | None = None
    hist_bins: np.ndarray | None = None
    hist_counts: np.ndarray | None = None

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    @property
    def has_histograms(self) -> bool:
        return self.hist_offsets is not None

    @property
    def means(self) -> np.ndarray:
        """(E,) float64 mean boundary affinity."""
        return self.sums / np.maximum(self.counts, 1)

    @property
    def fragment_ids(self) -> np.ndarray:
        """(N,) uint64 sorted ids of the fragments that have at least one edge."""
        return np.unique(self.edges)

    def quantile(self, q: int) -> np.ndarray:
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
        counts = self.hist_counts.astype(np.int64)
        edge_of = np.repeat(np.arange(self.n_edges), np.diff(self.hist_offsets))
        cum = np.cumsum(counts)
        before = np.concatenate([[0], cum])[self.hist_offsets[:-1]]  # count before each edge
        within = cum - before[edge_of]
        total = np.add.reduceat(counts, self.hist_offsets[:-1])
        pivot = (q * total) // 100 + 1
        idx = np.flatnonzero(within >= pivot[edge_of])
        # cumulative counts grow within an edge: the first reaching entry of each edge
        _, first = np.unique(edge_of[idx], return_index=True)
        return (self.hist_bins[idx[first]].astype(np.float64) + 0.5) / 256.0

    @classmethod
    def concatenate(cls, graphs: Sequence["RegionGraph"]) -> "RegionGraph":
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

        def reduce(ufunc, name, dtype):
            values = np.concatenate([getattr(g, name) for g in graphs]).astype(dtype)[order]
            return ufunc.reduceat(values, starts) if len(values) else values

        counts = reduce(np.add, "counts", np.uint64)
        sums = reduce(np.add, "sums", np.float64)
        mins = reduce(np.minimum, "mins", np.float32)
        maxs = reduce(np.maximum, "maxs", np.float32)
        hist = (None, None, None)
        if all(g.has_histograms for g in graphs):
            # each histogram entry gets its (global) edge and bin, then equal pairs are summed
            edge_of_old = []
            base = 0
            for g in graphs:
                edge_of_old.append(np.repeat(np.arange(base, base + g.n_edges), np.diff(g.hist_offsets)))
                base += g.n_edges
            old_edge = np.concatenate(edge_of_old)
            inverse = np.empty(len(order), dtype=np.int64)
            inverse[order] = group
            entry_group = inverse[old_edge]
            bins = np.concatenate([g.hist_bins for g in graphs])
            hcounts = np.concatenate([g.hist_counts for g in graphs]).astype(np.uint64)
            key = entry_group * 256 + bins.astype(np.int64)
            korder = np.argsort(key, kind="stable")
            key = key[korder]
            first = np.ones(len(key), dtype=bool)
            first[1:] = key[1:] != key[:-1]
            kstarts = np.flatnonzero(first)
            hcounts = np.add.reduceat(hcounts[korder], kstarts) if len(key) else hcounts
            ukey = key[kstarts]
            offsets = np.searchsorted(ukey // 256, np.arange(len(starts) + 1)).astype(np.int64)
            hist = (offsets, (ukey % 256).astype(np.uint8), hcounts)
        return cls(edges[starts], counts, sums, mins, maxs, *hist)


def _context(value) -> tuple:
    try:
        ctx = tuple(int(c) for c in np.broadcast_to(np.asarray(value), (3,)))
    except (TypeError, ValueError):
        raise ValueError(f"context must be a non-negative int or three of them (z, y, x); got {value!r}") from None
    if any(c < 0 for c in ctx):
        raise ValueError(f"context must be non-negative; got {value!r}")
    return ctx


def region_graph(fragments, affs, *, context=0, histograms: bool = True, threads: int | None = None) -> RegionGraph:
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

    Returns
    -------
    RegionGraph
    """
    return _region_graph(fragments, check_affinities(affs), context=context, histograms=histograms, threads=threads)


def _region_graph(fragments, affs: np.ndarray, *, context=0, histograms: bool = True,
                  threads: int | None = None) -> RegionGraph:
    """:func:`region_graph` with affinities that :func:`check_affinities` passed."""
    frag = label_array("fragments", fragments)
    if frag.shape != affs.shape[1:]:
        raise ValueError(f"fragments must have the spatial shape of affs, {affs.shape[1:]}; got {frag.shape}")
    cz, cy, cx = _context(context)
    if threads is None:
        threads = min(os.cpu_count() or 1, 8)
    if not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer; got {threads!r}")
    out = _kernel("region_graph", affs)(frag, affs, cz, cy, cx, bool(histograms), int(threads))
    edges = np.stack([out["u"], out["v"]], axis=1)
    hist = (out["hist_offsets"], out["hist_bins"], out["hist_counts"]) if histograms else (None, None, None)
    graph = RegionGraph(edges, out["count"], out["sum"], out["min"], out["max"], *hist)
    logger.debug("region graph: %d edges", graph.n_edges)
    return graph
