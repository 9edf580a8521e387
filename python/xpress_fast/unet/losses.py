"""Masked, class-balanced affinity losses.

* :func:`affinity_loss` — binary cross-entropy on logits (default) or the XPRESS baseline's L2 on
  sigmoid outputs; every (sample, channel) is balanced so that positives and negatives inside the
  mask weigh the same in total; masked-out voxels contribute nothing (their gradient is zero).
* :func:`path_negative_loss` — for skeleton training: a long-range negative pair ``v, v - k e_a``
  (two different skeletons) implies that at least one nearest-neighbour affinity on the straight
  path between them is 0. The weakest link (the minimum of the nearest-neighbour logits along the
  path) is pushed to 0. This is a cheap multiple-instance / path constraint in the spirit of MALIS
  (Turaga et al. 2009) and of the sparse-supervision losses for skeleton training; it gives the
  nearest-neighbour channels, which otherwise see almost only positives inside the tubes, their
  negatives.

Losses are computed in float32 even under autocast.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["affinity_loss", "balanced_weights", "gap_negative_loss", "path_negative_loss"]


def balanced_weights(target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-voxel weights: mask times the inverse class frequency within each (sample, channel).

    Positives and negatives each receive half of the mask's total weight where both are present;
    a (sample, channel) with only one class keeps weight 1 per voxel.
    """
    dims = tuple(range(2, target.ndim))
    m = mask.float()
    pos = (target > 0.5).float() * m
    neg = m - pos
    n = m.sum(dims, keepdim=True)
    n_pos = pos.sum(dims, keepdim=True)
    n_neg = neg.sum(dims, keepdim=True)
    both = (n_pos > 0) & (n_neg > 0)
    w_pos = torch.where(both, 0.5 * n / n_pos.clamp_min(1), torch.ones_like(n))
    w_neg = torch.where(both, 0.5 * n / n_neg.clamp_min(1), torch.ones_like(n))
    return pos * w_pos + neg * w_neg


def affinity_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    *,
    kind: str = "bce",
    balance: bool = True,
) -> torch.Tensor:
    """Masked (optionally class-balanced) loss between affinity logits and 0/1 targets.

    Parameters
    ----------
    logits, target, mask : (B, C, Z, Y, X) tensors of one shape
    kind : "bce" (cross-entropy on logits) or "mse" (L2 on sigmoid(logits))
    balance : bool
        Weight positives and negatives equally per (sample, channel).

    Returns
    -------
    scalar tensor: the weighted sum divided by the number of supervised voxels (0 if none).
    """
    if kind not in ("bce", "mse"):
        raise ValueError(f"kind must be 'bce' or 'mse'; got {kind!r}")
    if logits.shape != target.shape or logits.shape != mask.shape:
        raise ValueError(
            f"logits, target and mask must have one shape; got {tuple(logits.shape)}, "
            f"{tuple(target.shape)}, {tuple(mask.shape)}"
        )
    logits = logits.float()
    target = target.float()
    mask = mask.float()
    w = balanced_weights(target, mask) if balance else mask
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    else:
        per = (torch.sigmoid(logits) - target) ** 2
    per = per * w  # multiplication (not indexing) keeps masked gradients exactly zero
    return per.sum() / mask.sum().clamp_min(1.0)


def _axis_offsets(offsets: Sequence[Sequence[int]]):
    """(channel, nn_channel, axis, k, sign) for every single-axis offset of length k > 1."""
    offs = [tuple(int(v) for v in o) for o in offsets]
    nn_of = {}
    for c, o in enumerate(offs):
        nz = [a for a in range(3) if o[a] != 0]
        if len(nz) == 1 and abs(o[nz[0]]) == 1 and nz[0] not in nn_of:
            nn_of[nz[0]] = (c, o[nz[0]])
    res = []
    for c, o in enumerate(offs):
        nz = [a for a in range(3) if o[a] != 0]
        if len(nz) == 1 and abs(o[nz[0]]) > 1 and nz[0] in nn_of:
            a = nz[0]
            res.append((c, nn_of[a][0], nn_of[a][1], a, abs(o[a]), 1 if o[a] > 0 else -1))
    return res


def path_negative_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    offsets: Sequence[Sequence[int]],
) -> torch.Tensor:
    """Cross-entropy pushing the weakest nearest-neighbour link between long-range negatives to 0.

    For every channel whose offset is ``±k e_a`` (k > 1) and a nearest-neighbour channel ``±e_a``
    exists, the straight path from ``v`` to ``v + offset`` crosses k nearest-neighbour links; for
    supervised negative pairs (mask 1, target 0) ``softplus(min(link logits))`` is averaged.
    Returns 0 when there are no such pairs.
    """
    total = logits.new_zeros((), dtype=torch.float32)
    count = logits.new_zeros((), dtype=torch.float32)
    for c, n, nsign, a, k, sign in _axis_offsets(offsets):
        if k > logits.shape[2 + a]:
            continue
        nn_logits = logits[:, n : n + 1].float()
        kernel = [1, 1, 1]
        kernel[a] = k
        pooled = -F.max_pool3d(-nn_logits, kernel_size=kernel, stride=1)  # min over k links
        S = logits.shape[2 + a]
        # The path's links join q and q + 1 for q in [v, v + k) (sign > 0) or [v - k, v) (sign < 0);
        # the nn channel stores the link (q, q + 1) at u = q + 1 if it points backwards, else at q.
        start = (0 if sign > 0 else -k) + (1 if nsign < 0 else 0)
        # v ranges over positions whose window [v + start, v + start + k) lies inside [0, S)
        v_lo = max(0, -start)
        v_hi = min(S, S - k - start + 1)
        if v_hi <= v_lo:
            continue
        sl_v = [slice(None)] * 5
        sl_v[2 + a] = slice(v_lo, v_hi)
        sl_p = [slice(None)] * 5
        sl_p[2 + a] = slice(v_lo + start, v_hi + start)
        t = target[:, c : c + 1][tuple(sl_v)].float()
        m = mask[:, c : c + 1][tuple(sl_v)].float()
        neg = m * (t < 0.5).float()
        total = total + (F.softplus(pooled[tuple(sl_p)]) * neg).sum()
        count = count + neg.sum()
    return total / count.clamp_min(1.0)


def gap_negative_loss(
    logits: torch.Tensor, links: Sequence[torch.Tensor], groups: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Cross-entropy pushing the weakest link of every gap between two skeletons to 0.

    ``links[b]`` / ``groups[b]`` come from :func:`xpress_fast.unet.targets.gap_negatives` for sample
    ``b`` (flat indices into that sample's ``(C, Z, Y, X)`` logits and their group numbers); the
    minimum logit of each group is taken and ``softplus`` of it averaged over all groups.
    """
    total = logits.new_zeros((), dtype=torch.float32)
    count = 0
    for b, (idx, grp) in enumerate(zip(links, groups)):
        if idx.numel() == 0:
            continue
        vals = logits[b].reshape(-1).float()[idx]
        n = int(grp.max()) + 1
        mins = torch.full((n,), float("inf"), device=vals.device, dtype=vals.dtype)
        mins = mins.scatter_reduce(0, grp, vals, reduce="amin", include_self=True)
        total = total + F.softplus(mins).sum()
        count += n
    return total / max(count, 1)
