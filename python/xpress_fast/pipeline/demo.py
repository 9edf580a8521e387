"""The demo: the whole pipeline on generated data, no downloads.

synthetic XNH-like volumes (one to train on, one to test on) -> a tiny U-Net trained briefly ->
affinities of the test volume -> block-wise fragments + one agglomeration on dask -> the XPRESS
scores of every threshold from one sweep -> a report (scores.json/.csv, scores.png, slices.png)
beside the trivial segmentations' scores (all one label; one label per voxel).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..sweeps import DEFAULT_THRESHOLDS as THRESHOLDS

log = logging.getLogger(__name__)


def trivial_scores(skeletons, shape, *, voxel_size, offset) -> dict:
    """ERL+Rand of the two trivial segmentations: all one label, and one label per voxel."""
    from ..metrics import SkeletonIndex

    index = SkeletonIndex(skeletons, voxel_size=voxel_size, offset=offset, shape=shape)
    one = index.score_node_labels(np.ones(index.n_nodes, np.uint64))
    per_voxel = index.score_node_labels(
        np.ravel_multi_index(tuple(index.node_voxels.T), shape).astype(np.uint64) + 1)
    return {"one_label": one.xpress_erl_rand, "per_voxel": per_voxel.xpress_erl_rand}


def run_demo(
    out,
    *,
    quick: bool = False,
    seed: int = 0,
    size: Optional[int] = None,
    iterations: Optional[int] = None,
    progress: Optional[Callable] = None,
    log: Optional[Callable[[str], None]] = None,
) -> dict:
    """Run the demo into the directory ``out``; returns a summary dict (also ``summary.json``).

    ``out`` then holds ``data.zarr`` (the test volume's ``raw``, ``labels`` and predicted
    ``affinities``), ``skeletons.npz`` (its skeletons), ``train.zarr`` and
    ``train_skeletons.npz`` (the training volume), ``model/`` (the checkpoint),
    ``segmentation.zarr`` (fragments, segmentations, the merge history) and ``report/``.

    ``quick``: a 32³ volume and 10 training steps (tens of seconds; for tests). Otherwise 64³
    and 1500 steps (about two minutes on two CPU cores). ``log`` receives one line per stage.
    """
    from ..io import open_volume, write_volume
    from ..report import plot_scores, plot_slices, write_scores
    from ..skeletons import save_skeletons
    from ..sweeps import sweep
    from ..synthetic import make_volume
    from .stages import load_agglomeration, segment_volume

    from .. import unet  # MissingExtra (an ImportError) naming the [torch] extra when torch is absent

    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    size = int(size or (32 if quick else 64))
    steps = int(iterations if iterations is not None else (10 if quick else 1500))
    if size < 24:
        raise ValueError(f"size must be at least 24 voxels; got {size}")
    if steps < 0:
        raise ValueError(f"iterations must be >= 0; got {steps}")

    say(f"[1/6] synthetic volumes {size}^3 at 33 nm (train: seed {seed}, test: seed {seed + 1})")
    train_vol = make_volume((size,) * 3, seed=seed)
    test_vol = make_volume((size,) * 3, seed=seed + 1)
    data = out / "data.zarr"
    geo: dict[str, Any] = dict(voxel_size=test_vol.voxel_size, offset=test_vol.offset)
    write_volume(data, "raw", test_vol.raw, **geo)
    write_volume(data, "labels", test_vol.labels, **geo)
    save_skeletons(test_vol.skeletons, out / "skeletons.npz")
    # the training volume too, so each step can be rerun by hand from the command line
    write_volume(out / "train.zarr", "raw", train_vol.raw, **geo)
    write_volume(out / "train.zarr", "labels", train_vol.labels, **geo)
    save_skeletons(train_vol.skeletons, out / "train_skeletons.npz")

    say(f"[2/6] training a tiny U-Net for {steps} steps on the CPU")
    cfg = unet.TrainConfig.tiny(steps=steps, seed=seed, checkpoint_every=max(steps, 1))
    result = unet.train(train_vol.raw, labels=train_vol.labels, config=cfg, checkpoint_dir=out / "model",
                        device="cpu", progress=progress is not None)

    say("[3/6] predicting affinities of the test volume")
    affs = unet.predict(test_vol.raw, result.model, device="cpu", dtype="uint8", progress=progress is not None)
    write_volume(data, "affinities", affs[:3], **geo)

    say("[4/6] fragments + one agglomeration, block-wise on dask")
    seg_out = out / "segmentation.zarr"
    block = max(16, size // 2)
    seg = segment_volume(data, "affinities", seg_out, thresholds=THRESHOLDS, block_shape=(block,) * 3,
                         context=(8, 8, 8), watershed_options={"min_seed_distance": 5}, progress=progress)

    say(f"[5/6] sweeping {len(THRESHOLDS)} thresholds against the skeletons")
    agg = load_agglomeration(seg_out)
    frags = open_volume(seg_out, "fragments").data
    swept = sweep(agg, test_vol.skeletons, voxel_size=test_vol.voxel_size, offset=test_vol.offset,
                  fragments=frags)
    rows = swept.rows()
    best = swept.best()
    trivial = trivial_scores(test_vol.skeletons, test_vol.labels.shape, **geo)

    say("[6/6] writing the report")
    report = out / "report"
    write_scores(rows, report)
    plot_scores(rows, report / "scores.png", title=f"demo: {size}^3 synthetic, {steps} training steps",
                baselines={"all one label": trivial["one_label"], "one label per voxel": trivial["per_voxel"]})
    from .stages import segmentation_dataset

    best_seg = open_volume(seg_out, segmentation_dataset(best["threshold"])).data[...]
    plot_slices(test_vol.raw, best_seg, report / "slices.png",
                title=f"segmentation at threshold {best['threshold']:.2f}")
    summary = {
        "seconds": time.perf_counter() - t_start, "report": str(report), "size": size, "steps": steps,
        "best": best, "trivial": trivial, "n_fragments": seg.n_fragments,
        "final_loss": float(result.losses[-1]) if result.losses else None,
    }
    with open(out / "summary.json", "w") as fh:
        json.dump(summary, fh, indent=1, default=lambda o: None)
    return summary
