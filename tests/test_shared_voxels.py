"""A voxel shared by nodes of several skeletons: its ground truth follows the official raster.

The official evaluator writes the truth raster skeleton by skeleton, in the order of
``enumerate(nx.connected_components(graph))`` (components numbered by their first node in graph
order), so a shared voxel holds the highest component index among its nodes -- not the skeleton
of its last node in node order. ``tests/fixtures/shared_voxels.json`` is a case where the two
rules differ; its expected numbers are derived by hand below.

Hand derivation (voxel 99 nm; node order a1 a2 b2 c2 c1 b1; components A=0, B=1, C=2):
  voxels  (0,0,0) a1 label 1 | (0,0,1) a2 label 1 | (0,1,0) b2 label 2 | (0,1,1) c1, b1 label 3 |
          (0,2,1) c2 label 3
  The shared voxel (0,1,1) holds C (written after B), although b1 is its last node.
  official (A left out): pairs (B,2) (C,3) (C,3): n_ij 1, 2; a = 1, 2; b = 1, 2 -> rand 5/5 = 1,
      H(T,S) = H(T) = H(S) -> voi 0, nvi 0.  (The last-node rule gives (B,2) (B,3) (C,3):
      rand 3/5 = 0.6.)
  corrected (every component): (A,1) x2, (B,2), (C,3) x2 -> again one segment per truth: rand 1.
  ERL: edges a1-a2 99 nm on label 1 (correct), b2-b1 sqrt(140^2 + 41^2) nm (split),
      c2-c1 88 nm on label 3, which holds B and C (merged): ERL = 99^2 / L, L the sum of the
      three lengths; nERL = ERL / (L / 3).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from reference_metrics import graph_from_arrays, reference_scores

import xpress_fast as xf

FIXTURE = Path(__file__).parent / "fixtures" / "shared_voxels.json"


@pytest.fixture(scope="module")
def case():
    data = json.loads(FIXTURE.read_text())
    data["segmentation"] = np.asarray(data["segmentation"], dtype=np.uint64)
    data["graph"] = graph_from_arrays(np.asarray(data["node_ids"]), np.asarray(data["node_positions_xyz_nm"], float),
                                      np.asarray(data["edges"]))
    return data


def test_the_fixture_separates_the_two_rules(case):
    """The shared voxel's last node (in node order) is B's, while C is the later component."""
    voxels = [tuple(int(c) // 99 for c in p[::-1]) for p in case["node_positions_xyz_nm"]]
    shared = [i for i, v in enumerate(voxels) if v == (0, 1, 1)]
    assert [case["node_ids"][i] for i in shared] == [32, 22]  # c1 then b1


@pytest.mark.parametrize("mode", ["official", "corrected"])
def test_shared_voxel_truth_follows_the_official_raster(case, mode):
    scores = xf.xpress_scores(case["segmentation"], case["graph"], voxel_size=case["voxel_size"],
                              offset=case["offset"], mode=mode).as_dict()
    for key, want in case["expected"][mode].items():
        assert scores[key] == pytest.approx(want, abs=1e-12), key
    lengths = [99.0, math.hypot(140, 41), 88.0]
    total = sum(lengths)
    assert scores["erl"] == pytest.approx(99.0**2 / total, rel=1e-12)
    assert scores["nerl"] == pytest.approx(99.0**2 / total / (total / 3), rel=1e-12)
    ref = reference_scores(case["segmentation"], case["graph"], voxel_size=case["voxel_size"],
                           offset=case["offset"], mode=mode)
    for key, want in case["expected"][mode].items():
        assert ref[key] == pytest.approx(want, abs=1e-12), key


def test_shared_voxel_truth_does_not_depend_on_node_order(case):
    """Reordering the nodes of a voxel (not the components) leaves Rand/VOI unchanged."""
    order = [0, 1, 2, 3, 5, 4]  # b1 before c1; component numbering unchanged
    ids = np.asarray(case["node_ids"])[order]
    pos = np.asarray(case["node_positions_xyz_nm"], float)[order]
    inverse = np.argsort(order)
    edges = inverse[np.asarray(case["edges"])]
    graph = graph_from_arrays(ids, pos, edges)
    a = xf.xpress_scores(case["segmentation"], graph, voxel_size=case["voxel_size"]).as_dict()
    b = xf.xpress_scores(case["segmentation"], case["graph"], voxel_size=case["voxel_size"]).as_dict()
    assert a == pytest.approx(b, rel=1e-12)
