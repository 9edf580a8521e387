"""Block-wise affinity prediction over whole volumes.

The output is cut into non-overlapping blocks of ``block_shape``; each block is predicted from an
input window that extends ``overlap`` voxels (same padding) or the network's context (valid
padding) beyond it on every side, and only the block's centre part is kept ("overlap-crop"
blending: every output voxel comes from the window in which it lies furthest from the window's
border). Blocks are written one by one, so the output may be a zarr array larger than memory.

* valid padding: the volume is mirror-padded by the context, and tiled prediction equals one-shot
  prediction on the padded volume exactly;
* same padding: windows start on the network's pooling grid and are clipped to the volume (never
  padded beyond it), so a volume that fits in one window is predicted exactly as ``model(raw)``,
  and with ``overlap >= model.receptive_radius`` every block equals one-shot prediction; smaller
  overlaps differ only through the zero padding at window borders, kept away from the kept
  centres by ``overlap``.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np
import torch

from .data import check_raw, normalize_raw
from .model import UNet3D

__all__ = ["predict"]

logger = logging.getLogger(__name__)


def _reflect_index(idx: np.ndarray, size: int) -> np.ndarray:
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    m = np.mod(idx, period)
    return np.where(m < size, m, period - m)


def _read_window(raw, lo, hi) -> np.ndarray:
    """``raw[lo:hi]`` with mirror padding outside the volume (reads only the needed region)."""
    shape = raw.shape
    idx = [_reflect_index(np.arange(l, h), s) for l, h, s in zip(lo, hi, shape)]
    r_lo = [int(i.min()) for i in idx]
    r_hi = [int(i.max()) + 1 for i in idx]
    region = np.asarray(raw[tuple(slice(a, b) for a, b in zip(r_lo, r_hi))])
    if all(l >= 0 for l in lo) and all(h <= s for h, s in zip(hi, shape)):
        return region
    return region[np.ix_(*[i - a for i, a in zip(idx, r_lo)])]


def _triple(name, value) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        value = (int(value),) * 3
    try:
        t = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be an int or three ints; got {value!r}") from None
    if len(t) != 3:
        raise ValueError(f"{name} must be an int or three ints; got {value!r}")
    return t


def predict(
    raw,
    model,
    *,
    block_shape=(64, 64, 64),
    overlap=None,
    batch_size: int = 1,
    device=None,
    dtype="float32",
    out=None,
    amp: bool = True,
    progress: bool = False,
) -> Any:
    """Predict affinities for a whole volume.

    Parameters
    ----------
    raw : (Z, Y, X) array-like of uint8, uint16, float32 or float64 (numpy, h5py, zarr)
        Normalised like in training (:func:`xpress_fast.unet.data.normalize_raw`).
    model : UNet3D or path to a checkpoint
    block_shape : int or three ints
        Output block predicted per window (rounded up to the network's downsampling grid, and
        clipped to the volume).
    overlap : int or three ints, optional
        Same padding only: context added on each side of a block (default a quarter of the block,
        at least 8). With ``overlap >= model.receptive_radius`` the result equals one-shot
        prediction of the whole volume. Valid padding always uses the network's context.
    batch_size : int
        Windows per forward pass.
    device : torch device or str, optional
        Default CUDA when available, else CPU.
    dtype : "float32" or "uint8"
        Output type (uint8: affinities * 255, rounded).
    out : array-like of shape (C, Z, Y, X), optional
        Write here (e.g. a zarr array) instead of allocating a numpy array.
    amp : bool
        Autocast to float16 on CUDA.
    progress : bool
        tqdm progress bar over blocks.

    Returns
    -------
    (C, Z, Y, X) numpy array of ``dtype``, or ``out``.
    """
    from .train import choose_device, load_model

    check_raw("raw", raw)
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        model = load_model(model)
    if not isinstance(model, UNet3D):
        raise TypeError(f"model must be an xpress_fast.unet.UNet3D or a checkpoint path; got {type(model).__name__}")
    if model.config["in_channels"] != 1:
        raise ValueError(f"model must take one input channel (raw); got in_channels={model.config['in_channels']}")
    if dtype not in ("float32", "uint8", np.float32, np.uint8):
        raise ValueError(f"dtype must be 'float32' or 'uint8'; got {dtype!r}")
    out_dtype = np.dtype(dtype)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
    block = _triple("block_shape", block_shape)
    if any(b < 1 for b in block):
        raise ValueError(f"block_shape must be positive; got {block_shape!r}")
    shape = tuple(int(s) for s in raw.shape)
    C = model.out_channels
    if out is None:
        out = np.zeros((C,) + shape, dtype=out_dtype)
    else:
        if tuple(out.shape) != (C,) + shape:
            raise ValueError(f"out must have shape {(C,) + shape}; got {tuple(out.shape)}")
        if np.dtype(out.dtype) != out_dtype:
            raise TypeError(f"out.dtype must be {out_dtype}; got {np.dtype(out.dtype)}")

    dev = choose_device(device)
    cuda = dev.type == "cuda"
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    orig_device = param.device
    model.to(dev)
    if cuda:
        model.to(memory_format=torch.channels_last_3d)

    factor = model.total_factor
    if model.padding == "valid":
        block = tuple(min(b, s) for b, s in zip(block, shape))
        win = model.valid_input_shape(block)
        block = model.output_shape(win)
        ctx = tuple((w - b) // 2 for w, b in zip(win, block))
    else:
        if overlap is None:
            ov = tuple(max(8, b // 4) for b in block)
        else:
            ov = _triple("overlap", overlap)
            if any(o < 0 for o in ov):
                raise ValueError(f"overlap must be >= 0; got {overlap!r}")
        block = tuple(min(b, s) for b, s in zip(block, shape))

    def window(b0, b1):
        """Input window [lo, hi) and the slice of its output that is the block [b0, b1)."""
        if model.padding == "valid":
            lo = tuple(b - c for b, c in zip(b0, ctx))
            hi = tuple(l + w for l, w in zip(lo, win))
            keep = tuple(slice(0, e - b) for b, e in zip(b0, b1))  # output starts at lo + ctx = b0
        else:
            # starts on the pooling grid, ends at the volume's end or ``overlap`` past the block
            lo = tuple(max(0, (b - o) // f * f) for b, o, f in zip(b0, ov, factor))
            hi = tuple(min(s, e + o) for e, o, s in zip(b1, ov, shape))
            keep = tuple(slice(b - l, e - l) for b, e, l in zip(b0, b1, lo))
        return lo, hi, keep

    starts = [list(range(0, s, b)) for s, b in zip(shape, block)]
    blocks = []
    for b0 in itertools.product(*starts):
        b1 = tuple(min(s, b + k) for b, k, s in zip(b0, block, shape))
        blocks.append((b0, b1) + window(b0, b1))
    # batch windows of equal shape together (same padding: border windows are smaller)
    blocks.sort(key=lambda t: tuple(h - l for l, h in zip(t[2], t[3])))
    batches, cur = [], []
    for item in blocks:
        shp = tuple(h - l for l, h in zip(item[2], item[3]))
        if cur and (len(cur) == int(batch_size) or shp != tuple(h - l for l, h in zip(cur[0][2], cur[0][3]))):
            batches.append(cur)
            cur = []
        cur.append(item)
    if cur:
        batches.append(cur)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(blocks), disable=not progress, desc="predict")
    try:
        with torch.inference_mode():
            for chunk in batches:
                windows = [normalize_raw(_read_window(raw, lo, hi)) for _, _, lo, hi, _ in chunk]
                x = torch.from_numpy(np.stack(windows)[:, None]).to(dev)
                if not torch.isfinite(x).all():
                    raise ValueError("raw must not contain NaN or infinite values")
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=cuda and amp):
                    y = model(x)
                y = y.float().cpu().numpy()
                for j, (b0, b1, _, _, keep) in enumerate(chunk):
                    part = y[j][(slice(None),) + keep]
                    if out_dtype == np.uint8:
                        part = np.rint(part * 255.0).astype(np.uint8)
                    out[(slice(None),) + tuple(slice(a, b) for a, b in zip(b0, b1))] = part
                bar.update(len(chunk))
    finally:
        bar.close()
        model.to(orig_device)
        if was_training:
            model.train()
    return out
