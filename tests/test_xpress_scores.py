"""xpress_fast.xpress_scores / erl / SkeletonIndex against the plain-Python reference of METRICS.md.

Agreement required: counts exactly; floats within 1e-9 relative (1e-12 absolute near 0, where the
implementation clamps a VOI of -1e-17 to 0); NaN exactly where the reference is NaN. The official
fixtures (scored by the official evaluator) within 1e-6 (ERL relative: it is in nm and the
official code sums it in float32).
"""
from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_metrics import COUNT_KEYS, SCORE_KEYS, reference_erl, reference_node_data, reference_scores
from strategies import LABEL_DTYPES, assert_scores_match, cases, load_official_cases, random_case, shuffled_graph

import xpress_fast as xf  # noqa: E402  (the compiled modules are required: a broken build fails here)
import xpress_fast.metrics  # noqa: E402,F401
from xpress_fast import SkeletonIndex, Skeletons, erl, xpress_scores  # noqa: E402

MODES = ("official", "corrected")


def fast(case, mode, **extra):
    return xpress_scores(case["segmentation"], case["graph"], mode=mode, **case["kwargs"], **extra).as_dict()


def ref(case, mode):
    return reference_scores(case["segmentation"], case["graph"], mode=mode, **case["kwargs"])


def check_against_reference(case, mode, context=""):
    assert_scores_match(fast(case, mode), ref(case, mode), rel=1e-9, abs_=1e-12, context=f"{context}[{mode}] ")


# ---------------------------------------------------------------------------------------------
# the official fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_cases(shared_dir):
    return load_official_cases(shared_dir)


def test_official_fixtures_reproduced(official_cases):
    for name, case, official in official_cases:
        got = fast(case, "official")
        assert_scores_match(got, official, rel=0, abs_=1e-6, erl_rel=1e-6, context=f"{name}: ")


@pytest.mark.parametrize("mode", MODES)
def test_official_fixtures_match_reference_exactly(official_cases, mode):
    for name, case, _ in official_cases:
        check_against_reference(case, mode, context=name)


def test_official_fixtures_through_skeletons_object(official_cases):
    # a Skeletons object gives the same numbers as the graph it came from
    for name, case, _ in official_cases[:3]:
        sk = Skeletons.from_networkx(case["graph"])
        a = xpress_scores(case["segmentation"], sk, **case["kwargs"]).as_dict()
        b = fast(case, "official")
        assert_scores_match(a, b, rel=0, context=f"{name}: ")


# ---------------------------------------------------------------------------------------------
# random cases (hypothesis) against the reference
# ---------------------------------------------------------------------------------------------

@given(case=cases())
@settings(max_examples=150)
def test_random_cases_match_reference_official(case):
    check_against_reference(case, "official")


@given(case=cases())
@settings(max_examples=150)
def test_random_cases_match_reference_corrected(case):
    check_against_reference(case, "corrected")


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=25)
def test_scores_do_not_depend_on_edge_direction_or_edge_order(seed):
    # node order matters (component numbering, later writes win); edge order and direction do not
    rng = np.random.default_rng(seed)
    case = random_case(rng, n_skeletons=4, shuffle=False)
    g = case["graph"]
    h = nx.Graph()
    h.add_nodes_from(g.nodes(data=True))
    edges = list(g.edges)
    rng.shuffle(edges)
    h.add_edges_from((v, u) for u, v in edges)
    for mode in MODES:
        assert_scores_match(fast(dict(case, graph=h), mode), fast(case, mode), rel=1e-12, abs_=1e-12)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=25)
def test_shuffled_node_order_matches_reference(seed):
    rng = np.random.default_rng(seed)
    case = random_case(rng, n_skeletons=5, shuffle=False)
    shuffled = dict(case, graph=shuffled_graph(case["graph"], rng))
    for mode in MODES:
        check_against_reference(shuffled, mode, context=f"seed {seed} ")


@pytest.mark.parametrize("seed", range(4))
def test_larger_cases_match_reference(seed):
    # 20x25x30 voxels, 40 skeletons of up to 60 nodes, up to 60 labels: big hash tables, long
    # merge lists, many shared voxels
    rng = np.random.default_rng(1000 + seed)
    case = random_case(rng, shape=(20, 25, 30), n_skeletons=40, nodes_per=(1, 60),
                       n_labels=int(rng.integers(2, 60)), zero_fraction=[0.0, 0.05, 0.3, 0.1][seed],
                       roi=bool(seed % 2), dtype=LABEL_DTYPES[2 * seed + 1], big_labels=seed == 3, step=1.0)
    for mode in MODES:
        check_against_reference(case, mode, context=f"seed {seed} ")


def test_as_dict_is_plain_python():
    import json

    case, _ = HAND["zero", "official"]
    d = xpress_scores(case["segmentation"], case["graph"], **case["kwargs"]).as_dict()
    assert set(d) == set(SCORE_KEYS)
    for key in COUNT_KEYS:
        assert type(d[key]) is int, key
    for key in set(SCORE_KEYS) - set(COUNT_KEYS):
        assert type(d[key]) is float, key
    assert json.loads(json.dumps(d)) == d


# ---------------------------------------------------------------------------------------------
# hand-computed cases (expected values derived in the comments; the reference must agree too)
# ---------------------------------------------------------------------------------------------

def _graph(nodes, edges):
    """nodes: [(id, (x, y, z))] in order; edges: [(id, id)]."""
    g = nx.Graph()
    for n, p in nodes:
        g.add_node(n, position=p)
    g.add_edges_from(edges)
    return g


def _line(ids, xs, y=1.0, z=1.0):
    return [(i, (float(x), y, z)) for i, x in zip(ids, xs)]


VS2 = {"voxel_size": (2, 2, 2), "offset": (0, 0, 0)}
NAN = math.nan


def _hand_cases():
    out = {}
    # two skeletons of 4 nodes along x (2 nm apart), each on its own label: perfect.
    # ERL = (6^2 + 6^2) / 12 = 6, nERL = 6 / 6 = 1. Official: skeleton A is truth index 0 (left
    # out), B's 4 voxels are one (truth, test) pair -> Rand 1, H(T,S) = 0 -> nvi NaN.
    seg = np.array([[[1, 1, 1, 1, 2, 2, 2, 2]]], dtype=np.uint64)
    g = _graph(_line("abcd", [1, 3, 5, 7]) + _line("efgh", [9, 11, 13, 15]),
               [("a", "b"), ("b", "c"), ("c", "d"), ("e", "f"), ("f", "g"), ("g", "h")])
    base = dict(n_neurons=2, erl=6.0, nerl=1.0, split_count=0, merge_count=0, rand_split=1.0, rand_merge=1.0,
                voi_split=0.0, voi_merge=0.0)
    out["perfect", "official"] = ({"segmentation": seg, "graph": g, "kwargs": VS2},
                                  dict(base, nvi_split=NAN, nvi_merge=NAN, xpress_voi=NAN, xpress_rand=1.0,
                                       xpress_erl_voi=NAN, xpress_erl_rand=1.0))
    out["perfect", "corrected"] = ({"segmentation": seg, "graph": g, "kwargs": VS2},
                                   dict(base, nvi_split=0.0, nvi_merge=0.0, xpress_voi=1.0, xpress_rand=1.0,
                                        xpress_erl_voi=1.0, xpress_erl_rand=1.0))
    # the same two skeletons merged into label 1: ERL 0, one merge. Corrected Rand/VOI: pairs
    # (1,1) x4, (2,1) x4: rand_split 32/32, rand_merge 32/64; H(T,S) = 1, H(T) = 1, H(S) = 0.
    seg_m = np.ones((1, 1, 8), dtype=np.uint64)
    base = dict(n_neurons=2, erl=0.0, nerl=0.0, split_count=0, merge_count=1)
    out["merge", "official"] = ({"segmentation": seg_m, "graph": g, "kwargs": VS2},
                                dict(base, rand_split=1.0, rand_merge=1.0, voi_split=0.0, voi_merge=0.0,
                                     nvi_split=NAN, nvi_merge=NAN, xpress_voi=NAN, xpress_rand=1.0,
                                     xpress_erl_voi=NAN, xpress_erl_rand=0.5))
    out["merge", "corrected"] = ({"segmentation": seg_m, "graph": g, "kwargs": VS2},
                                 dict(base, rand_split=1.0, rand_merge=0.5, voi_split=0.0, voi_merge=1.0,
                                      nvi_split=0.0, nvi_merge=1.0, xpress_voi=0.5, xpress_rand=0.75,
                                      xpress_erl_voi=0.25, xpress_erl_rand=0.375))
    # one skeleton of 8 nodes split in the middle: C = 6, 6; L = 14; ERL = 72/14, nERL = ERL/14.
    # Official: its only component is index 0 -> nothing counted: Rand NaN, VOI 0, nvi NaN.
    # Corrected: truth 1 everywhere, test 4 x label 1, 4 x label 2: rand_split .5, voi_split 1.
    g1 = _graph(_line(range(8), [1, 3, 5, 7, 9, 11, 13, 15]), [(i, i + 1) for i in range(7)])
    e = 72 / 14
    base = dict(n_neurons=1, erl=e, nerl=e / 14, split_count=1, merge_count=0)
    out["split", "official"] = ({"segmentation": seg, "graph": g1, "kwargs": VS2},
                                dict(base, rand_split=NAN, rand_merge=NAN, voi_split=0.0, voi_merge=0.0,
                                     nvi_split=NAN, nvi_merge=NAN, xpress_voi=NAN, xpress_rand=NAN,
                                     xpress_erl_voi=NAN, xpress_erl_rand=NAN))
    out["split", "corrected"] = ({"segmentation": seg, "graph": g1, "kwargs": VS2},
                                 dict(base, rand_split=0.5, rand_merge=1.0, voi_split=1.0, voi_merge=0.0,
                                      nvi_split=1.0, nvi_merge=0.0, xpress_voi=0.5, xpress_rand=0.75,
                                      xpress_erl_voi=(e / 14 + 0.5) / 2, xpress_erl_rand=(e / 14 + 0.75) / 2))
    # a neuron leaving and re-entering the ROI (node 4 steps out in y), all on label 1.
    # Cropped edges 0-1, 1-2, 2-3, 5-6, 6-7 (2 nm each, 10 nm). Official: two components on one
    # label -> a merge, ERL 0. Corrected: one neuron, ERL = 10^2 / 10 = 10, nERL 1.
    seg_r = np.ones((1, 2, 8), dtype=np.uint64)
    nodes = [(i, (2.0 * i + 1, 3.0 if i == 4 else 1.0, 1.0)) for i in range(8)]
    g_r = _graph(nodes, [(i, i + 1) for i in range(7)])
    kw_r = dict(VS2, roi_begin=(0, 0, 0), roi_shape=(2, 2, 16))
    out["reenter", "official"] = ({"segmentation": seg_r, "graph": g_r, "kwargs": kw_r},
                                  dict(n_neurons=2, erl=0.0, nerl=0.0, split_count=0, merge_count=1,
                                       rand_split=1.0, rand_merge=1.0, voi_split=0.0, voi_merge=0.0,
                                       nvi_split=NAN, nvi_merge=NAN, xpress_voi=NAN, xpress_rand=1.0,
                                       xpress_erl_voi=NAN, xpress_erl_rand=0.5))
    out["reenter", "corrected"] = ({"segmentation": seg_r, "graph": g_r, "kwargs": kw_r},
                                   dict(n_neurons=1, erl=10.0, nerl=1.0, split_count=0, merge_count=0,
                                        rand_split=1.0, rand_merge=1.0, voi_split=0.0, voi_merge=0.0,
                                        nvi_split=0.0, nvi_merge=0.0, xpress_voi=1.0, xpress_rand=1.0,
                                        xpress_erl_voi=1.0, xpress_erl_rand=1.0))
    # label 0 shared by two skeletons. seg x-voxels [1, 0, 2, 2]. A: a0 (v0, label 1), a1 and a2
    # (v1, label 0), a3 (v2, label 2); B: b0 (v1, label 0), b1 (v3, label 2). Edges a0-a1 (2 nm),
    # a1-a2 (0.5), a2-a3 (1.5), b0-b1 (3.1).
    # Official: a1, a2, b0 share fresh label f (A and B on it: merge), label 2 holds A and B
    # (merge): merge_count 2; a1-a2 merged, the others split: split 3, ERL 0. Truth raster: v1
    # holds b0's index 1 (later write wins), v3 index 1; A's voxels index 0 (left out). Pairs
    # (1,f), (1,2): rand_split 2/4, rand_merge 1, H(T,S) = 1, H(T) = 0, H(S) = 1.
    # Corrected: f never a merge (merge_count 1), every edge touching label 0 splits (split 4),
    # truth A = 1, B = 2: pairs (1,1), (2,f), (1,2), (2,2): rand_split 4/8, rand_merge 4/6,
    # H(T,S) = 2, H(T) = 1, H(S) = 1.5 -> voi 1 / 0.5, nvi .5 / .25.
    seg_z = np.array([[[1, 0, 2, 2]]], dtype=np.uint8)
    g_z = _graph([("a0", (1.0, 1.0, 1.0)), ("a1", (3.0, 1.0, 1.0)), ("a2", (3.5, 1.0, 1.0)),
                  ("a3", (5.0, 1.0, 1.0)), ("b0", (3.9, 1.0, 1.0)), ("b1", (7.0, 1.0, 1.0))],
                 [("a0", "a1"), ("a1", "a2"), ("a2", "a3"), ("b0", "b1")])
    out["zero", "official"] = ({"segmentation": seg_z, "graph": g_z, "kwargs": VS2},
                               dict(n_neurons=2, erl=0.0, nerl=0.0, split_count=3, merge_count=2,
                                    rand_split=0.5, rand_merge=1.0, voi_split=1.0, voi_merge=0.0,
                                    nvi_split=1.0, nvi_merge=0.0, xpress_voi=0.5, xpress_rand=0.75,
                                    xpress_erl_voi=0.25, xpress_erl_rand=0.375))
    out["zero", "corrected"] = ({"segmentation": seg_z, "graph": g_z, "kwargs": VS2},
                                dict(n_neurons=2, erl=0.0, nerl=0.0, split_count=4, merge_count=1,
                                     rand_split=0.5, rand_merge=4 / 6, voi_split=1.0, voi_merge=0.5,
                                     nvi_split=0.5, nvi_merge=0.25, xpress_voi=0.625, xpress_rand=(0.5 + 4 / 6) / 2,
                                     xpress_erl_voi=0.3125, xpress_erl_rand=(0.5 + 4 / 6) / 4))
    # a zero-length piece beside a real one: A = two nodes at the same point (label 1), B = two
    # nodes 2 nm apart (label 2). L = 2, C[B] = 2: ERL 2; nERL = 2 / mean{L_s > 0} = 1.
    g_0 = _graph([("a", (1.0, 1.0, 1.0)), ("a'", (1.0, 1.0, 1.0)), ("b", (5.0, 1.0, 1.0)),
                  ("b'", (7.0, 1.0, 1.0))], [("a", "a'"), ("b", "b'")])
    seg_0 = np.array([[[1, 1, 2, 2]]], dtype=np.uint16)
    for mode in MODES:
        out["zero_length", mode] = ({"segmentation": seg_0, "graph": g_0, "kwargs": VS2},
                                    dict(n_neurons=2, erl=2.0, nerl=1.0, split_count=0, merge_count=0))
    # only zero-length pieces: ERL = 0 / 0 -> NaN (quirk 5), in both modes, no crash
    g_00 = _graph([("a", (1.0, 1.0, 1.0)), ("a'", (1.2, 1.0, 1.0))], [("a", "a'")])
    g_00.nodes["a'"]["position"] = (1.0, 1.0, 1.0)
    for mode in MODES:
        out["all_zero_length", mode] = ({"segmentation": seg_0, "graph": g_00, "kwargs": VS2},
                                        dict(n_neurons=1, erl=NAN, nerl=NAN, split_count=0, merge_count=0,
                                             xpress_erl_rand=NAN, xpress_erl_voi=NAN))
    # isolated nodes only: no edge at all -> ERL NaN; corrected Rand over 2 skeletons on 2 labels
    g_iso = _graph([("a", (1.0, 1.0, 1.0)), ("b", (5.0, 1.0, 1.0))], [])
    out["isolated", "corrected"] = ({"segmentation": seg_0, "graph": g_iso, "kwargs": VS2},
                                    dict(n_neurons=2, erl=NAN, nerl=NAN, split_count=0, merge_count=0,
                                         rand_split=1.0, rand_merge=1.0, nvi_split=0.0, nvi_merge=0.0))
    # truncation toward zero (not floor) at a negative ROI start: offset x = -4 nm; a node at
    # x = -4.5 truncates to -4 and lies inside (floor would put it outside); x = -5.5 -> -5 is out.
    seg_n = np.array([[[3, 3]]], dtype=np.int32)
    g_n = _graph([("in", (-4.5, 1.0, 1.0)), ("in2", (-1.0, 1.0, 1.0)), ("out", (-5.5, 1.0, 1.0))],
                 [("in", "in2"), ("in", "out")])
    kw_n = {"voxel_size": (2, 2, 2), "offset": (0, 0, -4)}
    for mode in MODES:
        out["trunc", mode] = ({"segmentation": seg_n, "graph": g_n, "kwargs": kw_n},
                              dict(n_neurons=1, erl=3.5, nerl=1.0, split_count=0, merge_count=0))
    # merge of many skeletons on one label: 5 two-node skeletons all on label 7: C(5, 2) = 10
    nodes = []
    edges = []
    for k in range(5):
        nodes += [(f"s{k}a", (1.0 + 2 * k, 1.0, 1.0)), (f"s{k}b", (1.5 + 2 * k, 1.0, 1.0))]
        edges.append((f"s{k}a", f"s{k}b"))
    seg_7 = np.full((1, 1, 5), 7, dtype=np.uint64)
    for mode in MODES:
        out["merge5", mode] = ({"segmentation": seg_7, "graph": _graph(nodes, edges), "kwargs": VS2},
                               dict(n_neurons=5, erl=0.0, nerl=0.0, split_count=0, merge_count=10))
    return out


HAND = _hand_cases()


@pytest.mark.parametrize("key", list(HAND), ids=[f"{a}-{b}" for a, b in HAND])
def test_hand_cases(key):
    case, expected = HAND[key]
    mode = key[1]
    for who, got in (("reference", ref(case, mode)), ("xpress_fast", fast(case, mode))):
        for name, want in expected.items():
            g = got[name]
            if name in COUNT_KEYS:
                assert g == want, f"{who} {name}: {g} != {want}"
            elif math.isnan(want):
                assert math.isnan(g), f"{who} {name}: {g} is not NaN"
            else:
                assert math.isclose(g, want, rel_tol=1e-12, abs_tol=1e-12), f"{who} {name}: {g} != {want}"


# ---------------------------------------------------------------------------------------------
# dtypes, big labels, positions
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", LABEL_DTYPES)
def test_every_label_dtype_gives_the_same_scores(dtype):
    rng = np.random.default_rng(11)
    case = random_case(rng, n_skeletons=6, n_labels=5, dtype=np.uint64)
    want = {m: fast(case, m) for m in MODES}
    cast = dict(case, segmentation=case["segmentation"].astype(dtype))
    for mode in MODES:
        assert_scores_match(fast(cast, mode), want[mode], rel=0, context=f"{np.dtype(dtype).name}: ")
        check_against_reference(cast, mode)


@pytest.mark.parametrize("labels", [(2**64 - 1, 2**64 - 2), (2**53, 2**53 + 1), (2**63, 2**63 + 1)])
def test_labels_near_the_top_of_uint64_are_exact(labels):
    # two skeletons on two labels that float64 cannot tell apart: no merge, perfect ERL;
    # a label-0 hole with max label 2**64 - 1 must still get a fresh segment of its own
    a, b = labels
    seg = np.array([[[a, a, 0, b, b]]], dtype=np.uint64)
    g = _graph(_line("pq", [1, 3]) + _line("r", [5]) + _line("st", [7, 9]), [("p", "q"), ("s", "t"), ("q", "r")])
    case = {"segmentation": seg, "graph": g, "kwargs": VS2}
    for mode in MODES:
        got = fast(case, mode)
        want = ref(case, mode)
        assert got["merge_count"] == 0
        assert_scores_match(got, want, rel=1e-12, abs_=1e-12)


@given(case=cases(dtypes=(np.uint64,)))
@settings(max_examples=20)
def test_integer_positions_as_python_ints(case):
    # positions stored as ints (some challenge graphs do) score like the same floats
    g = case["graph"].copy()
    for n in g.nodes:
        g.nodes[n]["position"] = tuple(int(v) for v in g.nodes[n]["position"])
    as_int = dict(case, graph=g)
    for mode in MODES:
        check_against_reference(as_int, mode)


@given(seed=st.integers(0, 2**32 - 1), begin_only=st.booleans())
@settings(max_examples=20)
def test_self_loops_and_roi_begin_without_shape(seed, begin_only):
    # a self-loop edge (networkx allows them) is a zero-length correct edge; roi_begin alone
    # means "from there to the end of the array"
    rng = np.random.default_rng(seed)
    case = random_case(rng, n_skeletons=4, roi=True)
    g = case["graph"].copy()
    nodes = list(g.nodes)
    for i in rng.choice(len(nodes), size=min(3, len(nodes)), replace=False):
        g.add_edge(nodes[i], nodes[i])
    kwargs = dict(case["kwargs"])
    if begin_only:
        kwargs.pop("roi_shape")
    other = dict(case, graph=g, kwargs=kwargs)
    for mode in MODES:
        check_against_reference(other, mode)


def test_f_order_and_strided_segmentations_agree():
    rng = np.random.default_rng(12)
    case = random_case(rng, shape=(5, 6, 7), n_skeletons=6)
    want = fast(case, "official")
    f_order = dict(case, segmentation=np.asfortranarray(case["segmentation"]))
    assert_scores_match(fast(f_order, "official"), want, rel=0)
    big = np.zeros((10, 6, 14), dtype=case["segmentation"].dtype)
    big[::2, :, ::2] = case["segmentation"]
    strided = dict(case, segmentation=big[::2, :, ::2])
    assert not strided["segmentation"].flags.c_contiguous
    assert_scores_match(fast(strided, "official"), want, rel=0)


# ---------------------------------------------------------------------------------------------
# erl(), SkeletonIndex, locations, inputs untouched
# ---------------------------------------------------------------------------------------------

@given(case=cases())
@settings(max_examples=30)
def test_erl_result_matches_reference(case):
    for mode in MODES:
        res = erl(case["segmentation"], case["graph"], mode=mode, **case["kwargs"])
        want = reference_erl(case["segmentation"], case["graph"], mode=mode, **case["kwargs"])
        for name in ("erl", "nerl"):
            if math.isnan(want[name]):
                assert math.isnan(getattr(res, name))
            else:
                assert math.isclose(getattr(res, name), want[name], rel_tol=1e-9, abs_tol=1e-12)
        # per-skeleton lengths and ERLs; official ids are the cropped components numbered by first
        # node (as the reference's); corrected: compare as multisets
        ref_ids = sorted(want["skeleton_lengths"])
        ref_len = [want["skeleton_lengths"][s] for s in ref_ids]
        ref_serl = [want["skeleton_erl"][s] for s in ref_ids]
        assert len(res.skeleton_ids) == len(ref_ids) == want["n_neurons"]
        if mode == "corrected":
            order = np.lexsort((ref_serl, ref_len))
            ref_len, ref_serl = np.asarray(ref_len)[order], np.asarray(ref_serl)[order]
            o2 = np.lexsort((np.nan_to_num(res.skeleton_erl), res.skeleton_lengths))
            got_len, got_serl = np.asarray(res.skeleton_lengths)[o2], np.asarray(res.skeleton_erl)[o2]
        else:
            np.testing.assert_array_equal(res.skeleton_ids, np.arange(len(ref_ids)))
            got_len, got_serl = np.asarray(res.skeleton_lengths), np.asarray(res.skeleton_erl)
        np.testing.assert_allclose(got_len, ref_len, rtol=1e-9, atol=1e-12)
        ref_serl = np.asarray(ref_serl, dtype=float)
        pos = np.asarray(ref_len) > 0
        np.testing.assert_allclose(got_serl[pos], ref_serl[pos], rtol=1e-9, atol=1e-12)
        # a skeleton without length has no run: 0 (documented) or NaN, never anything else
        assert np.all((got_serl[~pos] == 0) | np.isnan(got_serl[~pos]))


@given(case=cases())
@settings(max_examples=30)
def test_skeleton_index_score_node_labels_equals_score(case):
    seg = case["segmentation"]
    for mode in MODES:
        index = SkeletonIndex(case["graph"], shape=seg.shape, mode=mode, **case["kwargs"])
        # node_voxels: the voxels of the ROI's nodes, in graph order, as the reference finds them
        d = reference_node_data(seg, case["graph"], mode=mode, **case["kwargs"])
        assert index.node_voxels.shape == (len(d["nodes"]), 3)
        np.testing.assert_array_equal(index.node_voxels, np.asarray([d["voxel"][n] for n in d["nodes"]],
                                                                    dtype=np.int64).reshape(-1, 3))
        a = index.score(seg).as_dict()
        labels = seg[tuple(np.asarray(index.node_voxels).T)]
        b = index.score_node_labels(labels).as_dict()
        assert_scores_match(a, b, rel=0)
        assert_scores_match(a, ref(case, mode), rel=1e-9, abs_=1e-12)


def test_skeleton_index_scores_many_segmentations():
    rng = np.random.default_rng(13)
    case = random_case(rng, shape=(6, 6, 6), n_skeletons=6, roi=True)
    index = SkeletonIndex(case["graph"], shape=(6, 6, 6), **case["kwargs"])
    for k in range(4):
        seg = rng.integers(0, 4, size=(6, 6, 6)).astype(np.uint32)
        other = dict(case, segmentation=seg)
        assert_scores_match(index.score(seg).as_dict(), ref(other, "official"), rel=1e-9, abs_=1e-12,
                            context=f"segmentation {k}: ")


@given(case=cases())
@settings(max_examples=30)
def test_split_and_merge_locations(case):
    seg = case["segmentation"]
    for mode in MODES:
        res = xpress_scores(seg, case["graph"], mode=mode, **case["kwargs"])
        e = reference_erl(seg, case["graph"], mode=mode, **case["kwargs"])
        d = e["node_data"]
        g = case["graph"]
        # split locations: exactly the reference's split edges, with zyx positions
        want_splits = set()
        for u, v in d["edges"]:
            if d["label"][u] != d["label"][v] or (mode == "corrected" and (d["zero"][u] or d["zero"][v])):
                want_splits.add(frozenset((u, v)))
        sl = res.split_locations
        got_splits = {frozenset(p) for p in np.asarray(sl["node_ids"]).tolist()}
        assert len(sl["node_ids"]) == res.split_count == len(want_splits)
        assert got_splits == want_splits
        for (u, v), pos in zip(np.asarray(sl["node_ids"]).tolist(), np.asarray(sl["positions"])):
            np.testing.assert_array_equal(pos[0], np.asarray(g.nodes[u]["position"])[::-1])
            np.testing.assert_array_equal(pos[1], np.asarray(g.nodes[v]["position"])[::-1])
        # merge locations: one per (label, pair of skeletons), at the closest pair of their nodes
        on = {}
        for n in d["nodes"]:
            if mode == "corrected" and d["zero"][n]:
                continue
            on.setdefault(d["label"][n], {}).setdefault(d["skel"][n], []).append(n)
        want = []
        for lab, by_skel in on.items():
            sk = sorted(by_skel)
            for i in range(len(sk)):
                for j in range(i + 1, len(sk)):
                    best = min(math.dist(g.nodes[a]["position"], g.nodes[b]["position"])
                               for a in by_skel[sk[i]] for b in by_skel[sk[j]])
                    want.append(best)
        ml = res.merge_locations
        assert len(ml["distance"]) == res.merge_count == len(want)
        np.testing.assert_allclose(sorted(np.asarray(ml["distance"]).tolist()), sorted(want), rtol=1e-9, atol=1e-9)
        for (a, b), dist in zip(np.asarray(ml["node_ids"]).tolist(), np.asarray(ml["distance"])):
            assert math.isclose(math.dist(g.nodes[a]["position"], g.nodes[b]["position"]), dist,
                                rel_tol=1e-9, abs_tol=1e-9)
            assert d["label"][a] == d["label"][b]
            assert d["skel"][a] != d["skel"][b]


def test_inputs_are_not_modified_and_read_only_input_works():
    rng = np.random.default_rng(14)
    case = random_case(rng, n_skeletons=6, zero_fraction=0.4)
    seg = case["segmentation"]
    before = seg.copy()
    positions = {n: tuple(p["position"]) for n, p in case["graph"].nodes(data=True)}
    edges = list(case["graph"].edges)
    seg.flags.writeable = False
    for mode in MODES:
        xpress_scores(seg, case["graph"], mode=mode, **case["kwargs"])
        erl(seg, case["graph"], mode=mode, **case["kwargs"])
    np.testing.assert_array_equal(seg, before)
    assert {n: tuple(p["position"]) for n, p in case["graph"].nodes(data=True)} == positions
    assert list(case["graph"].edges) == edges
    sk = Skeletons.from_networkx(case["graph"])
    pos_before, edges_before = sk.positions.copy(), sk.edges.copy()
    xpress_scores(seg, sk, **case["kwargs"])
    np.testing.assert_array_equal(sk.positions, pos_before)
    np.testing.assert_array_equal(sk.edges, edges_before)


def test_no_node_in_roi_gives_nan_not_a_crash():
    seg = np.ones((2, 2, 2), dtype=np.uint64)
    g = _graph([("a", (100.0, 100.0, 100.0)), ("b", (101.0, 100.0, 100.0))], [("a", "b")])
    case = {"segmentation": seg, "graph": g, "kwargs": VS2}
    for mode in MODES:
        got = fast(case, mode)
        assert got["n_neurons"] == 0 and got["split_count"] == 0 and got["merge_count"] == 0
        assert math.isnan(got["erl"]) and math.isnan(got["rand_split"]) and math.isnan(got["xpress_erl_rand"])
        assert_scores_match(got, ref(case, mode), rel=0, abs_=0)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def _ok():
    seg = np.ones((2, 3, 4), dtype=np.uint32)
    g = _graph([("a", (1.0, 1.0, 1.0)), ("b", (3.0, 1.0, 1.0))], [("a", "b")])
    return seg, g


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(segmentation=np.ones((2, 3, 4), dtype=np.float32)), TypeError, "segmentation"),
        (dict(segmentation=np.ones((2, 3, 4), dtype=bool)), TypeError, "segmentation"),
        (dict(segmentation=np.ones((3, 4), dtype=np.uint8)), ValueError, "segmentation"),
        (dict(segmentation=np.ones((1, 2, 3, 4), dtype=np.uint8)), ValueError, "segmentation"),
        (dict(segmentation=np.zeros((0, 3, 4), dtype=np.uint8)), ValueError, "segmentation"),
        (dict(segmentation=-np.ones((2, 3, 4), dtype=np.int16)), ValueError, "segmentation"),
        (dict(segmentation="seg.h5"), TypeError, "segmentation"),
        (dict(skeletons=[(0, 0, 0)]), TypeError, "skeletons"),
        (dict(skeletons=nx.Graph()), ValueError, "skeletons"),
        (dict(mode="strict"), ValueError, "mode"),
        (dict(voxel_size=(2, 2)), ValueError, "voxel_size"),
        (dict(voxel_size=(2, 0, 2)), ValueError, "voxel_size"),
        (dict(voxel_size=(2, -2, 2)), ValueError, "voxel_size"),
        (dict(offset=(0, np.nan, 0)), ValueError, "offset"),
        (dict(roi_begin=(0, 0, 0), roi_shape=(2, 6, 10)), ValueError, "ROI"),   # x beyond the array
        (dict(roi_begin=(-2, 0, 0), roi_shape=(2, 2, 2)), ValueError, "ROI"),   # before the array
        (dict(roi_begin=(1, 0, 0), roi_shape=(2, 2, 2)), ValueError, "roi_begin"),   # not aligned
        (dict(roi_begin=(0, 0, 0), roi_shape=(2, 3, 2)), ValueError, "roi_shape"),   # not aligned
        (dict(roi_begin=(0, 0, 0), roi_shape=(2, 0, 2)), ValueError, "roi_shape"),
    ],
)
def test_bad_input_raises(change, exc, match):
    seg, g = _ok()
    args = {"segmentation": seg, "skeletons": g, "voxel_size": (2, 2, 2), "offset": (0, 0, 0)}
    args.update(change)
    s, k = args.pop("segmentation"), args.pop("skeletons")
    for fn in (xpress_scores, erl):
        with pytest.raises(exc, match=match):
            fn(s, k, **args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_positions_raise(bad):
    seg, g = _ok()
    g.nodes["b"]["position"] = (bad, 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        xpress_scores(seg, g, voxel_size=(2, 2, 2))


def test_graph_with_edge_to_a_node_without_position_raises():
    seg, g = _ok()
    g.add_edge("b", "ghost")
    with pytest.raises(ValueError, match="position"):
        xpress_scores(seg, g, voxel_size=(2, 2, 2))


def test_skeletons_with_edges_to_missing_nodes_raise():
    with pytest.raises(ValueError, match="edges"):
        Skeletons(np.zeros((2, 3)), [[0, 3]])


def test_skeleton_index_bad_input():
    seg, g = _ok()
    index = SkeletonIndex(g, voxel_size=(2, 2, 2), shape=seg.shape)
    with pytest.raises(ValueError, match="segmentation"):
        index.score(np.ones((2, 3, 5), dtype=np.uint8))
    with pytest.raises(TypeError, match="segmentation"):
        index.score(np.ones((2, 3, 4), dtype=np.float64))
    with pytest.raises(ValueError, match="labels"):
        index.score_node_labels(np.ones(index.node_voxels.shape[0] + 1, dtype=np.uint64))
    with pytest.raises(TypeError, match="labels"):
        index.score_node_labels(np.ones(index.node_voxels.shape[0], dtype=np.float32))
    with pytest.raises(ValueError, match="labels"):
        index.score_node_labels(-np.ones(index.node_voxels.shape[0], dtype=np.int64))
    with pytest.raises(ValueError, match="shape"):
        SkeletonIndex(g, voxel_size=(2, 2, 2), shape=(2, 3))
    with pytest.raises(ValueError, match="mode"):
        SkeletonIndex(g, voxel_size=(2, 2, 2), shape=seg.shape, mode="Official")


@given(case=cases(), seed=st.integers(0, 2**16))
@settings(max_examples=30)
def test_score_node_labels_many_equals_one_by_one(case, seed):
    """The batched kernel (one call for a whole sweep) gives each row's scores, per-skeleton run
    lengths and locations exactly as scoring the rows one by one."""
    seg = case["segmentation"]
    rng = np.random.default_rng(seed)
    for mode in MODES:
        index = SkeletonIndex(case["graph"], shape=seg.shape, mode=mode, **case["kwargs"])
        base = seg[tuple(np.asarray(index.node_voxels).T)].astype(np.uint64)
        # repeated rows (a sweep's thresholds with no merge between them) reuse a row's scores
        rows = np.stack([base, base, base // 2, rng.integers(0, 3, base.shape).astype(np.uint64), base])
        many = index.score_node_labels_many(rows)
        assert len(many) == 5
        for row, got in zip(rows, many):
            want = index.score_node_labels(row)
            assert_scores_match(got.as_dict(), want.as_dict(), rel=0)
            np.testing.assert_array_equal(got.erl_result.skeleton_erl, want.erl_result.skeleton_erl)
            np.testing.assert_array_equal(got.split_locations["node_ids"], want.split_locations["node_ids"])
            np.testing.assert_array_equal(got.merge_locations["node_ids"], want.merge_locations["node_ids"])


def test_score_node_labels_many_bad_shape():
    index = SkeletonIndex(nx_graph_two_nodes(), shape=(2, 2, 2), voxel_size=(1, 1, 1))
    with pytest.raises(ValueError, match=r"labels must have shape \(T, n_nodes\)"):
        index.score_node_labels_many(np.ones(index.n_nodes, dtype=np.uint64))
    with pytest.raises(ValueError, match=r"labels must have shape \(T, n_nodes\)"):
        index.score_node_labels_many(np.ones((2, index.n_nodes + 1), dtype=np.uint64))


def nx_graph_two_nodes():
    g = nx.Graph()
    g.add_node(1, position=(0.5, 0.5, 0.5))
    g.add_node(2, position=(1.5, 0.5, 0.5))
    g.add_edge(1, 2)
    return g
