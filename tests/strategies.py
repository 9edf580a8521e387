"""Shared case generators for the evaluator tests: the official fixtures and random skeleton cases.

A *case* is a dict with ``segmentation`` (z, y, x) labels, ``graph`` (networkx, nodes carry
``position`` = (x, y, z) nm, the challenge's format) and the keyword arguments ``kwargs``
(``voxel_size``, ``offset`` and optionally ``roi_begin``/``roi_shape``, nm z y x).
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
from hypothesis import strategies as st

from reference_metrics import COUNT_KEYS, SCORE_KEYS, graph_from_arrays

# When a property test fails, hypothesis's pytest plugin imports hypothesis.extra._patching, which
# pulls in a module that emits a DeprecationWarning (mypy_extensions.TypedDict); under the
# project's filterwarnings = error that turns every hypothesis failure into a pytest INTERNALERROR
# with no report. Import it once here, warnings silenced, so failures are reported normally.
try:  # pragma: no cover - depends on the installed hypothesis
    import warnings as _warnings

    with _warnings.catch_warnings():
        _warnings.simplefilter("ignore")
        import hypothesis.extra._patching  # noqa: F401
except ImportError:  # pragma: no cover
    pass

OFFICIAL_CASES = "fixtures/official_cases.h5"


def load_official_cases(shared_dir):
    """The seven cases of ``../shared/fixtures/official_cases.h5`` as (name, case, official dict)."""
    import h5py

    out = []
    with h5py.File(shared_dir / OFFICIAL_CASES, "r") as f:
        for name in sorted(f):
            g = f[name]
            seg = g["segmentation"][()]
            kwargs = {
                "voxel_size": tuple(int(v) for v in g["segmentation"].attrs["resolution"]),
                "offset": tuple(int(v) for v in g["segmentation"].attrs["offset"]),
            }
            if "roi_begin" in g.attrs:
                kwargs["roi_begin"] = tuple(int(v) for v in g.attrs["roi_begin"])
                kwargs["roi_shape"] = tuple(int(v) for v in g.attrs["roi_shape"])
            graph = graph_from_arrays(g["node_ids"][()], g["node_positions_xyz_nm"][()], g["edges"][()])
            official = {k: g["official"].attrs[k].item() for k in g["official"].attrs}
            official["merge_count"] = official["merge_count_intended"]
            out.append((f"{name}-{g.attrs['kind']}", {"segmentation": seg, "graph": graph,
                                                      "kwargs": kwargs}, official))
    return out


def assert_scores_match(got, want, *, rel=1e-9, abs_=0.0, erl_rel=None, context=""):
    """Counts exactly; floats within ``rel`` relative (or ``abs_``); NaN iff NaN."""
    for key in SCORE_KEYS:
        g, w = float(got[key]), float(want[key])
        if key in COUNT_KEYS:
            assert got[key] == want[key], f"{context}{key}: got {got[key]}, want {want[key]}"
            continue
        if math.isnan(w) or math.isnan(g):
            assert math.isnan(w) and math.isnan(g), f"{context}{key}: got {g}, want {w}"
            continue
        r = erl_rel if (erl_rel is not None and key == "erl") else rel
        assert math.isclose(g, w, rel_tol=r, abs_tol=abs_), f"{context}{key}: got {g!r}, want {w!r}"


# ----------------------------------------------------------------------------------------------
# random cases
# ----------------------------------------------------------------------------------------------

LABEL_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)


def random_case(rng, *, shape=(6, 7, 8), voxel_size=(4, 3, 5), offset=(8, -6, 10), n_skeletons=5,
                nodes_per=(1, 12), n_labels=4, zero_fraction=0.2, roi=True, integer_positions=False,
                dtype=np.uint64, big_labels=False, shuffle=True, margin=1, dup_fraction=0.15, step=0.7):
    """A random case: a blocky segmentation and random-walk skeletons that leave and re-enter it.

    Nodes wander up to ``margin`` voxels outside the array (so ROI crops cut them), some nodes
    are duplicated into the same voxel (zero-length pieces, shared voxels), some sit on label 0.
    """
    shape = tuple(shape)
    vs = np.asarray(voxel_size, dtype=np.int64)
    off = np.asarray(offset, dtype=np.int64)
    info = np.iinfo(dtype)
    hi = min(int(info.max), 2**64 - 1)
    if big_labels and hi > 2**60:
        pool = [hi - i for i in range(n_labels)] + [2**53 + 1, 2**63 + 7][:max(0, n_labels)]
        pool = [p for p in pool if p <= hi]
    else:
        pool = list(range(1, min(hi, n_labels + 1) + 1))
    # segmentation: a few random label values placed in random blocks, plus zeros
    seg = np.empty(shape, dtype=dtype)
    choice = rng.integers(0, len(pool), size=shape)
    seg[...] = np.asarray(pool, dtype=dtype)[choice]
    # smooth a bit: copy along x so segments are runs, not salt
    for x in range(1, shape[2]):
        keep = rng.random(shape[:2]) < 0.6
        seg[:, :, x][keep] = seg[:, :, x - 1][keep]
    seg[rng.random(shape) < zero_fraction] = 0

    kwargs = {"voxel_size": tuple(int(v) for v in vs), "offset": tuple(int(v) for v in off)}
    box_lo, box_hi = off.astype(np.float64), (off + np.asarray(shape) * vs).astype(np.float64)
    if roi:
        b = [int(rng.integers(0, s // 2 + 1)) for s in shape]
        e = [int(rng.integers(bb + 1, s + 1)) for bb, s in zip(b, shape)]
        kwargs["roi_begin"] = tuple(int(off[i] + b[i] * vs[i]) for i in range(3))
        kwargs["roi_shape"] = tuple(int((e[i] - b[i]) * vs[i]) for i in range(3))
        box_lo = np.asarray(kwargs["roi_begin"], dtype=np.float64)
        box_hi = box_lo + np.asarray(kwargs["roi_shape"], dtype=np.float64)
    # nodes may wander ``margin`` voxels beyond the ROI / array (never below -margin voxels of it)
    lo_nm = box_lo - margin * vs
    hi_nm = box_hi + margin * vs

    g = nx.Graph()
    node_id = 0
    for _ in range(n_skeletons):
        n = int(rng.integers(nodes_per[0], nodes_per[1] + 1))
        p = box_lo + rng.random(3) * (box_hi - box_lo)  # start inside
        prev = None
        for _ in range(n):
            if prev is not None and rng.random() < dup_fraction:
                q = p.copy()  # zero-length edge, same voxel
            elif prev is None:
                q = p
            else:
                q = p + rng.normal(0, step, size=3) * vs
            q = np.clip(q, lo_nm, hi_nm - 1e-3)
            if integer_positions:
                q = np.trunc(q)
            nid = int(node_id * 7 + 3)
            g.add_node(nid, position=tuple(float(v) for v in q[::-1]))
            if prev is not None:
                g.add_edge(prev, nid)
            prev = nid
            node_id += 1
            p = q
    # a couple of isolated nodes
    for _ in range(int(rng.integers(0, 3))):
        q = lo_nm + rng.random(3) * (hi_nm - lo_nm)
        g.add_node(int(node_id * 7 + 3), position=tuple(float(v) for v in q[::-1]))
        node_id += 1
    if shuffle:
        g = shuffled_graph(g, rng)
    return {"segmentation": seg, "graph": g, "kwargs": kwargs}


def shuffled_graph(g, rng):
    """The same graph with nodes and edges inserted in a random order."""
    nodes = list(g.nodes(data=True))
    edges = list(g.edges)
    rng.shuffle(nodes)
    rng.shuffle(edges)
    h = nx.Graph()
    h.add_nodes_from(nodes)
    h.add_edges_from((v, u) if rng.random() < 0.5 else (u, v) for u, v in edges)
    return h


@st.composite
def cases(draw, dtypes=LABEL_DTYPES):
    """Hypothesis strategy of random cases (seeded numpy RNG drawn by hypothesis)."""
    seed = draw(st.integers(0, 2**32 - 1))
    dtype = draw(st.sampled_from(dtypes))
    rng = np.random.default_rng(seed)
    shape = tuple(draw(st.integers(2, 7)) for _ in range(3))
    return random_case(
        rng, shape=shape,
        n_skeletons=draw(st.integers(1, 6)),
        n_labels=draw(st.integers(1, 5)),
        zero_fraction=draw(st.sampled_from([0.0, 0.1, 0.4])),
        roi=draw(st.booleans()),
        integer_positions=draw(st.booleans()),
        dtype=dtype,
        big_labels=draw(st.booleans()),
        shuffle=True,
    )
