"""Segmentation kernels (private; use xpress_fast.watershed / region_graph / agglomerate).

The kernels are compiled per affinity dtype (float32, uint8) and label dtype, so each appears
once per instantiation, with its own array types.
"""
from typing import Sequence, TypedDict, type_check_only

import numpy as np
import numpy.typing as npt
from typing_extensions import NotRequired

# The codes and limits the Python side passes or checks (named once, in C++: Statistic,
# kHistogramBins, kNoFragment, kMutexMaxEdges).
STATISTIC_MEAN: int
STATISTIC_MAX: int
STATISTIC_MIN: int
STATISTIC_QUANTILE: int
HISTOGRAM_BINS: int
NO_FRAGMENT: int
MUTEX_MAX_EDGES: int

@type_check_only
class RegionGraphArrays(TypedDict):
    """What region_graph_* returns (the graph function in src/_segment.cpp): one entry per edge,
    the histograms (CSR: edge e owns entries hist_offsets[e]:hist_offsets[e + 1]) only when
    asked for."""

    u: npt.NDArray[np.uint64]
    v: npt.NDArray[np.uint64]
    count: npt.NDArray[np.uint64]
    sum: npt.NDArray[np.float64]
    min: npt.NDArray[np.float32]
    max: npt.NDArray[np.float32]
    hist_offsets: NotRequired[npt.NDArray[np.int64]]
    hist_bins: NotRequired[npt.NDArray[np.uint8]]
    hist_counts: NotRequired[npt.NDArray[np.uint64]]

def watershed_float32(
    affs: npt.NDArray[np.float32],
    labels: npt.NDArray[np.uint64],
    mask: npt.NDArray[np.uint8] | None,
    threads: int = 1,
    block: tuple[int, int, int] = (64, 64, 128),
) -> None: ...
def watershed_uint8(
    affs: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.uint64],
    mask: npt.NDArray[np.uint8] | None,
    threads: int = 1,
    block: tuple[int, int, int] = (64, 64, 128),
) -> None: ...
def zeros_uint64(shape: Sequence[int], threads: int) -> npt.NDArray[np.uint64]: ...
def inside_float32(affs: npt.NDArray[np.float32], threshold: float) -> npt.NDArray[np.uint8]: ...
def inside_uint8(affs: npt.NDArray[np.uint8], threshold: float) -> npt.NDArray[np.uint8]: ...
def clear_boundary_float32(affs: npt.NDArray[np.float32], labels: npt.NDArray[np.uint64], threshold: float,
                           threads: int, out: npt.NDArray[np.uint64] | None = None) -> int: ...
def clear_boundary_uint8(affs: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint64], threshold: float,
                         threads: int, out: npt.NDArray[np.uint64] | None = None) -> int: ...
def mutex_watershed_float32(affs: npt.NDArray[np.float32], offsets: npt.NDArray[np.int64],
                            strides: npt.NDArray[np.int64], bias: npt.NDArray[np.float32],
                            mask: npt.NDArray[np.uint8] | None, threads: int) -> npt.NDArray[np.uint64]: ...
def mutex_watershed_uint8(affs: npt.NDArray[np.uint8], offsets: npt.NDArray[np.int64],
                          strides: npt.NDArray[np.int64], bias: npt.NDArray[np.float32],
                          mask: npt.NDArray[np.uint8] | None, threads: int) -> npt.NDArray[np.uint64]: ...
def filter_float32(affs: npt.NDArray[np.float32], labels: npt.NDArray[np.uint64], level: float) -> int: ...
def filter_uint8(affs: npt.NDArray[np.uint8], labels: npt.NDArray[np.uint64], level: float) -> int: ...
def distance_maxima(inside: npt.NDArray[np.uint8], size: int, threads: int) -> npt.NDArray[np.uint8]: ...
def squared_edt(inside: npt.NDArray[np.uint8], threads: int) -> npt.NDArray[np.float32]: ...
def distance_seeds(
    inside: npt.NDArray[np.uint8], size: int, id_offset: int, threads: int
) -> tuple[npt.NDArray[np.uint64], int]: ...
def region_graph_float32(
    fragments: npt.NDArray[np.uint64], affs: npt.NDArray[np.float32], cz: int, cy: int, cx: int,
    histogram: bool, threads: int, nearest: bool, further: npt.NDArray[np.int64],
) -> RegionGraphArrays: ...
def region_graph_uint8(
    fragments: npt.NDArray[np.uint64], affs: npt.NDArray[np.uint8], cz: int, cy: int, cx: int,
    histogram: bool, threads: int, nearest: bool, further: npt.NDArray[np.int64],
) -> RegionGraphArrays: ...
# the merge history: (u, v, score, level), one entry per merge
def agglomerate(
    n_nodes: int,
    u: npt.NDArray[np.int64],
    v: npt.NDArray[np.int64],
    count: npt.NDArray[np.uint64],
    sum: npt.NDArray[np.float64],
    min: npt.NDArray[np.float32],
    max: npt.NDArray[np.float32],
    hist_offsets: npt.NDArray[np.int64],
    hist_bins: npt.NDArray[np.uint8],
    hist_counts: npt.NDArray[np.uint64],
    statistic: int,
    quantile: int,
    init_with_max: bool,
    stop: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def merge_components(
    n_nodes: int, u: npt.NDArray[np.int64], v: npt.NDArray[np.int64], k: int
) -> npt.NDArray[np.int64]: ...
def merge_history_labels(
    fragment_ids: npt.NDArray[np.uint64],
    u: npt.NDArray[np.int64],
    v: npt.NDArray[np.int64],
    prefix: npt.NDArray[np.int64],
    item_fragment: npt.NDArray[np.int64],
    item_id: npt.NDArray[np.uint64],
) -> npt.NDArray[np.uint64]: ...
def map_labels_uint64(
    labels: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64], values: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]: ...
def map_labels_uint32(
    labels: npt.NDArray[np.uint32], keys: npt.NDArray[np.uint64], values: npt.NDArray[np.uint64]
) -> npt.NDArray[np.uint64]: ...
