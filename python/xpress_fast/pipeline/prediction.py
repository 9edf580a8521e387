"""Block-wise affinity prediction on dask: raw on disk -> ``out.zarr/affinities``, resumable.

The volume is cut into blocks (:class:`~xpress_fast.pipeline.BlockLayout`); each block task
loads the U-Net from the checkpoint (once per process, then cached), reads its block plus the
context its windows need, predicts, and writes its core. Like the other stages
(:mod:`xpress_fast.pipeline.stages`) it runs on dask's local threaded, process or synchronous
scheduler or on a ``dask.distributed`` cluster, retries a failed block a bounded number of times,
and records each finished block, so a killed run resumes from its completed blocks::

    out.zarr/affinities                 (C, Z, Y, X) float32 or uint8, with resolution/offset
    out.zarr/.xpress_fast/predict-<dataset>.json       the run's settings
    out.zarr/.xpress_fast/records/predict-<dataset>/   one completion record per block

The dataset is written as ``affinities.partial`` and renamed when every block is done.

Exactness: the result is *identical* to the in-memory :func:`xpress_fast.unet.predict` of the
whole volume with the same tiling options. Prediction is tiled by
:class:`xpress_fast.unet.predict.Tiling`, whose tile grid and windows depend only on the volume's
shape, the model and the options. Every block is a union of whole tiles of that one global grid
(``block_shape`` must be a multiple of the tile on each axis it does not cover whole), and a block
predicts exactly its tiles, each from the same window as in :func:`~xpress_fast.unet.predict`
(read from a copy of the block's mirror-padded context region, which holds the same values), with
the same weights and the same code (:func:`xpress_fast.unet.predict._predict_tiles`). So every
output voxel comes from the same forward pass on the same input. With ``batch_size=1`` (the
default) nothing else can differ on a deterministic backend (CPU; the same torch build and thread
settings). With ``batch_size > 1`` windows are batched within a block instead of across the whole
volume; backends whose kernels depend on the batch size may then differ in the last bits.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .blocks import BlockLayout
from .._extras import require
from .runner import (WORK, CompletionRecords, RunChanged, StageReport, check_inputs_unchanged, check_run_options,
                     check_run_settings, remove_stale_temporaries, run_blocks)

log = logging.getLogger(__name__)

#: Blocks aim at this edge (rounded up to a multiple of the tile) when no block_shape is given.
DEFAULT_BLOCK_EDGE = 128
#: Chunks of the output aim at this edge at most (a block holds whole chunks).
MAX_CHUNK_EDGE = 64


@dataclass(frozen=True)
class PredictResult:
    """What :func:`predict_volume` wrote.

    Attributes
    ----------
    out : Path
        The zarr container.
    dataset : str
        The affinities' dataset in ``out``.
    shape : tuple
        ``(C, Z, Y, X)``.
    dtype : numpy.dtype
    tile_shape : tuple
        The output tile per network window (after fitting it to the network and the volume).
    block_shape : tuple
        The block shape (clipped to the volume).
    n_blocks : int
    report : StageReport or None
        Blocks run, skipped (complete before), retries; None when the dataset was already
        complete and nothing ran.
    seconds : float
    """

    out: Path
    dataset: str
    shape: tuple
    dtype: np.dtype
    tile_shape: tuple
    block_shape: tuple
    n_blocks: int
    report: Optional[StageReport]
    seconds: float

    @property
    def up_to_date(self) -> bool:
        """Nothing was left to do: the dataset was complete, from the same settings and inputs."""
        return self.report is None


# ------------------------------------------------------------------------------------------------
# helpers


def _file_digest(path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stage_name(dataset: str) -> str:
    """Records folder / settings name of the prediction into ``dataset`` (one per dataset, so
    one container can hold several predictions)."""
    return "predict-" + re.sub(r"[^A-Za-z0-9_.-]", "_", dataset)


def _default_block_shape(tile, shape) -> tuple:
    return tuple(min(s, -(-DEFAULT_BLOCK_EDGE // t) * t) for t, s in zip(tile, shape))


def _check_block_shape(block_shape, tile, shape) -> tuple:
    """``block_shape`` clipped to the volume, refused unless every block holds whole tiles."""
    from .._validate import int_triple

    bs = int_triple("block_shape", block_shape)
    bad = [a for a in range(3) if bs[a] < shape[a] and bs[a] % tile[a]]
    if bad:
        suggest = tuple(b if a not in bad else max(1, round(b / t)) * t
                        for a, (b, t) in enumerate(zip(bs, tile)))
        raise ValueError(
            f"block_shape must be a multiple of the tile shape {tile} on every axis it does not "
            f"cover whole (volume {shape}), so that blocks hold whole tiles of the one tile grid; "
            f"got {bs} (e.g. {suggest})"
        )
    return tuple(min(b, s) for b, s in zip(bs, shape))


def _chunk_shape(block, tile, shape) -> tuple:
    """Spatial zarr chunks that never straddle two blocks (concurrent blocks would race on a shared
    chunk's read-modify-write), as large as possible up to ``MAX_CHUNK_EDGE``: a multiple of the
    tile that divides the block, or anything up to the block on axes with one block."""
    chunks = []
    for b, t, s in zip(block, tile, shape):
        cap = max(t, MAX_CHUNK_EDGE)
        if b >= s:  # one block on this axis: chunk boundaries cannot cut a block
            chunks.append(min(s, cap))
            continue
        k = b // t
        m = max(d for d in range(1, k + 1) if k % d == 0 and d * t <= cap)
        chunks.append(m * t)
    return tuple(chunks)


# ------------------------------------------------------------------------------------------------
# the block function (module level, so the process and distributed schedulers can pickle it)

#: The model of each process, keyed by (checkpoint, digest, device): loaded by the first block a
#: process runs and shared by its threads (prediction only reads the model).
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _cached_model(checkpoint: str, digest: str, device):
    key = (checkpoint, digest, device)
    with _MODELS_LOCK:  # one load per process, even when several threads start at once
        hit = _MODELS.get(key)
        if hit is None:
            from ..unet.predict import _prepare
            from ..unet.train import choose_device, load_model

            # the checkpoint must be the one the run was planned with, or blocks would mix models
            if _file_digest(checkpoint) != digest:
                raise ValueError(f"checkpoint {checkpoint!r} changed since the run started")
            dev = choose_device(device)
            model = _prepare(load_model(checkpoint), dev)
            _MODELS.clear()  # keep one model: a long-lived worker must not pile up old ones
            _MODELS[key] = hit = (model, dev)
        return hit


class _PredictBlock:
    """Predict the tiles of one block and write its core into ``out/<dataset>.partial``."""

    def __init__(self, raw_path, raw_dataset, checkpoint, digest, out, partial, tiling, *, device,
                 batch_size, dtype, amp):
        self.raw_path, self.raw_dataset = str(raw_path), raw_dataset
        self.checkpoint, self.digest = str(checkpoint), digest
        self.out, self.partial, self.tiling = str(out), partial, tiling
        self.device, self.batch_size, self.dtype, self.amp = device, int(batch_size), np.dtype(dtype), bool(amp)

    def __call__(self, block) -> dict:
        zarr = require("zarr", "the block-wise pipeline")

        from ..io import open_volume
        from ..unet.predict import _predict_tiles, _read_window

        model, dev = _cached_model(self.checkpoint, self.digest, self.device)
        tiles = self.tiling.tiles(block.begin, block.end)
        # one read of the union of the block's windows (mirror-padded like each window alone);
        # each window is then a view of it with the values _read_window would give
        lo = tuple(min(t[2][a] for t in tiles) for a in range(3))
        hi = tuple(max(t[3][a] for t in tiles) for a in range(3))
        raw = open_volume(self.raw_path, self.raw_dataset).data
        region = _read_window(raw, lo, hi)

        def read(w_lo, w_hi):
            return region[tuple(slice(a - o, b - o) for a, b, o in zip(w_lo, w_hi, lo))]

        buf = np.zeros((model.out_channels,) + block.shape, self.dtype)
        _predict_tiles(model, read, tiles, buf, origin=block.begin, out_dtype=self.dtype,
                       batch_size=self.batch_size, dev=dev, amp=self.amp)
        z = zarr.open_array(str(Path(self.out) / self.partial), mode="r+")
        z[(slice(None),) + block.core] = buf
        return {"tiles": len(tiles)}


# ------------------------------------------------------------------------------------------------


def predict_volume(
    raw,
    raw_dataset: str,
    checkpoint,
    out,
    *,
    out_dataset: str = "affinities",
    block_shape=None,
    tile_shape=(64, 64, 64),
    overlap=None,
    batch_size: int = 1,
    dtype="float32",
    device=None,
    amp: bool = True,
    scheduler: str = "threads",
    workers: Optional[int] = None,
    retries: int = 2,
    progress: Optional[Callable] = None,
    restart: bool = False,
) -> PredictResult:
    """Predict affinities block-wise on dask into ``out/out_dataset``, identical to
    :func:`xpress_fast.unet.predict` of the whole volume (see the module's notes).

    Parameters
    ----------
    raw : str or Path
        HDF5 or zarr container holding ``raw_dataset``: ``(Z, Y, X)`` uint8, uint16, float32 or
        float64, with ``resolution`` (and optionally ``offset``) attrs.
    checkpoint : str or Path
        A checkpoint written by :func:`xpress_fast.unet.train` / ``save_checkpoint``. Every worker
        loads it (once per process), so it must lie on a file system they all see.
    out : str or Path
        A zarr container (``.zarr``) for the affinities and the run's records.
    out_dataset : str
        The affinities' dataset in ``out``.
    block_shape : 3 ints, optional
        Block shape in voxels: a multiple of the tile shape (``tile_shape`` after
        :class:`~xpress_fast.unet.predict.Tiling` fits it to the network and the volume) on every
        axis where it is smaller than the volume. Default: the smallest multiple of the tile of at
        least 128 voxels per axis (clipped to the volume).
    tile_shape, overlap, batch_size, dtype, amp
        As ``block_shape``, ``overlap``, ``batch_size``, ``dtype``, ``amp`` of
        :func:`xpress_fast.unet.predict` (``tile_shape`` is its ``block_shape``: the output of one
        network window).
    device : str, optional
        Torch device of every worker (default CUDA where the worker has it, else CPU).
    scheduler, workers, retries, progress
        How the blocks run, as for :func:`~xpress_fast.pipeline.run_blocks` (default: dask's
        local threads, 2 retries of a failed block).
    restart : bool
        When ``out`` holds a prediction into ``out_dataset`` with other settings, from another
        checkpoint or from a raw volume that changed since (its fingerprint,
        :func:`xpress_fast.io.dataset_fingerprint`), discard it and start afresh instead of
        refusing.

    Returns
    -------
    PredictResult

    Raises
    ------
    ValueError
        Bad input (a missing dataset, raw not 3-D, a block shape that cuts tiles, out not zarr,
        bad options or device).
    RunChanged
        (a ValueError) ``out`` holds a prediction into ``out_dataset`` with other settings or
        from a raw volume that changed since, or raw changed during this run (nothing published).
    TypeError
        ``raw``'s dtype is not one of the raw dtypes.
    FileNotFoundError
        ``raw`` or ``checkpoint`` does not exist.
    BlockFailure
        Blocks still failed after their retries; rerun to resume.
    """
    zarr = require("zarr", "the block-wise pipeline")

    from ..io import container_kind, create_zarr_array, open_volume, publish_zarr_array
    from ..unet.data import check_raw
    from ..unet.predict import Tiling, _check_model, _check_options
    from ..unet.train import choose_device

    t_start = time.perf_counter()
    out = Path(out)
    try:
        kind = container_kind(out)
    except ValueError:
        kind = None
    if kind != "zarr":
        raise ValueError(f"out must be a zarr container (a path ending in .zarr); got {str(out)!r}")
    if not isinstance(out_dataset, str) or not out_dataset or out_dataset.startswith("/") or out_dataset.endswith("/"):
        raise ValueError(f"out_dataset must be a non-empty relative name like 'affinities'; got {out_dataset!r}")
    check_run_options(scheduler=scheduler, workers=workers, retries=retries)
    raw_vol = open_volume(raw, raw_dataset)
    if len(raw_vol.shape) != 3:
        raise ValueError(f"raw must be 3-D (z, y, x); got shape {raw_vol.shape} for dataset {raw_dataset!r}")
    check_raw("raw", raw_vol.data)
    out_dtype = _check_options(dtype, batch_size)
    choose_device(device)  # a bad device fails here, not in every block's retries
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint not found: {str(checkpoint)!r}")
    # the driver loads the model once (on the CPU) to check it and to plan the tiles
    model = _check_model(Path(checkpoint))
    shape = raw_vol.spatial_shape
    tiling = Tiling.plan(model, shape, tile_shape, overlap, name="tile_shape")
    bs = (_default_block_shape(tiling.tile, shape) if block_shape is None
          else _check_block_shape(block_shape, tiling.tile, shape))
    layout = BlockLayout(shape, bs)
    channels = model.out_channels
    del model

    stage = _stage_name(out_dataset)
    work = out / WORK
    partial = f"{out_dataset}.partial"
    checkpoint = Path(checkpoint).resolve()
    digest = _file_digest(checkpoint)
    settings = {
        "raw": [str(Path(raw).resolve()), raw_dataset],
        "checkpoint": [str(checkpoint), digest],
        "dataset": out_dataset, "shape": list(shape), "block_shape": list(bs),
        "tiling": {k: v for k, v in vars(tiling).items()},
        "batch_size": int(batch_size), "dtype": out_dtype.name, "amp": bool(amp),
        "device": None if device is None else str(device),
    }
    if (out / out_dataset).is_dir() and not (work / f"{stage}.json").is_file():
        raise ValueError(f"{str(out)!r} already holds a dataset {out_dataset!r} that no block-wise "
                         "prediction wrote; use another output or dataset, or delete it")
    from ..io import dataset_fingerprint

    if not isinstance(restart, (bool, np.bool_)):
        raise TypeError(f"restart must be True or False; got {restart!r}")

    def fingerprint(name):
        return dataset_fingerprint(raw, raw_dataset)

    inputs = {"raw": fingerprint("raw")}
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    zarr.open_group(str(out), mode="a")
    records = CompletionRecords(work / "records")
    # per prediction dataset (not segment's run.json): one container can hold both runs
    holder = f"{str(out)!r} holds a prediction into {settings['dataset']!r}"
    advice = ("pass restart=True (xpress-fast predict --restart) to discard it and start afresh, or use another "
              "output or dataset")
    try:
        check_run_settings(work / f"{stage}.json", settings, holder, advice, inputs=inputs)
    except RunChanged:
        if not restart:
            raise
        import shutil

        for name in (out_dataset, partial):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        records.clear(stage)
        (work / f"{stage}.json").unlink()
        check_run_settings(work / f"{stage}.json", settings, holder, advice, inputs=inputs)
    report = None
    if not (out / out_dataset).is_dir():
        if not (out / partial).is_dir():
            records.clear(stage)  # records without their data (the .partial was deleted) are void
        create_zarr_array(out, partial, shape=(channels,) + shape, dtype=out_dtype,
                          chunks=(1,) + _chunk_shape(bs, tiling.tile, shape),
                          voxel_size=raw_vol.voxel_size, offset=raw_vol.offset)
        fn = _PredictBlock(raw, raw_dataset, checkpoint, digest, out, partial, tiling,
                           device=settings["device"], batch_size=batch_size, dtype=out_dtype, amp=amp)
        report = run_blocks(stage, layout, fn, records=records, scheduler=scheduler, workers=workers,
                            retries=retries, progress=progress)
        check_inputs_unchanged(inputs, fingerprint, f"{str(out)!r}")
        publish_zarr_array(out, partial, out_dataset)
    remove_stale_temporaries(work, started)
    return PredictResult(out, out_dataset, (channels,) + shape, out_dtype, tiling.tile, bs, len(layout), report,
                         time.perf_counter() - t_start)
