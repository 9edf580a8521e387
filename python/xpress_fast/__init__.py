"""xpress-fast: segmentation and skeleton-based evaluation for 3D connectomics volumes.

Axes are (z, y, x) everywhere, physical sizes are in nm and called ``voxel_size``; affinities
are ``(C, Z, Y, X)`` with channel ``c`` linking voxel ``v`` to ``v + offsets[c]`` (default: the
three nearest neighbours ``-e_z, -e_y, -e_x``). VOI is in bits.

Public names are imported lazily so that ``import xpress_fast`` stays cheap and never pulls in
torch (the U-Net lives in :mod:`xpress_fast.unet`, behind the ``[torch]`` extra).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the lazy names below, for type checkers (tests/test_typing.py checks they agree)
    from ._validate import XpressWarning as XpressWarning
    from .agglomeration import (
        Agglomeration as Agglomeration, DEFAULT_MERGE_FUNCTION as DEFAULT_MERGE_FUNCTION,
        MERGE_FUNCTIONS as MERGE_FUNCTIONS, agglomerate as agglomerate,
        check_merge_function as check_merge_function, merge_history as merge_history,
    )
    from .fragments import blockwise_watershed as blockwise_watershed, watershed as watershed
    from .metrics import (
        ErlResult as ErlResult, RandVoi as RandVoi, SkeletonIndex as SkeletonIndex, XpressScores as XpressScores,
        erl as erl, rand_voi as rand_voi, xpress_scores as xpress_scores,
    )
    from .mutex import mutex_watershed as mutex_watershed
    from .region_graphs import (
        RegionGraph as RegionGraph, axis_offsets as axis_offsets, long_range_graph as long_range_graph,
        region_graph as region_graph,
    )
    from .relabel import map_labels as map_labels
    from .rois import Roi as Roi, TEST_ROI as TEST_ROI, VALIDATION_ROI as VALIDATION_ROI
    from .saved import (
        load_agglomeration as load_agglomeration, load_region_graph as load_region_graph,
        save_agglomeration as save_agglomeration, save_region_graph as save_region_graph,
    )
    from .skeletonize import skeletons_from_labels as skeletons_from_labels
    from .skeletons import (
        Skeletons as Skeletons, load_skeletons as load_skeletons, save_skeletons as save_skeletons,
    )
    from .sweeps import (
        MethodSweepResult as MethodSweepResult, SweepResult as SweepResult, sweep as sweep,
        sweep_methods as sweep_methods,
    )

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
