"""Slow, obviously-correct Python references for the segmentation kernels (tests only).

- ``ref_watershed``: Kruskal's seeded maximum spanning forest, edges sorted in one list.
- ``ref_region_graph``: a loop over every voxel edge into a dict.
- ``ref_agglomerate``: waterz's iterative region merging written out with a plain union-find and
  dicts, run from scratch for each threshold; it also reports whether equal keys were ever
  competing (ties), where waterz's order is unspecified.
"""
from __future__ import annotations

import numpy as np


def label_affinities(labels: np.ndarray) -> np.ndarray:
    """Ideal nearest-neighbour affinities (3, Z, Y, X) float32 of a label volume: channel c at v
    is 1 where v and v - e_c carry the same non-zero label, else 0 (also on the lower faces)."""
    affs = np.zeros((3,) + labels.shape, np.float32)
    for c in range(3):
        hi = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi[c], lo[c] = slice(1, None), slice(0, -1)
        affs[c][tuple(hi)] = (labels[tuple(hi)] == labels[tuple(lo)]) & (labels[tuple(hi)] > 0)
    return affs


def affinity_values(affs: np.ndarray) -> np.ndarray:
    """Affinities as float32 in [0, 1] (uint8 k -> k / 255)."""
    if affs.dtype == np.uint8:
        return affs.astype(np.float32) / np.float32(255)
    return affs.astype(np.float32)


def flood_levels(affs: np.ndarray) -> np.ndarray:
    if affs.dtype == np.uint8:
        return affs.astype(np.int64)
    a = affs.astype(np.float32)
    return np.clip(np.floor(a * np.float32(255) + np.float32(0.5)), 0, 255).astype(np.int64)


def hist_bins(affs: np.ndarray) -> np.ndarray:
    if affs.dtype == np.uint8:
        return affs.astype(np.int64)
    a = affs.astype(np.float32)
    return np.clip(np.floor(a * np.float32(256)), 0, 255).astype(np.int64)


def ref_watershed(affs, seeds, mask=None):
    """Seeded maximum spanning forest: Kruskal over the voxel edges, strongest first.

    Edge order: (-level, raster index of the owning voxel, channel); two components merge unless
    both hold different seeds.
    """
    levels = flood_levels(affs)
    labels = np.array(seeds, dtype=np.uint64)
    shape = labels.shape
    inside = np.ones(shape, bool) if mask is None else np.asarray(mask) != 0
    labels[~inside] = 0
    flat = labels.ravel()
    n = flat.size
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    edges = []
    for v in np.ndindex(shape):
        if not inside[v]:
            continue
        for c in range(3):
            if v[c] == 0:
                continue
            w = list(v)
            w[c] -= 1
            w = tuple(w)
            if inside[w]:
                edges.append((-int(levels[(c,) + v]), np.ravel_multi_index(v, shape), c,
                              np.ravel_multi_index(w, shape)))
    seed_of = {i: int(flat[i]) for i in range(n)}
    for _, a, _, b in sorted(edges):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        sa, sb = seed_of[ra], seed_of[rb]
        if sa and sb and sa != sb:
            continue
        parent[rb] = ra
        seed_of[ra] = sa or sb
    out = np.array([seed_of[find(i)] for i in range(n)], dtype=np.uint64).reshape(shape)
    out[~inside] = 0
    return out


def _count_pair(graph, key, value, bin_):
    """One voxel pair of affinity ``value`` (histogram bin ``bin_``) toward edge ``key``."""
    e = graph.setdefault(key, {"count": 0, "sum": 0.0, "min": 1.0, "max": 0.0, "hist": {}})
    e["count"] += 1
    e["sum"] += value
    e["min"] = min(e["min"], value)
    e["max"] = max(e["max"], value)
    e["hist"][bin_] = e["hist"].get(bin_, 0) + 1


def ref_region_graph(fragments, affs, context=(0, 0, 0)):
    """dict (u, v) -> dict(count, sum, min, max, hist {bin: count}), u < v."""
    values = affinity_values(affs)
    bins = hist_bins(affs)
    graph = {}
    for p in np.ndindex(fragments.shape):
        if any(p[d] < context[d] for d in range(3)):
            continue
        a = int(fragments[p])
        for c in range(3):
            if p[c] == 0:
                continue
            q = list(p)
            q[c] -= 1
            b = int(fragments[tuple(q)])
            if a == 0 or b == 0 or a == b:
                continue
            key = (min(a, b), max(a, b))
            _count_pair(graph, key, float(values[(c,) + p]), int(bins[(c,) + p]))
    return graph


def ref_long_range_graph(fragments, affs, offsets, inside_threshold=None):
    """The region graph with every channel's voxel pairs and an inside gate, by brute force.

    Channel c's pair {v, v + offsets[c]} between different non-zero fragments counts toward
    their edge; pairs of fragments that no nearest-neighbour pair (channels 0-2) joins are
    dropped. With ``inside_threshold`` only voxels whose mean of channels 0-2 (float32, as
    the kernels compute it) is > the threshold take part.
    """
    values = affinity_values(affs)
    bins = hist_bins(affs)
    frag = fragments.astype(np.int64)
    if inside_threshold is not None:
        mean = (values[0] + values[1] + values[2]) / np.float32(3)
        frag = np.where(mean > np.float32(inside_threshold), frag, 0)
    graph, touching = {}, set()
    for p in np.ndindex(frag.shape):
        a = int(frag[p])
        for c, off in enumerate(offsets):
            q = tuple(int(p[d] + off[d]) for d in range(3))
            if any(not 0 <= q[d] < frag.shape[d] for d in range(3)):
                continue
            b = int(frag[q])
            if a == 0 or b == 0 or a == b:
                continue
            key = (min(a, b), max(a, b))
            if c < 3:
                touching.add(key)
            _count_pair(graph, key, float(values[(c,) + p]), int(bins[(c,) + p]))
    return {k: v for k, v in graph.items() if k in touching}


def _statistic(kind, q, e):
    if kind == "mean":
        return e["sum"] / e["count"]
    if kind == "max":
        return float(np.float32(e["max"]))
    if kind == "min":
        return float(np.float32(e["min"]))
    total = sum(e["hist"].values())
    pivot = q * total // 100 + 1
    cum = 0
    for b in sorted(e["hist"]):
        cum += e["hist"][b]
        if cum >= pivot:
            return (b + 0.5) / 256
    return 255.5 / 256


def parse(merge_function):
    if merge_function in ("mean", "max", "min"):
        return merge_function, 50, False
    parts = merge_function.split("_")
    return "quantile", int(parts[2]), merge_function.endswith("_initmax")


def ref_agglomerate(graph, merge_function, threshold, tol=0.0):
    """waterz's procedure until the lowest key is >= threshold.

    graph: dict (u, v) -> stats as from ref_region_graph. Returns (dict fragment -> root, tie)
    where tie says whether two queue entries with equal keys were ever both present when one was
    taken (the order among them is then unspecified in waterz), or a taken key was within
    ``tol`` of another queued key or of the threshold (where float32 rounding, as in waterz,
    could decide differently).
    """
    kind, q, init_max = parse(merge_function)
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    edges = []  # id -> dict(u, v, stats, key, stale, deleted)
    for (u, v) in sorted(graph):
        st = {k: (dict(val) if k == "hist" else val) for k, val in graph[(u, v)].items()}
        if init_max and kind == "quantile":
            st["hist"] = {max(st["hist"]): 1}
        edges.append({"u": u, "v": v, "st": st, "stale": False, "deleted": False})
    for e in edges:
        e["key"] = 1.0 - _statistic(kind, q, e["st"])
    queue = [(e["key"], i) for i, e in enumerate(edges)]  # entries; min by (key, id)
    tie = False
    while queue:
        top = min(queue)
        if abs(top[0] - threshold) <= tol:
            tie = True
        if top[0] >= threshold:
            break
        if sum(1 for k, _ in queue if abs(k - top[0]) <= tol) > 1:
            tie = True
        queue.remove(top)
        e = edges[top[1]]
        if e["deleted"]:
            continue
        if e["stale"]:
            e["key"] = 1.0 - _statistic(kind, q, e["st"])
            e["stale"] = False
            queue.append((e["key"], top[1]))
            continue
        a, b = find(e["u"]), find(e["v"])
        assert a != b
        parent[b] = a
        e["deleted"] = True
        # fold parallel edges between the new region and each neighbour
        by_neighbour = {}
        for i, f in enumerate(edges):
            if f["deleted"]:
                continue
            ru, rv = find(f["u"]), find(f["v"])
            if a not in (ru, rv):
                continue
            n = rv if ru == a else ru
            by_neighbour.setdefault(n, []).append(i)
        for n, ids in by_neighbour.items():
            assert len(ids) <= 2
            if len(ids) == 1:
                continue
            keep, drop = sorted(ids, key=lambda i: (edges[i]["key"], i))
            k, d = edges[keep]["st"], edges[drop]["st"]
            old_min, old_max = k["min"], k["max"]
            k["count"] += d["count"]
            k["sum"] += d["sum"]
            k["min"] = min(k["min"], d["min"])
            k["max"] = max(k["max"], d["max"])
            for bin_, cnt in d["hist"].items():
                k["hist"][bin_] = k["hist"].get(bin_, 0) + cnt
            changed = {"max": k["max"] != old_max, "min": k["min"] != old_min}.get(kind, True)
            if changed:
                edges[keep]["stale"] = True
            edges[drop]["deleted"] = True
    nodes = {x for uv in graph for x in uv}
    return {x: find(x) for x in nodes}, tie


def relabel(fragments, mapping):
    out = np.array(fragments, dtype=np.uint64)
    for x, r in mapping.items():
        out[fragments == x] = r
    return out


def same_partition(a, b) -> bool:
    """Whether two label arrays are equal up to renumbering."""
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    if a.shape != b.shape:
        return False
    pairs = np.unique(np.stack([a, b]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def is_connected(mask: np.ndarray) -> bool:
    from scipy import ndimage

    _, n = ndimage.label(mask)
    return n == 1

