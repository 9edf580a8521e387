"""Skeleton nodes outside a segmentation smaller than the skeletons (no ROI given).

The official evaluator drops them with their edges; we do the same by default but say so
(``outside="warn"``), and offer ``"drop"`` (silent), ``"error"`` and ``"split"`` (each outside
node an unlabelled voxel of its own: every edge into it is a split).

The hand case: voxel 10 nm, segmentation (1, 1, 3) all label 1; skeleton A = a1 (x 5) -- a2
(x 15) -- a3 (x 45, outside the 30 nm array), edge lengths 10 and 30 nm.
  drop:  one edge, correct, on label 1: ERL = 10^2 / 10 = 10 nm; no split.
  split: a3 is a voxel of its own: a2-a3 is a split; ERL = 10^2 / 40 = 2.5 nm. Corrected-mode
         Rand over the voxels (A,1) (A,1) (A,fresh): sum n^2 = 4 + 1 = 5, a = 3, b = 2, 1:
         rand_split = 5/9, rand_merge = 5/5 = 1.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import xpress_fast as xf

SEG = np.ones((1, 1, 3), dtype=np.uint64)
SKELETONS = xf.Skeletons(np.array([[5.0, 5, 5], [5, 5, 15], [5, 5, 45]]), np.array([[0, 1], [1, 2]]))
KW = dict(voxel_size=(10, 10, 10), mode="corrected")


def test_default_warns_with_the_count_at_the_callers_line():
    with pytest.warns(xf.XpressWarning, match=r"1 of 3 skeleton nodes lie outside") as record:
        scores = xf.xpress_scores(SEG, SKELETONS, **KW)
    assert record[0].filename == __file__  # attributed to the caller, not to the package
    assert scores.erl == pytest.approx(10.0) and scores.split_count == 0


def test_drop_is_silent_and_equals_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dropped = xf.xpress_scores(SEG, SKELETONS, outside="drop", **KW).as_dict()
    with pytest.warns(xf.XpressWarning):
        warned = xf.xpress_scores(SEG, SKELETONS, **KW).as_dict()
    assert dropped == pytest.approx(warned, nan_ok=True)


def test_error_raises_naming_the_count():
    with pytest.raises(ValueError, match=r"1 of 3 skeleton nodes lie outside"):
        xf.xpress_scores(SEG, SKELETONS, outside="error", **KW)


def test_split_counts_outside_nodes_as_errors():
    scores = xf.xpress_scores(SEG, SKELETONS, outside="split", **KW)
    assert scores.split_count == 1
    assert scores.erl == pytest.approx(100 / 40)
    assert scores.rand_split == pytest.approx(5 / 9) and scores.rand_merge == pytest.approx(1.0)
    index = xf.SkeletonIndex(SKELETONS, shape=SEG.shape, outside="split", **KW)
    assert index.n_outside == 1 and index.n_nodes == 3
    # labels handed in for the outside node are ignored: it is unlabelled
    same = index.score_node_labels(np.array([1, 1, 1], dtype=np.uint64)).as_dict()
    assert same == pytest.approx(scores.as_dict(), nan_ok=True)
    many = index.score_node_labels_many(np.ones((2, 3), dtype=np.uint64))
    assert many[0].as_dict() == pytest.approx(scores.as_dict(), nan_ok=True)


def test_split_outside_nodes_never_share_a_segment():
    """Two outside nodes (clamped to the same edge voxel) stay two segments: their edge is a split."""
    sk = xf.Skeletons(np.array([[5.0, 5, 5], [5, 5, 45], [5, 5, 55]]), np.array([[0, 1], [1, 2]]))
    scores = xf.xpress_scores(SEG, sk, outside="split", **KW)
    assert scores.split_count == 2 and scores.erl == 0.0


def test_split_official_mode_keeps_node_order():
    """Outside nodes first in node order keep their place: the official first component (left out of
    Rand/VOI) is the same with "split" as it would be if the array covered every node."""
    positions = np.array([[5.0, 5, 45], [5, 5, 55], [5, 5, 5], [5, 5, 15]])  # B (outside) first, then A
    sk = xf.Skeletons(positions, np.array([[0, 1], [2, 3]]))
    split = xf.xpress_scores(SEG, sk, voxel_size=(10, 10, 10), outside="split")
    wide = np.zeros((1, 1, 6), dtype=np.uint64)
    wide[..., :3] = 1
    covered = xf.xpress_scores(wide, sk, voxel_size=(10, 10, 10))  # B's nodes on label 0 there
    assert split.as_dict() == pytest.approx(covered.as_dict(), nan_ok=True)


def test_an_explicit_roi_drops_silently():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = xf.xpress_scores(SEG, SKELETONS, roi_begin=(0, 0, 0), roi_shape=(10, 10, 30), **KW)
    assert scores.erl == pytest.approx(10.0)


def test_bad_outside_value():
    with pytest.raises(ValueError, match="outside"):
        xf.xpress_scores(SEG, SKELETONS, outside="count", **KW)
