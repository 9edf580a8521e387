"""Seeded augmentations of training crops (numpy, applied before the targets are computed).

Geometric augmentations (flips, axis transposes, misaligned sections) are applied identically to
the raw and every label volume, so affinity targets computed afterwards stay consistent with the
offsets' directions. Intensity augmentations touch only the raw. All randomness comes from the
``numpy.random.Generator`` passed in, so a crop is a deterministic function of the seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["AugmentConfig", "augment"]


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply and how strongly.

    Attributes
    ----------
    flip : bool
        Flip each axis with probability 1/2.
    transpose_axes : tuple of axes
        Axes that may be permuted among themselves (only isotropic axes; ``()`` disables).
    intensity_scale, intensity_shift : float
        Raw (normalised to about [-1, 1]) is mapped to ``raw * (1 + a) + b`` with ``a, b`` uniform in
        ``±intensity_scale`` and ``±intensity_shift``.
    noise : float
        Maximum standard deviation of additive Gaussian noise (drawn uniformly in [0, noise]).
    missing_section_p : float
        Probability per z-section of being replaced by its mean (a missing / blank section).
    misalign_p : float
        Probability per z-section of shifting it and all following sections by up to
        ``misalign_max`` voxels in y and x (raw and labels alike).
    misalign_max : int
    """

    flip: bool = True
    transpose_axes: tuple = (0, 1, 2)
    intensity_scale: float = 0.1
    intensity_shift: float = 0.1
    noise: float = 0.05
    missing_section_p: float = 0.0
    misalign_p: float = 0.0
    misalign_max: int = 4


def _shift_yx(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift the last two axes by (dy, dx), filling with the edge values."""
    out = np.roll(a, (dy, dx), axis=(-2, -1))
    if dy > 0:
        out[..., :dy, :] = out[..., dy : dy + 1, :]
    elif dy < 0:
        out[..., dy:, :] = out[..., dy - 1 : dy, :]
    if dx > 0:
        out[..., :dx] = out[..., dx : dx + 1]
    elif dx < 0:
        out[..., dx:] = out[..., dx - 1 : dx]
    return out


def augment(
    raw: np.ndarray,
    labels: Sequence[np.ndarray],
    rng: np.random.Generator,
    config: AugmentConfig,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Augment a float raw crop and its label crops (same shape); returns new arrays."""
    raw = np.array(raw, dtype=np.float32, copy=True)
    labels = [np.array(l, copy=True) for l in labels]
    if config.transpose_axes and len(config.transpose_axes) > 1:
        axes = list(config.transpose_axes)
        perm = list(range(3))
        shuffled = list(rng.permutation(axes))
        for a, b in zip(axes, shuffled):
            perm[a] = int(b)
        if perm != [0, 1, 2] and all(raw.shape[a] == raw.shape[perm[a]] for a in range(3)):
            raw = np.ascontiguousarray(raw.transpose(perm))
            labels = [np.ascontiguousarray(l.transpose(perm)) for l in labels]
    if config.flip:
        for a in range(3):
            if rng.random() < 0.5:
                raw = np.flip(raw, a)
                labels = [np.flip(l, a) for l in labels]
        raw = np.ascontiguousarray(raw)
        labels = [np.ascontiguousarray(l) for l in labels]
    if config.misalign_p > 0 and config.misalign_max > 0:
        for z in range(1, raw.shape[0]):
            if rng.random() < config.misalign_p:
                dy, dx = rng.integers(-config.misalign_max, config.misalign_max + 1, size=2)
                raw[z:] = _shift_yx(raw[z:], int(dy), int(dx))
                for l in labels:
                    l[z:] = _shift_yx(l[z:], int(dy), int(dx))
    if config.intensity_scale > 0 or config.intensity_shift > 0:
        a = rng.uniform(-config.intensity_scale, config.intensity_scale)
        b = rng.uniform(-config.intensity_shift, config.intensity_shift)
        raw = raw * np.float32(1 + a) + np.float32(b)
    if config.noise > 0:
        sigma = rng.uniform(0, config.noise)
        raw = raw + rng.normal(0, sigma, raw.shape).astype(np.float32)
    if config.missing_section_p > 0:
        for z in range(raw.shape[0]):
            if rng.random() < config.missing_section_p:
                raw[z] = raw[z].mean()
    return raw.astype(np.float32, copy=False), labels
