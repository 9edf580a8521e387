"""A CUDA-ready PyTorch 3D U-Net for affinities (needs the ``[torch]`` extra).

Train from voxel labels, from skeletons alone, or from both; predict block-wise over volumes::

    from xpress_fast.synthetic import make_volume
    from xpress_fast.unet import TrainConfig, train, predict, load_model

    vol = make_volume((96, 96, 96), seed=0)
    result = train(vol.raw, labels=vol.labels, config=TrainConfig.tiny(), checkpoint_dir="ckpt")
    affs = predict(vol.raw, result.model)              # (9, 96, 96, 96) float32 in [0, 1]
    model = load_model(result.checkpoint)              # later, from the checkpoint

Channel ``c`` links voxel ``v`` to ``v + model.offsets[c]``; the first three channels are the
nearest neighbours ``-e_z, -e_y, -e_x`` that :func:`xpress_fast.agglomerate` consumes.
"""
from __future__ import annotations

from .._extras import require

require("torch", "xpress_fast.unet (the U-Net)")  # one line naming the extra, not torch's traceback

from .augment import AugmentConfig, augment
from .data import TrainingVolume, normalize_raw, open_training_volume
from .losses import affinity_loss, balanced_weights, gap_negative_loss, path_negative_loss
from .ensemble import UNetEnsemble
from .model import DEFAULT_OFFSETS, UNet3D, default_offsets
from .predict import predict
from .targets import (
    AffinityTargets, affinities_from_labels, gap_negatives, grow_boundary, rasterize_skeletons,
)
from .train import TrainConfig, TrainResult, choose_device, load_model, save_checkpoint, train
from .labels import (PseudoLabels, mine_background, node_voxels, select_pseudo_labels, skeleton_label_volume,
                     skeleton_radii)
from .skeleton_training import (
    SkeletonRecipe, SkeletonTrainingResult, check_skeleton_training_input, evaluate_affinities, plot_history,
    train_from_skeletons,
)

__all__ = [
    "AffinityTargets", "AugmentConfig", "DEFAULT_OFFSETS", "TrainConfig", "TrainResult", "TrainingVolume",
    "UNet3D", "UNetEnsemble", "affinities_from_labels", "affinity_loss", "augment", "balanced_weights", "choose_device",
    "default_offsets", "gap_negative_loss", "gap_negatives", "grow_boundary", "load_model", "normalize_raw",
    "open_training_volume", "path_negative_loss", "predict", "rasterize_skeletons", "save_checkpoint", "train",
    "PseudoLabels", "mine_background", "node_voxels", "select_pseudo_labels", "skeleton_label_volume", "skeleton_radii",
    "SkeletonRecipe", "SkeletonTrainingResult", "check_skeleton_training_input", "evaluate_affinities",
    "plot_history", "train_from_skeletons",
]
