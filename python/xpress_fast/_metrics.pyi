"""Evaluation kernels (private; use xpress_fast.erl / xpress_scores / rand_voi / SkeletonIndex)."""
import numpy as np
import numpy.typing as npt

def components(n_nodes: int, edges: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def skeleton_node_voxels(
    positions: npt.NDArray[np.float64],
    edges: npt.NDArray[np.int64],
    begin: tuple[float, float, float],
    end: tuple[float, float, float],
    offset: tuple[float, float, float],
    voxel_size: tuple[float, float, float],
    shape: tuple[int, int, int],
) -> dict: ...
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
) -> dict: ...
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
) -> dict: ...
def merge_locations(
    node_segment: npt.NDArray[np.int64],
    skeleton: npt.NDArray[np.int64],
    positions: npt.NDArray[np.float64],
    merged: npt.NDArray[np.uint8],
) -> dict: ...
def rand_voi_sums_uint8(test: npt.NDArray[np.uint8], truth: npt.NDArray[np.uint8], ignore: npt.NDArray[np.uint8], n_threads: int) -> dict: ...
def rand_voi_sums_uint16(test: npt.NDArray[np.uint16], truth: npt.NDArray[np.uint16], ignore: npt.NDArray[np.uint16], n_threads: int) -> dict: ...
def rand_voi_sums_uint32(test: npt.NDArray[np.uint32], truth: npt.NDArray[np.uint32], ignore: npt.NDArray[np.uint32], n_threads: int) -> dict: ...
def rand_voi_sums_uint64(test: npt.NDArray[np.uint64], truth: npt.NDArray[np.uint64], ignore: npt.NDArray[np.uint64], n_threads: int) -> dict: ...
