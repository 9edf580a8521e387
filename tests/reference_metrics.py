"""Slow, plain-Python references of the XPRESS scores (``../shared/METRICS.md``) and of dense Rand/VOI.

These are the oracles the fast C++ evaluator is tested against. They follow METRICS.md line by
line with networkx, dicts and ``math`` — no vectorisation, no cleverness — so that a reader can
check each step against the definition:

``reference_scores(segmentation, graph, ...)``
    1. node -> voxel: the node's ``position`` is (x, y, z) nm; each coordinate (z, y, x) is
       truncated toward zero with ``int()``; the node is inside iff ``begin <= int(c) < end``;
       its voxel in the ROI is ``(int(c) - begin) // voxel_size``. Outside nodes are dropped with
       their edges.
    2. skeleton ids: connected components (official: of the cropped graph; corrected: of the
       whole graph), numbered by their first node in graph order.
    3. label-0 nodes get a fresh label per voxel (the official max + 1, max + 2, ...; here a tuple
       that cannot collide with any integer label).
    Then ERL/nERL, split/merge counts, Rand/VOI on the voxels under nodes, and the XPRESS scores.

``reference_rand_voi(seg, gt, ignore_labels=(0,))``
    dense-volume Rand / VOI / adapted Rand, counting voxels whose *ground-truth* label is not
    ignored (scikit-image's convention).

Modes of ``reference_scores``:

``"official"`` keeps quirks 1-3 of METRICS.md: the first component (truth index 0) is left out of
Rand/VOI; skeleton ids are components of the *cropped* graph; a label-0 voxel is one fresh
segment, so an edge between two nodes in the same 0-voxel is "correct" and two skeletons in one
0-voxel are a merge. ``nvi`` is NaN when H(T, S) == 0 (0/0).

``"corrected"`` fixes them: (1) every component counts (truth index = component index + 1);
(2) skeleton identity = components of the uncropped graph, ``n_neurons`` = identities with at
least one node in the ROI; (3) an edge touching a label-0 node is always a split, and label-0
voxels never count as merges (neither in the ERL merge set nor in ``merge_count``), while each
label-0 voxel stays its own singleton segment for Rand/VOI; (5) ``nvi = 0`` when H(T, S) == 0 with
at least one counted voxel. In both modes ERL/nERL are NaN when there is no edge length at all.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict

import networkx as nx
import numpy as np

MODES = ("official", "corrected")
SCORE_KEYS = (
    "n_neurons", "erl", "nerl", "split_count", "merge_count",
    "rand_split", "rand_merge", "voi_split", "voi_merge", "nvi_split", "nvi_merge",
    "xpress_voi", "xpress_rand", "xpress_erl_voi", "xpress_erl_rand",
)
COUNT_KEYS = ("n_neurons", "split_count", "merge_count")


def _num(v):
    """A plain Python number (int when integral) from a numpy scalar or number."""
    f = float(v)
    return int(f) if f.is_integer() else f


def _div(a, b):
    """a / b with 0/0 (and x/0) -> NaN, as numpy float division gives in the official code."""
    return a / b if b != 0 else math.nan


def _components(graph, nodes):
    """Connected components of ``graph`` restricted to ``nodes``, numbered by first node in order.

    Returns {node: component index}. Breadth-first, plain Python.
    """
    allowed = set(nodes)
    comp = {}
    k = 0
    for start in nodes:
        if start in comp:
            continue
        comp[start] = k
        queue = [start]
        while queue:
            u = queue.pop()
            for v in graph.adj[u]:
                if v in allowed and v not in comp:
                    comp[v] = k
                    queue.append(v)
        k += 1
    return comp


def _entropy(counts, n):
    """Shannon entropy in bits of the distribution counts / n."""
    h = 0.0
    for c in counts:
        if c > 0:
            p = c / n
            h -= p * math.log2(p)
    return h


def _rand_voi_from_pairs(pairs):
    """Rand and VOI scores from a list of (truth, test) labels, one per counted voxel.

    Returns dict rand_split, rand_merge, voi_split, voi_merge, h_joint, n (Rand = NaN for n = 0).
    """
    n = len(pairs)
    nij = Counter(pairs)
    a = Counter(t for t, _ in pairs)  # truth marginals
    b = Counter(s for _, s in pairs)  # test marginals
    sum_n2 = sum(c * c for c in nij.values())
    sum_a2 = sum(c * c for c in a.values())
    sum_b2 = sum(c * c for c in b.values())
    h_ts = _entropy(nij.values(), n)
    h_t = _entropy(a.values(), n)
    h_s = _entropy(b.values(), n)
    return {
        "n": n,
        "rand_split": _div(sum_n2, sum_a2),
        "rand_merge": _div(sum_n2, sum_b2),
        "voi_split": h_ts - h_t,  # H(S|T)
        "voi_merge": h_ts - h_s,  # H(T|S)
        "h_joint": h_ts,
        "sum_n2": sum_n2,
        "sum_a2": sum_a2,
        "sum_b2": sum_b2,
    }


def reference_node_data(segmentation, graph, *, voxel_size, offset, roi_begin=None, roi_shape=None,
                        mode="official"):
    """Steps 1-3 of METRICS.md: the cropped nodes with voxel, skeleton id and (fresh) label.

    Returns a dict with ``nodes`` (inside nodes, graph order), ``voxel`` {node: (z, y, x) index
    into ``segmentation``}, ``skel`` {node: skeleton id}, ``label`` {node: label after step 3},
    ``zero`` {node: True if its voxel holds label 0}, ``edges`` (cropped edges, graph order),
    ``n_neurons``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    shape = segmentation.shape
    vs = [_num(v) for v in voxel_size]
    off = [_num(v) for v in offset]
    begin = off if roi_begin is None else [_num(v) for v in roi_begin]
    if roi_shape is None:  # up to the end of the array
        end = [off[i] + shape[i] * vs[i] for i in range(3)]
    else:
        end = [begin[i] + _num(roi_shape[i]) for i in range(3)]

    nodes = []
    voxel = {}
    for n in graph.nodes:
        x, y, z = graph.nodes[n]["position"]
        c = [int(z), int(y), int(x)]  # truncation toward zero, zyx
        if all(begin[i] <= c[i] < end[i] for i in range(3)):
            roi_vox = [int((c[i] - begin[i]) // vs[i]) for i in range(3)]
            # index into the segmentation array (the ROI is aligned to the voxel grid)
            vox = tuple(roi_vox[i] + int(round((begin[i] - off[i]) / vs[i])) for i in range(3))
            nodes.append(n)
            voxel[n] = vox
    inside = set(nodes)
    edges = [(u, v) for u, v in graph.edges if u in inside and v in inside]

    if mode == "official":
        cropped = nx.Graph()
        cropped.add_nodes_from(nodes)
        cropped.add_edges_from(edges)
        skel = _components(cropped, nodes)
    else:
        full = _components(graph, list(graph.nodes))
        skel = {n: full[n] for n in nodes}
    n_neurons = len(set(skel.values()))

    # Step 3. The official code writes max+1, max+2, ... into the 0-voxels; all that matters is
    # that each 0-voxel becomes a segment of its own, distinct from every real label, so the
    # fresh label here is the tuple ("label 0 at", voxel): it can never equal an int label, and
    # the reference stays O(nodes) (no pass over the volume for its maximum).
    label = {}
    zero = {}
    for n in nodes:
        lab = int(segmentation[voxel[n]])
        zero[n] = lab == 0
        if lab == 0:
            lab = ("label 0 at", voxel[n])
        label[n] = lab
    return {"nodes": nodes, "voxel": voxel, "skel": skel, "label": label, "zero": zero,
            "edges": edges, "n_neurons": n_neurons}


def reference_erl(segmentation, graph, *, voxel_size, offset, roi_begin=None, roi_shape=None,
                  mode="official"):
    """ERL / nERL of METRICS.md, plus per-skeleton lengths, split and merge counts.

    Returns dict erl, nerl, skeleton_lengths {skel: L_s}, skeleton_erl {skel: Σ_g C[s,g]² / L_s
    (NaN for L_s = 0)}, split_count, merge_count, n_neurons, merged_labels.
    """
    d = reference_node_data(segmentation, graph, voxel_size=voxel_size, offset=offset,
                            roi_begin=roi_begin, roi_shape=roi_shape, mode=mode)
    nodes, skel, label, zero, edges = d["nodes"], d["skel"], d["label"], d["zero"], d["edges"]

    # labels -> distinct skeletons on them (corrected: label-0 voxels never count as merges)
    skels_on = defaultdict(set)
    for n in nodes:
        if mode == "corrected" and zero[n]:
            continue
        skels_on[label[n]].add(skel[n])
    merged = {g for g, s in skels_on.items() if len(s) >= 2}
    merge_count = sum(len(s) * (len(s) - 1) // 2 for s in skels_on.values())

    def length(u, v):
        pu = [float(c) for c in graph.nodes[u]["position"]]
        pv = [float(c) for c in graph.nodes[v]["position"]]
        return math.sqrt(sum((pu[i] - pv[i]) ** 2 for i in range(3)))

    L_s = {s: 0.0 for s in set(skel.values())}
    C = defaultdict(float)
    split_count = 0
    for u, v in edges:
        s = skel[u]  # both ends share the component (official) / identity (corrected)
        ell = length(u, v)
        L_s[s] += ell
        is_split = label[u] != label[v]
        if mode == "corrected" and (zero[u] or zero[v]):
            is_split = True
        if is_split:
            split_count += 1
        elif label[u] not in merged:
            C[(s, label[u])] += ell
    L = sum(L_s.values())
    erl = _div(sum(c * c for c in C.values()), L)
    positive = [x for x in L_s.values() if x > 0]
    mean_len = sum(positive) / len(positive) if positive else 0.0
    nerl = _div(erl, mean_len) if not math.isnan(erl) else math.nan
    skel_erl = {}
    for s, ls in L_s.items():
        skel_erl[s] = _div(sum(c * c for (t, _), c in C.items() if t == s), ls)
    return {"erl": erl, "nerl": nerl, "skeleton_lengths": L_s, "skeleton_erl": skel_erl,
            "split_count": split_count, "merge_count": merge_count, "n_neurons": d["n_neurons"],
            "merged_labels": merged, "node_data": d}


def reference_scores(segmentation, graph, *, voxel_size, offset, roi_begin=None, roi_shape=None,
                     mode="official"):
    """All XPRESS scores of METRICS.md for a (z, y, x) segmentation and a networkx skeleton graph.

    Parameters follow ``xpress_fast.xpress_scores``: ``voxel_size``/``offset``/``roi_*`` in nm
    (z, y, x); ``roi_begin``/``roi_shape`` None -> the whole array. Returns a dict with keys
    ``SCORE_KEYS``; ``merge_count`` is the intended count.
    """
    e = reference_erl(segmentation, graph, voxel_size=voxel_size, offset=offset,
                      roi_begin=roi_begin, roi_shape=roi_shape, mode=mode)
    d = e["node_data"]
    # ground-truth raster under the nodes, written as the official code does: skeleton after
    # skeleton in component order, so a voxel shared by several skeletons ends up holding the
    # last one written
    truth = {}
    test = {}
    for s in sorted(set(d["skel"][n] for n in d["nodes"])):
        for n in d["nodes"]:
            if d["skel"][n] == s:
                truth[d["voxel"][n]] = s if mode == "official" else s + 1
                test[d["voxel"][n]] = d["label"][n]  # same for every node in the voxel
    pairs = [(truth[v], test[v]) for v in truth if truth[v] != 0]
    rv = _rand_voi_from_pairs(pairs)
    h = rv["h_joint"]
    if mode == "corrected" and h == 0 and rv["n"] >= 1:
        nvi_split = nvi_merge = 0.0
    else:
        nvi_split = _div(rv["voi_split"], h)
        nvi_merge = _div(rv["voi_merge"], h)
    xpress_voi = 1.0 - (nvi_split + nvi_merge) / 2.0
    xpress_rand = (rv["rand_split"] + rv["rand_merge"]) / 2.0
    return {
        "n_neurons": e["n_neurons"],
        "erl": e["erl"],
        "nerl": e["nerl"],
        "split_count": e["split_count"],
        "merge_count": e["merge_count"],
        "rand_split": rv["rand_split"],
        "rand_merge": rv["rand_merge"],
        "voi_split": rv["voi_split"],
        "voi_merge": rv["voi_merge"],
        "nvi_split": nvi_split,
        "nvi_merge": nvi_merge,
        "xpress_voi": xpress_voi,
        "xpress_rand": xpress_rand,
        "xpress_erl_voi": (e["nerl"] + xpress_voi) / 2.0,
        "xpress_erl_rand": (e["nerl"] + xpress_rand) / 2.0,
    }


def reference_rand_voi(seg, gt, ignore_labels=(0,)):
    """Dense Rand / VOI / adapted Rand by plain dict counting.

    Voxels whose ground-truth label is in ``ignore_labels`` are not counted (scikit-image's
    convention). Returns dict:
    ``rand_split = Σ n_ij² / Σ a_i²`` (a = ground-truth marginals), ``rand_merge = Σ n_ij² / Σ b_j²``
    (b = segmentation marginals), ``voi_split = H(seg | gt)``, ``voi_merge = H(gt | seg)`` in bits,
    ``nvi_* = voi_* / H(gt, seg)`` (NaN when that is 0), VOI NaN when no voxel is counted,
    and scikit-image's ``adapted_rand_error``/``adapted_rand_precision``/``adapted_rand_recall``
    computed exactly as ``skimage.metrics.adapted_rand_error(gt, seg)`` does (pair counts
    Σ x² − N; note skimage's "precision" divides by the *ground-truth* pair count and its "recall" by
    the segmentation's), plus ``n`` (counted voxels).
    """
    seg_l = np.asarray(seg).ravel().tolist()
    gt_l = np.asarray(gt).ravel().tolist()
    if len(seg_l) != len(gt_l):
        raise ValueError("seg and gt must have the same shape")
    ignore = {int(x) for x in ignore_labels}
    pairs = [(int(t), int(s)) for s, t in zip(seg_l, gt_l) if int(t) not in ignore]
    rv = _rand_voi_from_pairs(pairs)
    n = rv["n"]
    p2 = rv["sum_n2"] - n
    a2 = rv["sum_a2"] - n
    b2 = rv["sum_b2"] - n
    precision = _div(p2, a2)
    recall = _div(p2, b2)
    fscore = _div(p2, 0.5 * a2 + 0.5 * b2)
    # no counted voxel: VOI undefined (NaN), as scikit-image gives
    voi_split = rv["voi_split"] if n else math.nan
    voi_merge = rv["voi_merge"] if n else math.nan
    return {
        "n": n,
        "rand_split": rv["rand_split"],
        "rand_merge": rv["rand_merge"],
        "voi_split": voi_split,
        "voi_merge": voi_merge,
        "nvi_split": _div(voi_split, rv["h_joint"]) if n else math.nan,
        "nvi_merge": _div(voi_merge, rv["h_joint"]) if n else math.nan,
        "adapted_rand_error": 1.0 - fscore,
        "adapted_rand_precision": precision,
        "adapted_rand_recall": recall,
    }


def graph_from_arrays(node_ids, positions_xyz, edges):
    """A networkx graph as the challenge stores it: nodes in array order with ``position`` (x, y, z)."""
    g = nx.Graph()
    for nid, p in zip(np.asarray(node_ids).tolist(), np.asarray(positions_xyz).tolist()):
        g.add_node(nid, position=tuple(p))
    ids = np.asarray(node_ids).tolist()
    for a, b in np.asarray(edges).tolist():
        g.add_edge(ids[a], ids[b])
    return g
