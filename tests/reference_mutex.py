"""Slow, obviously-correct Python reference for the mutex watershed (tests only).

``mutex_watershed_reference`` follows the spec of ``xpress_fast.mutex_watershed`` word for word
(Wolf et al. 2018, "The Mutex Watershed"):

- channel ``c`` links voxel ``v`` to ``v + offsets[c]`` where both lie in the volume, both are
  unmasked and ``v`` is a multiple of ``strides[c]`` on every axis;
- its weight is ``w = float32(aff) - float32(bias[c])`` (uint8 ``k`` means ``float32(k) / 255``):
  ``w > 0`` attractive, ``w < 0`` repulsive (mutex), ``w == 0`` ignored; priority ``|w|``;
- edges are taken in descending priority, ties by ascending (channel, raster index of ``v``);
- an attractive edge merges two clusters unless a mutex separates them; a repulsive edge puts a
  mutex between two clusters (a merged cluster keeps the mutexes of both parts);
- labels 1..K in raster order of each cluster's first voxel, masked voxels 0.

Plain lists, dicts and sets: a union-find without ranks, the mutexes as a dict root -> set of
roots, re-keyed at every merge. Inputs are assumed valid (the API tests check validation).
"""
from __future__ import annotations

import numpy as np


def affinity_values(affs) -> np.ndarray:
    """Affinities as float32 in [0, 1] (uint8 k -> float32(k) / float32(255))."""
    affs = np.asarray(affs)
    if affs.dtype == np.uint8:
        return affs.astype(np.float32) / np.float32(255)
    return affs.astype(np.float32)


def edge_weights(affs, bias=0.5) -> np.ndarray:
    """(C, Z, Y, X) float32 weights ``aff - bias[c]`` computed in float32."""
    values = affinity_values(affs)
    n_channels = values.shape[0]
    if np.ndim(bias) == 0:
        bias = [bias] * n_channels
    b = np.asarray(bias, dtype=np.float32).reshape(n_channels, 1, 1, 1)
    return values - b


def used_edges(weights, offsets, strides=None, mask=None):
    """The list of used edges as (priority, channel, flat v, flat u, attractive), u = v + offset.

    ``weights`` are already bias-subtracted; edges of weight 0, edges that leave the volume,
    touch a masked voxel or sit off the channel's stride grid are left out.
    """
    n_channels = weights.shape[0]
    shape = weights.shape[1:]
    inside = np.ones(shape, bool) if mask is None else np.asarray(mask) != 0
    if strides is None:
        strides = [(1, 1, 1)] * n_channels
    edges = []
    for c in range(n_channels):
        off = [int(o) for o in offsets[c]]
        stride = [int(s) for s in strides[c]]
        for v in np.ndindex(shape):
            if any(v[d] % stride[d] != 0 for d in range(3)):
                continue
            u = tuple(v[d] + off[d] for d in range(3))
            if any(u[d] < 0 or u[d] >= shape[d] for d in range(3)):
                continue
            if not (inside[v] and inside[u]):
                continue
            w = weights[(c,) + v]  # a float32 scalar
            if w == 0:
                continue
            edges.append((float(abs(w)), c, int(np.ravel_multi_index(v, shape)),
                          int(np.ravel_multi_index(u, shape)), bool(w > 0)))
    return edges


def mutex_clusters(n_voxels, edges):
    """Run the mutex watershed over ``edges`` (as from ``used_edges``); returns the list
    voxel -> root of its cluster."""
    parent = list(range(n_voxels))
    mutex = {}  # root -> set of roots it must never merge with

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    def merge(a, b):
        """Merge root b into root a; b's mutexes move to a."""
        parent[b] = a
        moved = mutex.pop(b, set())
        for other in moved:
            mutex[other].discard(b)
            mutex[other].add(a)
        mutex.setdefault(a, set()).update(moved)

    # descending priority, then ascending channel, then ascending raster index of v
    for _, _, v, u, attractive in sorted(edges, key=lambda e: (-e[0], e[1], e[2])):
        a, b = find(v), find(u)
        if a == b:
            continue
        if attractive:
            if b not in mutex.get(a, set()):
                merge(a, b)
        else:
            mutex.setdefault(a, set()).add(b)
            mutex.setdefault(b, set()).add(a)
    return [find(x) for x in range(n_voxels)]


def number_in_raster_order(roots, inside) -> np.ndarray:
    """Labels 1..K by first appearance in C order of each root; voxels outside ``inside`` get 0."""
    flat_inside = inside.ravel()
    label_of = {}
    out = np.zeros(len(roots), dtype=np.uint64)
    for i, r in enumerate(roots):
        if not flat_inside[i]:
            continue
        if r not in label_of:
            label_of[r] = len(label_of) + 1
        out[i] = label_of[r]
    return out.reshape(inside.shape)


def mutex_watershed_reference(affs, offsets, bias=0.5, strides=None, mask=None) -> np.ndarray:
    """The spec's mutex watershed: (Z, Y, X) uint64 labels 1..K in raster order, masked 0."""
    weights = edge_weights(affs, bias)
    return mutex_watershed_weights(weights, offsets, strides=strides, mask=mask)


def mutex_watershed_weights(weights, offsets, strides=None, mask=None) -> np.ndarray:
    """The same from weights that are already bias-subtracted (positive attract, negative repel)."""
    weights = np.asarray(weights, dtype=np.float32)
    shape = weights.shape[1:]
    inside = np.ones(shape, bool) if mask is None else np.asarray(mask) != 0
    edges = used_edges(weights, offsets, strides, mask)
    roots = mutex_clusters(int(np.prod(shape)), edges)
    return number_in_raster_order(roots, inside)


def singletons_to_labels(labels) -> np.ndarray:
    """mwatershed labels every cluster of one voxel 0: give each such voxel its own new label."""
    out = np.array(labels, dtype=np.int64)
    zeros = out == 0
    top = int(out.max()) if out.size else 0
    out[zeros] = top + 1 + np.arange(int(zeros.sum()))
    return out
