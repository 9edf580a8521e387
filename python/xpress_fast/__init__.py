"""xpress-fast: segmentation and skeleton-based evaluation for 3D connectomics volumes.

Axes are (z, y, x) everywhere, physical sizes are in nm and called ``voxel_size``; affinities
are ``(C, Z, Y, X)`` with channel ``c`` linking voxel ``v`` to ``v + offsets[c]`` (default: the
three nearest neighbours ``-e_z, -e_y, -e_x``). VOI is in bits.

Public names are imported lazily so that ``import xpress_fast`` stays cheap and never pulls in
torch (the U-Net lives in :mod:`xpress_fast.unet`, behind the ``[torch]`` extra).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # skeletons and evaluation
    "Skeletons": "skeletons",
    "load_skeletons": "skeletons",
    "save_skeletons": "skeletons",
    "skeletons_from_labels": "skeletonize",
    "erl": "metrics",
    "ErlResult": "metrics",
    "xpress_scores": "metrics",
    "XpressScores": "metrics",
    "rand_voi": "metrics",
    "RandVoi": "metrics",
    "SkeletonIndex": "metrics",
    "VALIDATION_ROI": "rois",
    "TEST_ROI": "rois",
    "Roi": "rois",
    "XpressWarning": "_validate",
    # segmentation
    "watershed": "fragments",
    "blockwise_watershed": "fragments",
    "region_graph": "region_graphs",
    "RegionGraph": "region_graphs",
    "long_range_graph": "region_graphs",
    "axis_offsets": "region_graphs",
    "agglomerate": "agglomeration",
    "merge_history": "agglomeration",
    "Agglomeration": "agglomeration",
    "MERGE_FUNCTIONS": "agglomeration",
    "DEFAULT_MERGE_FUNCTION": "agglomeration",
    "check_merge_function": "agglomeration",
    "save_region_graph": "saved",
    "load_region_graph": "saved",
    "save_agglomeration": "saved",
    "load_agglomeration": "saved",
    "mutex_watershed": "mutex",
    "map_labels": "relabel",
    # threshold sweeps scored against skeletons
    "sweep": "sweeps",
    "SweepResult": "sweeps",
    "sweep_methods": "sweeps",
    "MethodSweepResult": "sweeps",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpress_fast' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
