"""Block-wise processing on dask: the pipeline that scales from a laptop to a cluster.

See :mod:`xpress_fast.pipeline.stages` for the design. Public names:

* :func:`predict_volume` -- raw on disk + a U-Net checkpoint -> affinities (needs torch)
* :func:`segment_volume` -- affinities on disk -> fragments + segmentations at thresholds
* :func:`load_agglomeration` -- the global merge history of a finished run (for sweeps)
* :class:`BlockLayout`, :class:`Block` -- the block grid
* :func:`run_blocks`, :class:`CompletionRecords`, :class:`BlockFailure` -- the runner
* :class:`RunChanged` -- an output holds a run with other settings or from changed inputs
* :func:`view_outputs`, :func:`find_outputs` -- the outputs in neuroglancer (needs ``[view]``)
"""
from .blocks import Block, BlockLayout
from .prediction import PredictResult, predict_volume
from .runner import BlockFailure, CompletionRecords, RunChanged, StageReport, run_blocks
from .stages import SegmentResult, load_agglomeration, segment_volume, segmentation_dataset
from .view import PipelineOutputs, find_outputs, view_outputs

__all__ = ["Block", "BlockLayout", "BlockFailure", "CompletionRecords", "RunChanged", "StageReport", "run_blocks",
           "PredictResult", "predict_volume", "SegmentResult", "load_agglomeration", "segment_volume",
           "segmentation_dataset", "PipelineOutputs", "find_outputs", "view_outputs"]
