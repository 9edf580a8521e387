"""Several U-Nets of one architecture as one model: the mean of their affinities.

Networks trained from different initialisations disagree most where the labels said nothing
(with skeleton-only training: between the tubes and the mined background), and the mean of
their affinities is steadier there than any one of them. :class:`UNetEnsemble` behaves like a
:class:`~xpress_fast.unet.UNet3D` for prediction (same geometry, same offsets, ``forward`` gives
affinities in [0, 1]), so :func:`~xpress_fast.unet.predict`, the block-wise pipeline and the
checkpoints (:func:`~xpress_fast.unet.save_checkpoint` / :func:`~xpress_fast.unet.load_model`)
take it as they take one network. It is not trained as a whole: train its members.
"""
from __future__ import annotations

from typing import Sequence, cast

import torch
from torch import nn

from .model import UNet3D

__all__ = ["UNetEnsemble"]

# the members must agree on everything that fixes the output's geometry and meaning; their
# width (num_fmaps, fmap_inc_factor) may differ
_SAME = ("in_channels", "padding", "offsets", "downsample_factors", "num_convs", "kernel_size")


class UNetEnsemble(nn.Module):
    """The mean of the affinities of several :class:`~xpress_fast.unet.UNet3D` members.

    Parameters
    ----------
    members : sequence of UNet3D, at least one
        They must share the input channels, the padding, the offsets and the geometry
        (downsampling factors, convolutions per block, kernel size); each keeps its own weights.

    Notes
    -----
    ``forward`` returns the mean of the members' sigmoid outputs; :meth:`logits` its log-odds.
    The geometry (:meth:`output_shape`, :attr:`receptive_radius`, ...) is the members'.
    """

    def __init__(self, members: Sequence[UNet3D]):
        super().__init__()
        if isinstance(members, nn.Module) or not isinstance(members, (list, tuple)):
            raise TypeError(f"members must be a list or tuple of UNet3D; got {type(members).__name__}")
        if not members:
            raise ValueError("members must hold at least one UNet3D; got an empty sequence")
        for i, m in enumerate(members):
            if not isinstance(m, UNet3D):
                raise TypeError(f"members[{i}] must be an xpress_fast.unet.UNet3D; got {type(m).__name__}")
        first = members[0].config
        for i, m in enumerate(members[1:], start=1):
            diff = [k for k in _SAME if m.config[k] != first[k]]
            if diff:
                raise ValueError(f"members[{i}] differs from members[0] in {', '.join(diff)}: "
                                 f"{ {k: m.config[k] for k in diff} } against { {k: first[k] for k in diff} }")
        self.members = nn.ModuleList(members)

    # the members' geometry -------------------------------------------------------------------
    @property
    def _first(self) -> UNet3D:
        return cast(UNet3D, self.members[0])  # __init__ admits only UNet3D members

    @property
    def config(self) -> dict:
        """The first member's configuration (what ``predict`` reads: ``in_channels``, ...)."""
        return self._first.config

    @property
    def padding(self) -> str:
        return self._first.padding

    @property
    def offsets(self) -> list:
        return self._first.offsets

    @property
    def out_channels(self) -> int:
        return self._first.out_channels

    @property
    def total_factor(self) -> tuple[int, ...]:
        return self._first.total_factor

    @property
    def context(self) -> tuple[int, ...]:
        return self._first.context

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        return self._first.receptive_radius

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return self._first.output_shape(input_shape)

    def valid_input_shape(self, min_output_shape: Sequence[int]) -> tuple[int, ...]:
        return self._first.valid_input_shape(min_output_shape)

    def __len__(self) -> int:
        return len(self.members)

    # forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.members[0](x)
        for m in self.members[1:]:
            out = out + m(x)
        return out / len(self.members)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Log-odds of the mean affinities (clamped away from 0 and 1)."""
        return torch.logit(self.forward(x).float(), eps=1e-6)
