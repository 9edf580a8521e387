"""Skeletons from dense labels: one tree per label, nodes on their label, perfect scores for the truth."""
from __future__ import annotations

import numpy as np
import pytest

import xpress_fast
from xpress_fast import skeletons_from_labels

VS = (10.0, 20.0, 30.0)
OFF = (100.0, 0.0, -60.0)


def _tubes():
    lab = np.zeros((30, 16, 16), np.uint32)
    lab[:, 2:6, 2:6] = 5            # a straight tube along z
    lab[3:27, 9:14, 9:14] = 7       # another
    lab[:10, 2:5, 10:13] = 9        # label 9 in two separate pieces
    lab[20:, 2:5, 10:13] = 9
    lab[15, 10, 3] = 11             # a single voxel
    return lab


def _node_labels(lab, sk):
    vox = np.floor((sk.positions - np.asarray(OFF)) / np.asarray(VS)).astype(int)
    return lab[tuple(vox.T)]


def test_one_tree_per_label_nodes_on_their_label():
    lab = _tubes()
    before = lab.copy()
    sk = skeletons_from_labels(lab, voxel_size=VS, offset=OFF, node_spacing=3)
    np.testing.assert_array_equal(lab, before)
    assert sorted(set(sk.ids.tolist())) == [5, 7, 9, 11]
    np.testing.assert_array_equal(_node_labels(lab, sk), sk.ids)  # every node lies on its own label
    comp = sk.component_ids()
    for label in (5, 7, 9, 11):
        assert len(np.unique(comp[sk.ids == label])) == 1, f"label {label} is not one tree"
    assert sk.n_skeletons == 4
    assert sk.n_edges == sk.n_nodes - 4  # a forest of four trees
    # positions are voxel centres
    frac = (sk.positions - np.asarray(OFF)) / np.asarray(VS) - 0.5
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)
    # the single voxel has exactly one node
    assert (sk.ids == 11).sum() == 1


def test_node_spacing_thins_chains():
    lab = np.zeros((40, 7, 7), np.uint8)
    lab[:, 2:5, 2:5] = 1
    dense = skeletons_from_labels(lab, voxel_size=(1, 1, 1), node_spacing=1)
    sparse = skeletons_from_labels(lab, voxel_size=(1, 1, 1), node_spacing=5)
    assert sparse.n_nodes < dense.n_nodes / 3
    assert sparse.edge_lengths().max() <= 5 * np.sqrt(3) + 1e-9
    # the same extent is covered
    assert np.ptp(sparse.positions[:, 0]) == np.ptp(dense.positions[:, 0]) > 30


def test_truth_scores_perfectly_and_a_merge_is_seen():
    lab = _tubes()
    sk = skeletons_from_labels(lab, voxel_size=VS, offset=OFF, node_spacing=2)
    s = xpress_fast.xpress_scores(lab, sk, voxel_size=VS, offset=OFF, mode="corrected")
    assert s.split_count == 0 and s.merge_count == 0
    assert s.rand_split == 1.0 and s.rand_merge == 1.0
    merged = np.where(lab == 7, 5, lab).astype(np.uint32)
    m = xpress_fast.xpress_scores(merged, sk, voxel_size=VS, offset=OFF, mode="corrected")
    assert m.merge_count == 1 and m.nerl < s.nerl


def test_filters():
    lab = _tubes()
    sk = skeletons_from_labels(lab, voxel_size=VS, min_voxels=2)
    assert 11 not in sk.ids
    sk = skeletons_from_labels(lab, voxel_size=VS, ignore_labels=(0, 5))
    assert 5 not in sk.ids
    sk = skeletons_from_labels(lab, voxel_size=VS, max_labels=1)
    assert set(sk.ids.tolist()) == {7}  # the largest object (600 voxels)


@pytest.mark.parametrize(
    "labels, kwargs, exc, match",
    [
        (np.zeros((4, 4, 4), np.float32), {}, TypeError, "integer label dtype"),
        (np.zeros((4, 4), np.uint8), {}, ValueError, "3-dimensional"),
        (np.zeros((4, 4, 4), np.uint8), {}, ValueError, "no object to skeletonize"),
        (np.ones((4, 4, 4), np.uint8), {"node_spacing": 0}, ValueError, "node_spacing must be a positive"),
        (np.ones((4, 4, 4), np.uint8), {"min_voxels": 0}, ValueError, "min_voxels must be a positive"),
        (np.ones((4, 4, 4), np.uint8), {"max_labels": 0}, ValueError, "max_labels must be"),
        (np.ones((4, 4, 4), np.uint8), {"voxel_size": (1, 0, 1)}, ValueError, "voxel_size must be positive"),
    ],
)
def test_bad_input(labels, kwargs, exc, match):
    kwargs.setdefault("voxel_size", (1, 1, 1))
    with pytest.raises(exc, match=match):
        skeletons_from_labels(labels, **kwargs)


def test_real_labels_subvolume(shared_dir):
    import h5py

    with h5py.File(shared_dir / "data" / "neuroproof_sample2.h5", "r") as f:
        lab = f["labels"][:48, :48, :48]
    sk = skeletons_from_labels(lab, voxel_size=(10, 10, 10), node_spacing=8, min_voxels=200)
    s = xpress_fast.xpress_scores(lab, sk, voxel_size=(10, 10, 10), mode="corrected")
    assert s.n_neurons == len(set(sk.ids.tolist())) > 3
    assert s.split_count == 0 and s.merge_count == 0
