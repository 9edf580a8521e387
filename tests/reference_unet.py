"""Slow, obviously-correct references for the U-Net's targets and losses (pure Python loops),
and the random-network helper the U-Net tests share."""
from __future__ import annotations

import itertools
import math

import numpy as np


def ref_affinities(labels, offsets, *, ignore_zero=False, labelled=None):
    """Loop over every voxel and offset: the definition in xpress_fast.unet.targets."""
    labels = np.asarray(labels)
    Z, Y, X = labels.shape
    C = len(offsets)
    affs = np.zeros((C, Z, Y, X), np.float32)
    mask = np.zeros((C, Z, Y, X), np.float32)
    for c, (dz, dy, dx) in enumerate(offsets):
        for z, y, x in itertools.product(range(Z), range(Y), range(X)):
            w = (z + dz, y + dy, x + dx)
            if not (0 <= w[0] < Z and 0 <= w[1] < Y and 0 <= w[2] < X):
                continue
            a, b = int(labels[z, y, x]), int(labels[w])
            known = True
            if labelled is not None:
                known = bool(labelled[z, y, x]) and bool(labelled[w])
            if ignore_zero and (a == 0 or b == 0):
                known = False
            mask[c, z, y, x] = 1.0 if known else 0.0
            affs[c, z, y, x] = 1.0 if (a == b and a != 0) else 0.0
    return affs, mask


def _point_segment_distance(p, a, b):
    d = [bi - ai for ai, bi in zip(a, b)]
    dd = sum(v * v for v in d)
    t = 0.0
    if dd > 0:
        t = sum((pi - ai) * di for pi, ai, di in zip(p, a, d)) / dd
        t = min(1.0, max(0.0, t))
    q = [ai + t * di for ai, di in zip(a, d)]
    return math.sqrt(sum((pi - qi) ** 2 for pi, qi in zip(p, q)))


def ref_rasterize(positions, edges, ids, shape, voxel_size, offset, radius, radii=None):
    """Every voxel centre against every segment (edges, and isolated nodes), in nm; ``radii``
    ({id: nm}) overrides ``radius`` for some ids."""
    radii = radii or {}
    positions = np.asarray(positions, float)
    edges = np.asarray(edges, int).reshape(-1, 2)
    n = len(positions)
    deg = [0] * n
    segs = []
    for u, v in edges:
        deg[u] += 1
        deg[v] += 1
        segs.append((u, v))
    segs += [(u, u) for u in range(n) if deg[u] == 0]
    out = np.zeros(shape, np.uint64)
    for idx in itertools.product(*[range(s) for s in shape]):
        p = [offset[a] + (idx[a] + 0.5) * voxel_size[a] for a in range(3)]  # voxel centres
        hit = set()
        for u, v in segs:
            if _point_segment_distance(p, positions[u], positions[v]) <= radii.get(int(ids[u]), radius):
                hit.add(int(ids[u]))
        if len(hit) == 1:
            out[idx] = hit.pop()
    return out


def ref_path_negative_loss(logits, target, mask, offsets):
    """softplus(min link logit) over explicit straight paths, averaged over supervised negatives."""
    logits = np.asarray(logits, np.float64)
    B, C, Z, Y, X = logits.shape
    offs = [tuple(int(v) for v in o) for o in offsets]
    nn = {}
    for c, o in enumerate(offs):
        nz = [a for a in range(3) if o[a]]
        if len(nz) == 1 and abs(o[nz[0]]) == 1 and nz[0] not in nn:
            nn[nz[0]] = (c, o[nz[0]])
    total, count = 0.0, 0
    for c, o in enumerate(offs):
        nz = [a for a in range(3) if o[a]]
        if len(nz) != 1 or abs(o[nz[0]]) <= 1 or nz[0] not in nn:
            continue
        a = nz[0]
        k, sign = abs(o[a]), (1 if o[a] > 0 else -1)
        nc, nsign = nn[a]
        for b, z, y, x in itertools.product(range(B), range(Z), range(Y), range(X)):
            if mask[b, c, z, y, x] < 0.5 or target[b, c, z, y, x] > 0.5:
                continue
            v = [z, y, x]
            # links between consecutive voxels on the path v -> v + sign*k*e_a
            link_logits = []
            ok = True
            for j in range(k):
                p = list(v)
                p[a] += sign * j
                q = list(p)
                q[a] += sign
                lo = min(p[a], q[a])  # the link joins lo and lo + 1
                u = list(v)
                u[a] = lo + 1 if nsign < 0 else lo
                if not (0 <= u[a] < logits.shape[2 + a]):
                    ok = False
                    break
                link_logits.append(logits[b, nc, u[0], u[1], u[2]])
            if not ok:
                continue
            m = min(link_logits)
            total += math.log1p(math.exp(-abs(m))) + max(m, 0.0)
            count += 1
    return total / max(count, 1)


def ref_gap_groups(labels, offsets):
    """Sets of flat (C, Z, Y, X) link indices, one per gap between consecutive labelled voxels of
    different ids on an axis-aligned line (loops over every line)."""
    labels = np.asarray(labels)
    shape = labels.shape
    C = len(offsets)
    result = []
    for a in range(3):
        chans = [c for c, o in enumerate(offsets) if abs(o[a]) == 1 and sum(1 for v in o if v) == 1]
        if not chans:
            continue
        c = chans[0]
        nsign = offsets[c][a]
        others = [ax for ax in range(3) if ax != a]
        for i in range(shape[others[0]]):
            for j in range(shape[others[1]]):
                def at(t):
                    idx = [0, 0, 0]
                    idx[a], idx[others[0]], idx[others[1]] = t, i, j
                    return tuple(idx)
                labelled = [t for t in range(shape[a]) if labels[at(t)] != 0]
                for p, q in zip(labelled[:-1], labelled[1:]):
                    if labels[at(p)] == labels[at(q)]:
                        continue
                    group = set()
                    for t in range(p, q):  # link joins t and t + 1
                        u = t + 1 if nsign < 0 else t
                        group.add(int(np.ravel_multi_index((c,) + at(u), (C,) + shape)))
                    result.append(frozenset(group))
    return result


def he_init(model):
    """Re-initialise a network He-style (biases ~ N(0, 0.1)), in place, and return it: under the
    default init a fresh tiny net's output is nearly constant in space, so tests of tiling and
    padding could not fail."""
    import torch

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                torch.nn.init.normal_(mod.bias, 0.0, 0.1)
    return model


def ref_mine_background(positions, edges, shape, voxel_size, offset, margin, ids=None, margins=None):
    """Every voxel centre against every segment (edges, and isolated nodes): True where all are
    at least ``margin`` nm away (``margins[ids[u]]`` for a segment from node u, where given)."""
    positions = np.asarray(positions, float)
    edges = np.asarray(edges, int).reshape(-1, 2)
    n = len(positions)
    deg = [0] * n
    for u, v in edges:
        deg[u] += 1
        deg[v] += 1
    segs = [tuple(e) for e in edges] + [(u, u) for u in range(n) if deg[u] == 0]
    out = np.ones(shape, bool)
    for idx in itertools.product(*[range(s) for s in shape]):
        p = [offset[a] + (idx[a] + 0.5) * voxel_size[a] for a in range(3)]
        if any(_point_segment_distance(p, positions[u], positions[v])
               < (margins or {}).get(None if ids is None else int(ids[u]), margin) for u, v in segs):
            out[idx] = False
    return out


def ref_select_pseudo_labels(segmentation, positions, ids, voxel_size, offset, min_nodes):
    """Per segment, the set of skeleton ids under its nodes: kept iff one id and >= min_nodes nodes."""
    seg = np.asarray(segmentation)
    per_segment: dict = {}
    for p, i in zip(np.asarray(positions, float), ids):
        v = tuple(int(math.floor((p[a] - offset[a]) / voxel_size[a])) for a in range(3))
        if not all(0 <= v[a] < seg.shape[a] for a in range(3)) or seg[v] == 0:
            continue
        per_segment.setdefault(int(seg[v]), []).append(int(i))
    out = np.zeros(seg.shape, np.uint64)
    for s, found in per_segment.items():
        if len(set(found)) == 1 and len(found) >= min_nodes:
            out[seg == s] = found[0]
    return out
