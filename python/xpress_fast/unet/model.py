"""A configurable 3D U-Net with a sigmoid affinity head.

The architecture follows the funlib / XPRESS-baseline U-Net: per level ``num_convs`` 3x3x3
convolutions + ReLU, ``fmap_inc_factor`` times more feature maps after each downsampling
(max-pooling by ``downsample_factors[l]``), upsampling by transposed convolution, skip
connections concatenated (centre-cropped in valid mode), and a 1x1x1 convolution to one channel
per affinity offset followed by a sigmoid.

``padding="valid"`` gives an output smaller than the input by the network's context on every
side (seamless tiling); ``padding="same"`` keeps the spatial shape (inputs are padded internally to
a multiple of the total downsampling factor and the output is cropped back).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet3D", "DEFAULT_OFFSETS", "default_offsets"]


def default_offsets(long_range: Sequence[int] = (3, 9, 27)) -> list[tuple[int, int, int]]:
    """Nearest neighbours ``-e_z, -e_y, -e_x`` first, then ``-k e_axis`` for every k in ``long_range``."""
    offs = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    for k in long_range:
        offs += [(-k, 0, 0), (0, -k, 0), (0, 0, -k)]
    return offs


#: The default offsets: 3 nearest-neighbour channels then 3, 9 and 27 voxels along each axis.
DEFAULT_OFFSETS: tuple[tuple[int, int, int], ...] = tuple(default_offsets())


def _triple(name: str, value) -> tuple[int, int, int]:
    if isinstance(value, int):
        value = (value,) * 3
    try:
        t = tuple(int(v) for v in value)
    except TypeError:
        raise TypeError(f"{name} must be an int or three ints; got {value!r}") from None
    if len(t) != 3 or any(v < 1 for v in t):
        raise ValueError(f"{name} must be three positive ints; got {value!r}")
    return t


class _ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, num_convs: int, kernel_size: int, padding: str, norm: str | None):
        super().__init__()
        layers: list[nn.Module] = []
        pad = kernel_size // 2 if padding == "same" else 0
        for i in range(num_convs):
            layers.append(nn.Conv3d(cin if i == 0 else cout, cout, kernel_size, padding=pad))
            if norm == "batch":
                layers.append(nn.BatchNorm3d(cout))
            elif norm == "group":
                layers.append(nn.GroupNorm(min(8, cout), cout))
            elif norm == "instance":
                layers.append(nn.InstanceNorm3d(cout, affine=True))
            layers.append(nn.ReLU(inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    sl = [slice(None), slice(None)]
    for s, t in zip(x.shape[2:], shape):
        b = (s - t) // 2
        sl.append(slice(b, b + t))
    return x[tuple(sl)]


class UNet3D(nn.Module):
    """3D U-Net predicting affinities in [0, 1].

    Parameters
    ----------
    in_channels : int
        Input channels (1 for raw).
    num_fmaps : int
        Feature maps at the top level (XPRESS baseline: 24).
    fmap_inc_factor : int
        Multiplier of the feature maps per level (baseline: 3).
    downsample_factors : sequence of 3-tuples
        Pooling factor (z, y, x) per level; ``len`` levels below the top (baseline: three 2x2x2).
    padding : "valid" or "same"
    offsets : sequence of (dz, dy, dx)
        One output channel per offset; channel c links voxel v to ``v + offsets[c]``.
        Default :data:`DEFAULT_OFFSETS` (12 channels).
    num_convs : int
        Convolutions per block.
    kernel_size : int
        Odd convolution size.
    norm : None, "batch", "group" or "instance"
        Normalisation after each convolution. ``None`` and ``"batch"`` (in eval mode) keep tiled
        prediction equal to one-shot prediction; group/instance norms depend on the tile.

    Notes
    -----
    Input ``(B, in_channels, Z, Y, X)`` float, output ``(B, len(offsets), Z', Y', X')``:
    ``Z' = Z`` for same padding; for valid padding use :meth:`output_shape` and
    :meth:`valid_input_shape`. The configuration is kept in :attr:`config` (a plain dict) so that
    checkpoints can rebuild the model (:func:`xpress_fast.unet.load_model`).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_fmaps: int = 12,
        fmap_inc_factor: int = 3,
        downsample_factors: Sequence[Sequence[int]] = ((2, 2, 2), (2, 2, 2)),
        padding: str = "same",
        offsets: Sequence[Sequence[int]] = DEFAULT_OFFSETS,
        num_convs: int = 2,
        kernel_size: int = 3,
        norm: str | None = None,
    ):
        super().__init__()
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'; got {padding!r}")
        if norm not in (None, "batch", "group", "instance"):
            raise ValueError(f"norm must be None, 'batch', 'group' or 'instance'; got {norm!r}")
        if int(in_channels) < 1 or int(num_fmaps) < 1 or int(fmap_inc_factor) < 1 or int(num_convs) < 1:
            raise ValueError(
                "in_channels, num_fmaps, fmap_inc_factor and num_convs must be >= 1; got "
                f"{in_channels!r}, {num_fmaps!r}, {fmap_inc_factor!r}, {num_convs!r}"
            )
        if int(kernel_size) < 1 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int; got {kernel_size!r}")
        factors = [_triple("downsample_factors", f) for f in downsample_factors]
        offs = [tuple(int(v) for v in o) for o in offsets]
        if not offs or any(len(o) != 3 for o in offs) or any(o == (0, 0, 0) for o in offs):
            raise ValueError(f"offsets must be a non-empty list of non-zero (dz, dy, dx); got {offsets!r}")
        self.config = dict(
            in_channels=int(in_channels), num_fmaps=int(num_fmaps), fmap_inc_factor=int(fmap_inc_factor),
            downsample_factors=[list(f) for f in factors], padding=padding, offsets=[list(o) for o in offs],
            num_convs=int(num_convs), kernel_size=int(kernel_size), norm=norm,
        )
        self.padding = padding
        self.offsets = offs
        self.downsample_factors = factors
        self.num_convs = int(num_convs)
        self.kernel_size = int(kernel_size)
        levels = len(factors)
        fm = [int(num_fmaps) * int(fmap_inc_factor) ** i for i in range(levels + 1)]
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        self.upconv = nn.ModuleList()
        for i in range(levels + 1):
            cin = in_channels if i == 0 else fm[i - 1]
            self.down.append(_ConvBlock(cin, fm[i], num_convs, kernel_size, padding, norm))
        for i in range(levels):
            f = factors[i]
            self.upconv.append(nn.ConvTranspose3d(fm[i + 1], fm[i], kernel_size=f, stride=f))
            self.up.append(_ConvBlock(2 * fm[i], fm[i], num_convs, kernel_size, padding, norm))
        self.head = nn.Conv3d(fm[0], len(offs), 1)
        # He initialisation for the ReLU layers (PyTorch's default init shrinks the signal through
        # the net; He init trained the tiny preset measurably faster on synthetic data)
        for mod in self.modules():
            if isinstance(mod, (nn.Conv3d, nn.ConvTranspose3d)) and mod is not self.head:
                nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
                if mod.bias is not None:  # always there (bias=True); Optional in torch's types
                    nn.init.zeros_(mod.bias)

    @property
    def out_channels(self) -> int:
        return len(self.offsets)

    @property
    def total_factor(self) -> tuple[int, ...]:
        return tuple(math.prod(f[a] for f in self.downsample_factors) for a in range(3))

    # ---------------------------------------------------------------- geometry
    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape for a spatial ``input_shape`` (z, y, x)."""
        shape = tuple(int(v) for v in input_shape)
        if self.padding == "same":
            return shape
        sizes = tuple(self._valid_axis(a, v) for a, v in enumerate(shape))
        out = tuple(o for o in sizes if o is not None)
        if len(out) != len(sizes):
            raise ValueError(
                f"input shape {shape} does not fit this valid-padding U-Net; use valid_input_shape() "
                f"to get a fitting size"
            )
        return out

    def valid_input_shape(self, min_output_shape: Sequence[int]) -> tuple[int, ...]:
        """The smallest input shape whose output covers at least ``min_output_shape``."""
        want = [max(1, int(v)) for v in min_output_shape]
        if self.padding == "same":
            f = self.total_factor
            return tuple(-(-w // fa) * fa for w, fa in zip(want, f))
        res = []
        for a in range(3):
            size = want[a]
            while True:
                out = self._valid_axis(a, size)
                if out is not None and out >= want[a]:
                    break
                size += 1
            res.append(size)
        return tuple(res)

    def _valid_axis(self, axis: int, size: int) -> int | None:
        shrink = self.num_convs * (self.kernel_size - 1)
        s = size
        for f in self.downsample_factors:
            s -= shrink
            if s < 1 or s % f[axis]:
                return None
            s //= f[axis]
        s -= shrink
        if s < 1:
            return None
        for f in reversed(self.downsample_factors):
            s = s * f[axis] - shrink
            if s < 1:
                return None
        return s

    @property
    def context(self) -> tuple[int, ...]:
        """Voxels lost on each side in valid mode (0 for same padding)."""
        if self.padding == "same":
            return (0, 0, 0)
        inp = self.valid_input_shape((1, 1, 1))
        out = self.output_shape(inp)
        return tuple((i - o) // 2 for i, o in zip(inp, out))

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        """Voxels on each side that can influence an output voxel (an upper bound, per axis).

        Same-padding tiles that overlap by at least this much reproduce one-shot prediction.
        """
        half = self.num_convs * (self.kernel_size // 2)
        res = []
        for a in range(3):
            scale, r = 1, 0
            for f in self.downsample_factors:
                r += 2 * half * scale + 2 * (f[a] - 1) * scale  # down + up block, pool + transposed conv
                scale *= f[a]
            r += half * scale
            res.append(r)
        return tuple(res)

    # ---------------------------------------------------------------- forward
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid affinities (for numerically stable losses)."""
        if x.ndim != 5:
            raise ValueError(f"input must be 5-dimensional (B, C, Z, Y, X); got shape {tuple(x.shape)}")
        if x.shape[1] != self.config["in_channels"]:
            raise ValueError(f"input must have {self.config['in_channels']} channel(s); got shape {tuple(x.shape)}")
        crop_to = None
        if self.padding == "same":
            f = self.total_factor
            spatial = x.shape[2:]
            pads = [(-s) % fa for s, fa in zip(spatial, f)]
            if any(pads):
                x = F.pad(x, (0, pads[2], 0, pads[1], 0, pads[0]))
                crop_to = spatial
        else:
            self.output_shape(x.shape[2:])  # raises with a clear message if it does not fit
        skips = []
        h = x
        for i, f in enumerate(self.downsample_factors):
            h = self.down[i](h)
            skips.append(h)
            h = F.max_pool3d(h, kernel_size=f, stride=f)
        h = self.down[-1](h)
        for i in reversed(range(len(self.downsample_factors))):
            h = self.upconv[i](h)
            skip = skips[i]
            if self.padding == "valid":
                skip = _center_crop(skip, h.shape[2:])
            h = self.up[i](torch.cat([skip, h], dim=1))
        out = self.head(h)
        if crop_to is not None:
            out = out[:, :, : crop_to[0], : crop_to[1], : crop_to[2]]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))
