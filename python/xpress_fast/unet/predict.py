"""Tiled affinity prediction over whole volumes.

The output is cut into non-overlapping tiles of ``block_shape``; each tile is predicted from an
input window that extends ``overlap`` voxels (same padding) or the network's context (valid
padding) beyond it on every side, and only the tile's centre part is kept ("overlap-crop"
blending: every output voxel comes from the window in which it lies furthest from the window's
border). Tiles are written one by one, so the output may be a zarr array larger than memory.

* valid padding: the volume is mirror-padded by the context, and tiled prediction equals one-shot
  prediction on the padded volume exactly;
* same padding: windows start on the network's pooling grid and are clipped to the volume (never
  padded beyond it), so a volume that fits in one window is predicted exactly as ``model(raw)``,
  and with ``overlap >= model.receptive_radius`` every tile equals one-shot prediction; smaller
  overlaps differ only through the zero padding at window borders, kept away from the kept
  centres by ``overlap``.

The tile grid and each tile's window depend only on the volume's shape, the model and the
options (:class:`Tiling`), never on which tiles are predicted together, so a subset of the tiles
predicted elsewhere -- one block of :func:`xpress_fast.pipeline.predict_volume` -- gives the same
windows, hence the same values, as :func:`predict` of the whole volume.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from .data import check_raw, normalize_raw
from .ensemble import UNetEnsemble
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


def _check_model(model) -> UNet3D | UNetEnsemble:
    """``model`` itself, the model of a checkpoint path, or a :class:`UNetEnsemble` of a list or
    tuple of them; refuses other objects."""
    from .train import load_model

    def is_path(m) -> bool:
        return isinstance(m, (str, bytes)) or hasattr(m, "__fspath__")

    if isinstance(model, (list, tuple)):
        if not model:
            raise ValueError("model is an empty list: give a UNet3D, a checkpoint path, or a list of them")
        members: list[Any] = []
        for m in model:
            m = load_model(m) if is_path(m) else m
            members.extend(m.members if isinstance(m, UNetEnsemble) else [m])
        model = UNetEnsemble(members)
    if is_path(model):
        model = load_model(model)
    if not isinstance(model, (UNet3D, UNetEnsemble)):
        raise TypeError(f"model must be an xpress_fast.unet.UNet3D, a UNetEnsemble, a checkpoint path or a list "
                        f"of them; got {type(model).__name__}")
    if model.config["in_channels"] != 1:
        raise ValueError(f"model must take one input channel (raw); got in_channels={model.config['in_channels']}")
    return model


def _check_options(dtype, batch_size) -> np.dtype:
    """Validate the output ``dtype`` and ``batch_size``; returns the output numpy dtype."""
    if dtype not in ("float32", "uint8", np.float32, np.uint8):
        raise ValueError(f"dtype must be 'float32' or 'uint8'; got {dtype!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size!r}")
    return np.dtype(dtype)


@dataclass(frozen=True)
class Tiling:
    """The tile grid of one volume for one model: which window predicts which output tile.

    Plain tuples only, so that it pickles to dask workers without the model.

    Attributes
    ----------
    shape : 3 ints
        The volume's (z, y, x) shape.
    tile : 3 ints
        The output tile per window (the last tile of an axis is cut at the volume's end).
    padding : "same" or "valid"
    factor : 3 ints
        The network's total downsampling (same-padding windows start on this grid).
    overlap : 3 ints
        Same padding: context on each side of a tile.
    window_shape, context : 3 ints
        Valid padding: the input window, and the voxels it adds on each side of its tile.
    """

    shape: tuple
    tile: tuple
    padding: str
    factor: tuple
    overlap: tuple = (0, 0, 0)
    window_shape: tuple = (0, 0, 0)
    context: tuple = (0, 0, 0)

    @classmethod
    def plan(cls, model: UNet3D | UNetEnsemble, shape, block_shape=(64, 64, 64), overlap=None, *,
             name: str = "block_shape") -> Tiling:
        """The tiling that :func:`predict` uses for ``model`` on a volume of ``shape``
        (``name``: what the caller calls ``block_shape``, for error messages)."""
        block = _triple(name, block_shape)
        if any(b < 1 for b in block):
            raise ValueError(f"{name} must be positive; got {block_shape!r}")
        shape = tuple(int(s) for s in shape)
        factor = tuple(int(f) for f in model.total_factor)
        if model.padding == "valid":
            block = tuple(min(b, s) for b, s in zip(block, shape))
            win = model.valid_input_shape(block)
            tile = model.output_shape(win)
            ctx = tuple((w - b) // 2 for w, b in zip(win, tile))
            return cls(shape, tuple(tile), "valid", factor, window_shape=tuple(win), context=ctx)
        if overlap is None:
            ov = tuple(max(8, b // 4) for b in block)
        else:
            ov = _triple("overlap", overlap)
            if any(o < 0 for o in ov):
                raise ValueError(f"overlap must be >= 0; got {overlap!r}")
        tile = tuple(min(b, s) for b, s in zip(block, shape))
        return cls(shape, tile, "same", factor, overlap=ov)

    def window(self, b0, b1) -> tuple:
        """Input window ``[lo, hi)`` and the slices of its output that are the tile ``[b0, b1)``."""
        if self.padding == "valid":
            lo = tuple(b - c for b, c in zip(b0, self.context))
            hi = tuple(l + w for l, w in zip(lo, self.window_shape))
            keep = tuple(slice(0, e - b) for b, e in zip(b0, b1))  # output starts at lo + ctx = b0
        else:
            # starts on the pooling grid, ends at the volume's end or ``overlap`` past the tile
            lo = tuple(max(0, (b - o) // f * f) for b, o, f in zip(b0, self.overlap, self.factor))
            hi = tuple(min(s, e + o) for e, o, s in zip(b1, self.overlap, self.shape))
            keep = tuple(slice(b - l, e - l) for b, e, l in zip(b0, b1, lo))
        return lo, hi, keep

    def tiles(self, begin=(0, 0, 0), end=None) -> list:
        """``(b0, b1, lo, hi, keep)`` of every tile of the global grid that starts inside the box
        ``[begin, end)`` (default the whole volume), in C order."""
        end = self.shape if end is None else tuple(end)
        starts = [range(-(-a // t) * t, min(e, s), t) for a, e, t, s in zip(begin, end, self.tile, self.shape)]
        out = []
        for b0 in itertools.product(*starts):
            b1 = tuple(min(s, b + t) for b, t, s in zip(b0, self.tile, self.shape))
            out.append((b0, b1) + self.window(b0, b1))
        return out


@contextlib.contextmanager
def _on_device(model: UNet3D | UNetEnsemble, dev):
    """``model`` in eval mode on ``dev`` inside the ``with``; its device and mode restored afterwards."""
    was_training = model.training
    orig_device = next(model.parameters()).device
    _prepare(model, dev)
    try:
        yield model
    finally:
        model.to(orig_device)
        if was_training:
            model.train()


def _prepare(model: UNet3D | UNetEnsemble, dev) -> UNet3D | UNetEnsemble:
    """Put ``model`` in eval mode on ``dev`` (channels-last on CUDA), ready for :func:`_predict_tiles`."""
    model.eval()
    model.to(dev)
    if dev.type == "cuda":
        # torch's stubs lack Module.to(memory_format=...), which torch accepts
        model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    return model


def _predict_tiles(
    model: UNet3D | UNetEnsemble,
    read: Callable,
    tiles: list,
    out,
    *,
    origin=(0, 0, 0),
    out_dtype=np.float32,
    batch_size: int = 1,
    dev=None,
    amp: bool = True,
    on_batch: Optional[Callable] = None,
) -> None:
    """Predict ``tiles`` (from :meth:`Tiling.tiles`) with a prepared model, writing each tile's
    kept part into ``out`` at its position minus ``origin``.

    ``read(lo, hi)`` returns the raw window ``[lo, hi)`` (mirror-padded outside the volume). The
    model is used read-only (no device or mode changes), so threads may share it.
    """
    dev = next(model.parameters()).device if dev is None else dev
    cuda = dev.type == "cuda"
    out_dtype = np.dtype(out_dtype)

    def win_shape(item):
        return tuple(h - l for l, h in zip(item[2], item[3]))

    # batch windows of equal shape together (same padding: border windows are smaller)
    order = sorted(tiles, key=win_shape)
    batches: list[list[tuple]] = []
    cur: list[tuple] = []
    for item in order:
        if cur and (len(cur) == int(batch_size) or win_shape(item) != win_shape(cur[0])):
            batches.append(cur)
            cur = []
        cur.append(item)
    if cur:
        batches.append(cur)

    with torch.inference_mode():
        for chunk in batches:
            windows = [normalize_raw(read(lo, hi)) for _, _, lo, hi, _ in chunk]
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
                out[(slice(None),) + tuple(slice(a - o, b - o) for a, b, o in zip(b0, b1, origin))] = part
            if on_batch is not None:
                on_batch(len(chunk))


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
    model : UNet3D, UNetEnsemble, a checkpoint path, or a list of them (their mean: an ensemble)
    block_shape : int or three ints
        Output tile predicted per window (valid padding: grown to a size the network accepts;
        clipped to the volume).
    overlap : int or three ints, optional
        Same padding only: context added on each side of a tile (default a quarter of the tile,
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
        tqdm progress bar over tiles.

    Returns
    -------
    (C, Z, Y, X) numpy array of ``dtype``, or ``out``.

    See Also
    --------
    xpress_fast.pipeline.predict_volume : the same prediction, block-wise on dask, resumable.
    """
    from .train import choose_device

    check_raw("raw", raw)
    model = _check_model(model)
    out_dtype = _check_options(dtype, batch_size)
    shape = tuple(int(s) for s in raw.shape)
    tiling = Tiling.plan(model, shape, block_shape, overlap)
    C = model.out_channels
    if out is None:
        out = np.zeros((C,) + shape, dtype=out_dtype)
    else:
        if tuple(out.shape) != (C,) + shape:
            raise ValueError(f"out must have shape {(C,) + shape}; got {tuple(out.shape)}")
        if np.dtype(out.dtype) != out_dtype:
            raise TypeError(f"out.dtype must be {out_dtype}; got {np.dtype(out.dtype)}")

    dev = choose_device(device)
    tiles = tiling.tiles()

    from tqdm.auto import tqdm

    bar = tqdm(total=len(tiles), disable=not progress, desc="predict")
    try:
        with _on_device(model, dev):
            _predict_tiles(model, lambda lo, hi: _read_window(raw, lo, hi), tiles, out, out_dtype=out_dtype,
                           batch_size=int(batch_size), dev=dev, amp=amp, on_batch=bar.update)
    finally:
        bar.close()
    return out
