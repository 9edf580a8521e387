"""Evaluation kernels (private; use xpress_fast.erl / xpress_scores / rand_voi / SkeletonIndex).

The TypedDicts are the dicts the bindings in src/_metrics.cpp build (stub-only names: import them
under ``typing.TYPE_CHECKING``).
"""
from typing import TypedDict, type_check_only

import numpy as np
import numpy.typing as npt

@type_check_only
class ContingencySums(TypedDict):
    """The contingency-table sums every Rand / VOI result carries (entropies in bits)."""

    sum_n2: float
    sum_a2: float
    sum_b2: float
    h_joint: float
    h_truth: float
    h_test: float

@type_check_only
class RandVoiSums(ContingencySums):
    n: int  # voxels counted

@type_check_only
class SkeletonNodeVoxels(TypedDict):
    nodes: npt.NDArray[np.int64]  # (M,) the nodes inside the box, indices into the input
    voxels: npt.NDArray[np.int64]  # (M, 3) the voxel of each
    voxel_index: npt.NDArray[np.int64]  # (M,) its C-order flat index
    voxel_group: npt.NDArray[np.int64]  # (M,) dense voxel id, by first occurrence
    n_voxels: int
    edges: npt.NDArray[np.int64]  # (K, 2) the edges kept, in inside-node numbering
    edge_ids: npt.NDArray[np.int64]  # (K,) index of each in the input
    edge_length: npt.NDArray[np.float64]  # (K,) nm

@type_check_only
class SkeletonLabelScores(ContingencySums):
    erl: float
    total_length: float
    skeleton_length: npt.NDArray[np.float64]  # (S,)
    skeleton_erl: npt.NDArray[np.float64]  # (S,)
    split_count: int
    merge_count: int
    split_edges: npt.NDArray[np.int64]
    node_segment: npt.NDArray[np.int64]  # (n_nodes,) dense segment index
    segment_merged: npt.NDArray[np.uint8]
    n_voxels: int

@type_check_only
class SkeletonLabelScoresMany(TypedDict):
    """One entry per row of the (T, n_nodes) labels; ``skeleton_length`` is the same for all."""

    erl: npt.NDArray[np.float64]  # (T,)
    total_length: npt.NDArray[np.float64]
    split_count: npt.NDArray[np.int64]
    merge_count: npt.NDArray[np.int64]
    n_voxels: npt.NDArray[np.int64]
    sum_n2: npt.NDArray[np.float64]
    sum_a2: npt.NDArray[np.float64]
    sum_b2: npt.NDArray[np.float64]
    h_joint: npt.NDArray[np.float64]
    h_truth: npt.NDArray[np.float64]
    h_test: npt.NDArray[np.float64]
    skeleton_erl: npt.NDArray[np.float64]  # (T, S)
    skeleton_length: npt.NDArray[np.float64]  # (S,)

@type_check_only
class MergeLocations(TypedDict):
    """One entry per (segment, pair of skeletons on it)."""

    segment: npt.NDArray[np.int64]
    skeleton_a: npt.NDArray[np.int64]
    skeleton_b: npt.NDArray[np.int64]
    node_a: npt.NDArray[np.int64]
    node_b: npt.NDArray[np.int64]
    distance: npt.NDArray[np.float64]  # nm

def components(n_nodes: int, edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def skeleton_node_voxels(
    positions: npt.NDArray[np.float64],
    edges: npt.NDArray[np.int64],
    begin: tuple[float, float, float],
    end: tuple[float, float, float],
    offset: tuple[float, float, float],
    voxel_size: tuple[float, float, float],
    shape: tuple[int, int, int],
) -> SkeletonNodeVoxels: ...
def score_skeleton_labels(
    labels: npt.NDArray[np.uint64],
    voxel: npt.NDArray[np.int64],
    n_voxels: int,
    skeleton: npt.NDArray[np.int64],
    n_skeletons: int,
    edges: npt.NDArray[np.int64],
    edge_length: npt.NDArray[np.float64],
    skip_first_skeleton: bool,
    zero_is_unsegmented: bool,
) -> SkeletonLabelScores: ...
def score_skeleton_labels_many(
    labels: npt.NDArray[np.uint64],
    voxel: npt.NDArray[np.int64],
    n_voxels: int,
    skeleton: npt.NDArray[np.int64],
    n_skeletons: int,
    edges: npt.NDArray[np.int64],
    edge_length: npt.NDArray[np.float64],
    skip_first_skeleton: bool,
    zero_is_unsegmented: bool,
) -> SkeletonLabelScoresMany: ...
def merge_locations(
    node_segment: npt.NDArray[np.int64],
    skeleton: npt.NDArray[np.int64],
    positions: npt.NDArray[np.float64],
    merged: npt.NDArray[np.uint8],
) -> MergeLocations: ...

# one instantiation per label dtype (rand_voi_sums<T> in src/_metrics.cpp)
def rand_voi_sums_uint8(
    test: npt.NDArray[np.uint8], truth: npt.NDArray[np.uint8], ignore: npt.NDArray[np.uint8], threads: int
) -> RandVoiSums: ...
def rand_voi_sums_uint16(
    test: npt.NDArray[np.uint16], truth: npt.NDArray[np.uint16], ignore: npt.NDArray[np.uint16], threads: int
) -> RandVoiSums: ...
def rand_voi_sums_uint32(
    test: npt.NDArray[np.uint32], truth: npt.NDArray[np.uint32], ignore: npt.NDArray[np.uint32], threads: int
) -> RandVoiSums: ...
def rand_voi_sums_uint64(
    test: npt.NDArray[np.uint64], truth: npt.NDArray[np.uint64], ignore: npt.NDArray[np.uint64], threads: int
) -> RandVoiSums: ...
