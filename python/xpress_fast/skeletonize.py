"""Skeletons derived from a dense label volume (for data with voxel labels but no skeletons).

Each label is thinned to a one-voxel-wide centre line (``skimage.morphology.skeletonize``, 3-D,
on the label's bounding box); the remaining voxels become nodes, joined to their 26-neighbours.
Cycles of the voxel graph are cut (a spanning forest), then chains of degree-2 nodes are thinned
to one node every ``node_spacing`` voxels (end points and branch points always stay), so the
result looks like the challenge's skeletons: trees with nodes a few hundred nm apart. Nodes sit
at voxel centres of voxels that hold their label, so a perfect segmentation scores perfectly.
A label whose skeleton comes out empty (a very thin or tiny object) gets one node at its voxel
nearest to its centroid. Needs scikit-image (imported here only).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Iterable, Optional

import numpy as np
import numpy.typing as npt

from ._validate import float_triple, label_array

if TYPE_CHECKING:
    from .skeletons import Skeletons

log = logging.getLogger(__name__)

# the 13 "forward" neighbours of the 26-neighbourhood: each undirected voxel pair once
_FORWARD = np.array([(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if (dz, dy, dx) > (0, 0, 0)], dtype=np.int64)


def _voxel_graph(coords: npt.NDArray[np.int64], shape: tuple[int, ...]) -> npt.NDArray[np.int64]:
    """Edges (index pairs) between 26-adjacent voxels of ``coords`` (K, 3) inside ``shape``."""
    if len(coords) < 2:
        return np.zeros((0, 2), np.int64)
    keys = np.ravel_multi_index(tuple(coords.T), shape)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    edges = []
    for d in _FORWARD:
        nb = coords + d
        ok = np.all((nb >= 0) & (nb < np.asarray(shape)), axis=1)
        nk = np.ravel_multi_index(tuple(nb[ok].T), shape)
        pos = np.searchsorted(sorted_keys, nk)
        pos = np.minimum(pos, len(sorted_keys) - 1)
        hit = sorted_keys[pos] == nk
        src = np.flatnonzero(ok)[hit]
        edges.append(np.stack([src, order[pos[hit]]], axis=1))
    return np.concatenate(edges) if edges else np.zeros((0, 2), np.int64)


def _spanning_forest(n: int, edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A spanning forest of the graph: prefer face neighbours (short edges) first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    if len(edges) == 0:
        return edges
    w = np.ones(len(edges))
    g = coo_matrix((w, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    t = minimum_spanning_tree(g).tocoo()
    return np.stack([t.row, t.col], axis=1).astype(np.int64)


def _join_components(coords: npt.NDArray[np.int64], edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Add the shortest straight edges that make a forest one tree (one skeleton per label).

    A label can be several pieces in the volume (it leaves and re-enters) or thin to several
    pieces; its skeleton is still one neuron, so the pieces are joined at their closest nodes.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree
    from scipy.spatial import cKDTree

    n = len(coords)
    g = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n)) if len(edges) else \
        coo_matrix((n, n))
    n_comp, comp = connected_components(g, directed=False)
    if n_comp <= 1:
        return edges
    members = [np.flatnonzero(comp == c) for c in range(n_comp)]
    trees = [cKDTree(coords[m]) for m in members]
    dist = np.zeros((n_comp, n_comp))
    pair = {}
    for i in range(n_comp):
        for j in range(i + 1, n_comp):
            d, idx = trees[j].query(coords[members[i]])
            k = int(np.argmin(d))
            dist[i, j] = d[k] + 1e-9
            pair[(i, j)] = (members[i][k], members[j][idx[k]])
    t = minimum_spanning_tree(dist).tocoo()
    extra = [pair[(min(a, b), max(a, b))] for a, b in zip(t.row, t.col)]
    return np.concatenate([edges.reshape(-1, 2), np.asarray(extra, dtype=np.int64).reshape(-1, 2)])


def _thin_chains(n: int, edges: npt.NDArray[np.int64], spacing: int
                 ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64]]:
    """Keep end/branch points and every ``spacing``-th node along degree-2 chains of a forest.

    Returns (kept node indices, edges between kept nodes as indices into the kept list).
    """
    if spacing <= 1 or n <= 2:
        return np.arange(n), edges
    adj: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges.tolist():
        adj[a].append(b)
        adj[b].append(a)
    degree = np.array([len(x) for x in adj])
    keep = degree != 2
    if not keep.any():  # no end point (cannot happen in a forest with n >= 2 unless isolated)
        keep[0] = True
    new_edges = []
    visited_edge = set()
    for start in np.flatnonzero(keep).tolist():
        for nxt in adj[start]:
            if (start, nxt) in visited_edge:
                continue
            prev, cur, steps, last_kept = start, nxt, 1, start
            visited_edge.add((start, nxt))
            while True:
                if keep[cur]:
                    new_edges.append((last_kept, cur))
                    visited_edge.add((cur, prev))
                    break
                if steps % spacing == 0:
                    keep[cur] = True
                    new_edges.append((last_kept, cur))
                    last_kept = cur
                a, b = adj[cur]
                prev, cur = cur, (b if a == prev else a)
                steps += 1
    kept = np.flatnonzero(keep)
    remap = np.full(n, -1, np.int64)
    remap[kept] = np.arange(len(kept))
    e = remap[np.asarray(new_edges, dtype=np.int64).reshape(-1, 2)] if new_edges else np.zeros((0, 2), np.int64)
    if len(e):
        e = np.unique(np.sort(e, axis=1), axis=0)
        e = e[e[:, 0] != e[:, 1]]
    return kept, e


def skeletons_from_labels(
    labels: npt.ArrayLike,
    *,
    voxel_size: npt.ArrayLike,
    offset: npt.ArrayLike = (0, 0, 0),
    node_spacing: int = 4,
    min_voxels: int = 1,
    ignore_labels: Iterable[int] = (0,),
    max_labels: Optional[int] = None,
) -> Skeletons:
    """Skeletons of every object of a dense label volume.

    Parameters
    ----------
    labels : (Z, Y, X) integer array
        Object labels; ``ignore_labels`` (default 0, background) get no skeleton.
    voxel_size, offset : 3 numbers, nm (z, y, x)
    node_spacing : int
        Keep one node every ``node_spacing`` voxels along unbranched stretches (>= 1).
    min_voxels : int
        Objects smaller than this get no skeleton.
    ignore_labels : sequence of int
    max_labels : int, optional
        Only the ``max_labels`` largest objects (None: all).

    Returns
    -------
    Skeletons
        Positions at voxel centres (nm, z y x, including ``offset``), one tree or forest per
        label, ``ids`` = the label under each node.
    """
    from scipy import ndimage

    from .skeletons import Skeletons

    from ._extras import require

    skeletonize = require("skimage", "skeletons_from_labels").morphology.skeletonize
    lab = label_array("labels", labels)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if not isinstance(node_spacing, (int, np.integer)) or isinstance(node_spacing, bool) or node_spacing < 1:
        raise ValueError(f"node_spacing must be a positive integer; got {node_spacing!r}")
    if not isinstance(min_voxels, (int, np.integer)) or min_voxels < 1:
        raise ValueError(f"min_voxels must be a positive integer; got {min_voxels!r}")
    if max_labels is not None and (not isinstance(max_labels, (int, np.integer)) or max_labels < 1):
        raise ValueError(f"max_labels must be a positive integer or None; got {max_labels!r}")

    ids, inverse, counts = np.unique(lab, return_inverse=True, return_counts=True)
    ignore = np.isin(ids, np.asarray(list(ignore_labels), dtype=np.uint64))
    candidates = np.flatnonzero(~ignore & (counts >= min_voxels))
    if max_labels is not None and len(candidates) > max_labels:
        candidates = candidates[np.argsort(-counts[candidates], kind="stable")[:max_labels]]
    dense = inverse.reshape(lab.shape).astype(np.int64) + 1  # dense ids 1..len(ids) for find_objects
    boxes = ndimage.find_objects(dense)
    positions, edges, node_ids = [], [], []
    base = 0
    for k in np.sort(candidates):
        box = boxes[k]
        if box is None:
            continue
        mask = dense[box] == k + 1
        padded = np.pad(mask, 1)
        skel = skeletonize(padded)[1:-1, 1:-1, 1:-1] & mask
        coords = np.argwhere(skel)
        if len(coords) == 0:
            inside = np.argwhere(mask)
            centre = inside.mean(axis=0)
            coords = inside[[int(np.argmin(((inside - centre) ** 2).sum(axis=1)))]]
        e = _join_components(coords, _spanning_forest(len(coords), _voxel_graph(coords, mask.shape)))
        kept, e = _thin_chains(len(coords), e, int(node_spacing))
        corner = np.array([s.start for s in box])
        world = off + (coords[kept] + corner + 0.5) * vs
        positions.append(world)
        edges.append(e + base)
        node_ids.append(np.full(len(kept), ids[k], dtype=np.uint64))
        base += len(kept)
    if base == 0:
        raise ValueError("labels hold no object to skeletonize (all ignored or smaller than min_voxels)")
    pos = np.concatenate(positions)
    log.info("skeletons_from_labels: %d objects, %d nodes", len(positions), len(pos))
    return Skeletons(pos, np.concatenate(edges).astype(np.int64),
                     ids=np.concatenate(node_ids).astype(np.int64))

