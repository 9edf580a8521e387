from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, event, given
from hypothesis import strategies as st

import xpress_fast as xf
from xpress_fast.agglomeration import MERGE_FUNCTIONS, Agglomeration, agglomerate_graph
from xpress_fast.region_graphs import RegionGraph
from reference_segment import label_affinities, ref_agglomerate, relabel, same_partition
from test_region_graph import as_dict

THRESHOLDS = [0.1, 0.3, 0.45, 0.55, 0.7, 0.9]
WATERZ = {
    "mean": "OneMinus<MeanAffinity<RegionGraphType,ScoreValue>>",
    "hist_quant_50": "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256,false>>",
    "hist_quant_25": "OneMinus<HistogramQuantileAffinity<RegionGraphType,25,ScoreValue,256,false>>",
    "hist_quant_75_initmax": "OneMinus<HistogramQuantileAffinity<RegionGraphType,75,ScoreValue,256,true>>",
}


@st.composite
def volumes(draw, max_side=8, max_labels=12):
    """Blocky fragments (labels on a coarse grid, upsampled) and random affinities."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = tuple(draw(st.integers(2, max_side)) for _ in range(3))
    cell = draw(st.integers(1, 3))
    coarse = rng.integers(0, draw(st.integers(2, max_labels)) + 1, size=tuple(-(-s // cell) for s in shape))
    frags = coarse.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)[: shape[0], : shape[1], : shape[2]]
    frags = frags.astype(np.uint64)
    if draw(st.booleans()):
        affs = rng.integers(0, 256, size=(3,) + shape, dtype=np.uint8)
    else:
        affs = rng.random((3,) + shape, dtype=np.float32)
    return frags, affs


def reference_segmentations(frags, affs, merge_function, thresholds, tol=0.0, inside_threshold=0.5):
    """The reference merges on the graph that agglomerate builds (by default: inside voxels only)."""
    graph = as_dict(xf.region_graph(frags, affs, inside_threshold=inside_threshold))
    out, tie = [], False
    for t in thresholds:
        mapping, t_tie = ref_agglomerate(graph, merge_function, t, tol)
        tie = tie or t_tie
        out.append(relabel(frags, mapping))
    return out, tie


@given(volumes(), st.sampled_from(["mean", "max", "min", "hist_quant_50", "hist_quant_10", "hist_quant_90_initmax"]))
def test_agglomerate_matches_reference(data, merge_function):
    frags, affs = data
    frags_before, affs_before = frags.copy(), affs.copy()
    result = xf.merge_history(affs, THRESHOLDS, fragments=frags, merge_function=merge_function)
    np.testing.assert_array_equal(frags, frags_before)
    np.testing.assert_array_equal(affs, affs_before)
    assert isinstance(result, Agglomeration)
    expected, _ = reference_segmentations(frags, affs, merge_function, THRESHOLDS)
    for t, exp in zip(THRESHOLDS, expected):
        seg = result.segmentation(t)
        assert seg.dtype == np.uint64
        assert same_partition(seg, exp), (t, merge_function)
    assert np.all(np.diff(result.levels) >= 0)


def _waterz(frags, affs, merge_function, thresholds):
    waterz = pytest.importorskip("waterz")
    values = affs.astype(np.float32) / np.float32(255) if affs.dtype == np.uint8 else affs
    return [s.copy() for s in waterz.agglomerate(
        np.ascontiguousarray(values), list(thresholds), fragments=frags.copy(),
        scoring_function=WATERZ[merge_function])]


@given(volumes(max_labels=8), st.sampled_from(sorted(WATERZ)))
def test_agglomerate_matches_waterz_where_no_tie(data, merge_function):
    frags, affs = data
    # waterz counts every voxel pair: so does inside_threshold=None
    graph = as_dict(xf.region_graph(frags, affs, inside_threshold=None))
    # a threshold is comparable when no tie (within float32 rounding) was met on the way to it:
    # among equal scores waterz's order is its heap's, ours is the edge order
    comparable = [t for t in THRESHOLDS if not ref_agglomerate(graph, merge_function, t, 1e-5)[1]]
    assume(comparable)
    event(f"{len(comparable)} of {len(THRESHOLDS)} thresholds compared")
    result = xf.merge_history(affs, comparable, fragments=frags, merge_function=merge_function, inside_threshold=None)
    for t, theirs in zip(comparable, _waterz(frags, affs, merge_function, comparable)):
        assert same_partition(result.segmentation(t), theirs), (t, merge_function)


def _blobs(shape=(20, 28, 28), seed=0, quantised=True):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    gt = ndimage.label(ndimage.gaussian_filter(rng.random(shape), 2) > 0.5)[0]
    affs = label_affinities(gt)
    affs = np.clip(affs * 0.7 + rng.random(affs.shape).astype(np.float32) * 0.3, 0, 1)
    return (affs * 255).round().astype(np.uint8) if quantised else affs


def test_mean_matches_waterz_on_a_realistic_volume():
    """Mean scores of continuous affinities do not tie: every threshold equals waterz's."""
    for seed in range(10):  # the first volume whose scores never come within 1e-6 of each other
        affs = _blobs(seed=seed, quantised=False)
        frags = xf.watershed(affs, min_seed_distance=3)
        _, tie = reference_segmentations(frags, affs, "mean", THRESHOLDS, tol=1e-6, inside_threshold=None)
        if not tie:
            break
    assert not tie and len(np.unique(frags)) > 50
    result = xf.merge_history(affs, THRESHOLDS, fragments=frags, merge_function="mean", inside_threshold=None)
    counts = []
    for t, theirs in zip(THRESHOLDS, _waterz(frags, affs, "mean", THRESHOLDS)):
        ours = result.segmentation(t)
        assert same_partition(ours, theirs), t
        counts.append(len(np.unique(ours)))
    assert counts[0] > counts[-1]  # the thresholds do merge


def test_lut_map_and_segmentation_agree():
    affs = _blobs(seed=1)
    frags = xf.watershed(affs, min_seed_distance=3)
    result = xf.merge_history(affs, THRESHOLDS, fragments=frags)
    for t in THRESHOLDS:
        ids, segs = result.lut(t)
        assert ids.dtype == segs.dtype == np.uint64 and ids.shape == segs.shape
        np.testing.assert_array_equal(ids, np.unique(frags[frags != 0]))
        # segment id = the smallest fragment id of the segment
        for s in np.unique(segs):
            assert s == ids[segs == s].min()
        seg = result.segmentation(t)
        lookup = dict(zip(ids.tolist(), segs.tolist()))
        expected = np.array([lookup.get(int(x), int(x)) for x in frags.ravel()], np.uint64).reshape(frags.shape)
        np.testing.assert_array_equal(seg, expected)
        np.testing.assert_array_equal(result.map(frags.astype(np.uint32), t), expected)
        np.testing.assert_array_equal(result.map(frags.astype(np.int64)[:3], t), expected[:3])
        # ids unknown to the graph map to themselves
        np.testing.assert_array_equal(result.map(np.array([0, 2**60]), t), [0, 2**60])
    # results are independent arrays: changing one leaves the others alone
    a, b = result.segmentation(0.3), result.segmentation(0.3)
    a[...] = 0
    assert b.any() and result.segmentation(0.3).any()
    n = [result.n_merges(t) for t in THRESHOLDS]
    assert n == sorted(n) and n[-1] > n[0]


def test_single_threshold_returns_the_segmentation():
    affs = _blobs(seed=2)
    frags = xf.watershed(affs, min_seed_distance=3)
    seg = xf.agglomerate(affs, 0.5, fragments=frags, merge_function="mean")
    assert isinstance(seg, np.ndarray) and seg.dtype == np.uint64
    np.testing.assert_array_equal(seg, xf.merge_history(affs, [0.5], fragments=frags, merge_function="mean")
                                  .segmentation(0.5))


def test_default_fragments_are_the_watershed():
    affs = _blobs(seed=3)
    result = xf.merge_history(affs, [0.2, 0.5], watershed_options={"min_seed_distance": 3})
    np.testing.assert_array_equal(result.fragments, xf.watershed(affs, min_seed_distance=3))


def test_float32_and_uint8_give_the_same_segmentations():
    affs = _blobs(seed=4)
    frags = xf.watershed(affs, min_seed_distance=3)
    for mf in ("mean", "hist_quant_50", "max"):
        a = xf.merge_history(affs, THRESHOLDS, fragments=frags, merge_function=mf)
        b = xf.merge_history(affs.astype(np.float32) / 255, THRESHOLDS, fragments=frags, merge_function=mf)
        for t in THRESHOLDS:
            np.testing.assert_array_equal(a.segmentation(t), b.segmentation(t))


def test_block_graphs_agglomerate_like_the_whole_volume():
    affs = _blobs(seed=5)
    frags = xf.watershed(affs, min_seed_distance=3)
    whole = xf.merge_history(affs, THRESHOLDS, fragments=frags)
    z = affs.shape[1] // 2
    top = xf.region_graph(frags[:z], affs[:, :z], inside_threshold=0.5)  # agglomerate's default graph
    bottom = xf.region_graph(frags[z - 1:], affs[:, z - 1:], context=(1, 0, 0), inside_threshold=0.5)
    graph = RegionGraph.concatenate([top, bottom])
    from_graph = xf.merge_history(None, THRESHOLDS, graph=graph, fragments=frags)
    direct = agglomerate_graph(graph, THRESHOLDS)  # the default merge function, as whole's
    assert direct.fragments is None
    for t in THRESHOLDS:
        np.testing.assert_array_equal(from_graph.segmentation(t), whole.segmentation(t))
        np.testing.assert_array_equal(direct.lut(t)[1], whole.lut(t)[1])
    with pytest.raises(ValueError, match="segmentation needs fragments"):
        direct.segmentation(0.5)


def test_merge_function_names():
    assert {"mean", "max", "min", "hist_quant_50", "hist_quant_10", "hist_quant_90", "hist_quant_50_initmax"} <= set(
        MERGE_FUNCTIONS)


@pytest.mark.parametrize(
    "thresholds, kwargs, error, match",
    [
        ([0.5], {"merge_function": "median"}, ValueError, "merge_function must be one of 'mean', 'max', 'min'"),
        ([0.5], {"merge_function": 3}, TypeError, "merge_function must be a string"),
        ([0.5, 0.3], {}, ValueError, "thresholds must be strictly increasing"),
        ([0.5, 1.5], {}, ValueError, r"thresholds must be numbers in \[0, 1\]; got 1.5"),
        ([float("nan")], {}, ValueError, "thresholds must be finite"),
        ([], {}, ValueError, "thresholds must hold at least one threshold"),
        ("abc", {}, TypeError, "thresholds must be a number or a sequence of numbers"),
        ([0.5], {"fragments": np.ones((2, 2, 3), np.uint64)}, ValueError, "fragments must have the spatial shape"),
        ([0.5], {"fragments": np.ones((2, 2, 2), np.float32)}, TypeError, "fragments must have an integer label"),
    ],
)
def test_agglomerate_rejects_bad_input(thresholds, kwargs, error, match):
    affs = np.ones((3, 2, 2, 2), np.float32)
    with pytest.raises(error, match=match):
        xf.merge_history(affs, thresholds, **kwargs)


def test_agglomerate_rejects_bad_affinities_and_graph_use():
    with pytest.raises(TypeError, match="affs.dtype must be float32 or uint8; got float64"):
        xf.merge_history(np.ones((3, 2, 2, 2)), [0.5])
    with pytest.raises(ValueError, match="affs must be given unless graph is"):
        xf.merge_history(None, [0.5])
    frags = np.array([[[1, 2]]], np.uint64)
    graph = xf.region_graph(frags, np.ones((3, 1, 1, 2), np.float32), histograms=False)
    with pytest.raises(ValueError, match="needs a graph built with histograms=True"):
        agglomerate_graph(graph, [0.5], merge_function="hist_quant_50")
    with pytest.raises(TypeError, match="graph must be a RegionGraph"):
        agglomerate_graph({"edges": []}, [0.5])
    with pytest.raises(ValueError, match="a single threshold returns a segmentation, which needs fragments"):
        xf.agglomerate(None, 0.5, graph=graph, merge_function="mean")
    result = xf.merge_history(None, [0.2, 0.5], graph=graph, fragments=frags, merge_function="mean")
    with pytest.raises(ValueError, match="threshold must be a number <= 0.5, the largest threshold this run merged to; got 0.6"):
        result.lut(0.6)
    with pytest.raises(TypeError, match="threshold must be a number"):
        result.segmentation("0.5")
    with pytest.raises(TypeError, match="fragment_ids must be an integer array"):
        result.map(np.ones(3, np.float32), 0.5)
    with pytest.raises(ValueError, match="fragment_ids must not be negative"):
        result.map(np.array([-1]), 0.5)


def test_volume_without_edges_maps_to_itself():
    frags = np.full((2, 2, 2), 7, np.uint64)
    result = xf.merge_history(np.ones((3, 2, 2, 2), np.float32), [0.5], fragments=frags)
    assert len(result.fragment_ids) == 0 and len(result.scores) == 0
    np.testing.assert_array_equal(result.segmentation(0.5), frags)


def test_return_types_are_predictable():
    """agglomerate: one threshold -> the segmentation (a 0-d array counts as one); merge_history ->
    an Agglomeration always; a sequence to agglomerate still gives the history, with a FutureWarning."""
    rng = np.random.default_rng(0)
    affs = rng.random((3, 6, 7, 8), dtype=np.float32)
    frags = xf.watershed(affs, min_seed_distance=2)
    history = xf.merge_history(affs, [0.3, 0.6], fragments=frags)
    assert isinstance(history, Agglomeration)
    assert isinstance(xf.merge_history(affs, 0.6, fragments=frags), Agglomeration)
    seg = xf.agglomerate(affs, 0.6, fragments=frags)
    assert isinstance(seg, np.ndarray) and seg.shape == frags.shape
    np.testing.assert_array_equal(seg, history.segmentation(0.6))
    np.testing.assert_array_equal(xf.agglomerate(affs, np.float64(0.6), fragments=frags), seg)
    np.testing.assert_array_equal(xf.agglomerate(affs, np.array(0.6), fragments=frags), seg)
    with pytest.warns(FutureWarning, match="merge_history"):
        old = xf.agglomerate(affs, [0.3, 0.6], fragments=frags)
    assert isinstance(old, Agglomeration)
    np.testing.assert_array_equal(old.segmentation(0.3), history.segmentation(0.3))
