"""Reports of a sweep: scores per threshold as JSON/CSV, a plot of nERL / Rand / VOI against
threshold, and a few slices with a segmentation overlaid (PNG, matplotlib's Agg backend,
imported only here)."""
from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .io import atomic_file

log = logging.getLogger(__name__)

PLOTTED = (("nerl", "nERL"), ("xpress_rand", "Rand (XPRESS)"), ("xpress_voi", "VOI (XPRESS, 1 - mean NVI)"),
           ("xpress_erl_rand", "ERL+Rand (ranking score)"))


def _clean(v):
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_scores(rows: Sequence[dict], directory) -> tuple:
    """Write ``scores.json`` and ``scores.csv`` (one row per threshold) into ``directory``.

    NaN becomes ``null`` in JSON and an empty cell in CSV. Returns the two paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows = [{k: _clean(v) for k, v in r.items()} for r in rows]
    jpath, cpath = directory / "scores.json", directory / "scores.csv"
    with atomic_file(jpath) as tmp, open(tmp, "w") as fh:
        json.dump(rows, fh, indent=1)
    with atomic_file(cpath) as tmp, open(tmp, "w", newline="") as fh:
        keys = list(rows[0]) if rows else []
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r[k] is None else r[k] for k in keys})
    return jpath, cpath


def _pyplot():
    from ._extras import require

    matplotlib = require("matplotlib", "the sweep report's plot")

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_scores(rows: Sequence[dict], path, *, title: str = "", baselines: Optional[dict] = None) -> Path:
    """A PNG of nERL, Rand, VOI and ERL+Rand against threshold; ``baselines`` (name -> the
    ERL+Rand of a trivial segmentation) are drawn as dashed lines."""
    plt = _pyplot()
    path = Path(path)
    t = [r["threshold"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for key, label in PLOTTED:
        y = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.plot(t, y, marker="o", ms=3, label=label, lw=2.2 if key == "xpress_erl_rand" else 1.4)
    for k, (name, value) in enumerate((baselines or {}).items()):
        if value is not None and math.isfinite(value):
            ax.axhline(value, ls="--", lw=0.8, color="grey")
            # alternate left / right so close baselines keep readable labels
            ax.text(t[0] if k % 2 == 0 else t[-1], value, f" {name} ", va="bottom", fontsize=7, color="grey",
                    ha="left" if k % 2 == 0 else "right")
    ax.set_xlabel("agglomeration threshold")
    ax.set_ylabel("score")
    ax.set_title(title or "XPRESS scores per threshold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save_png(fig, plt, path)


def _save_png(fig, plt, path: Path) -> Path:
    """Lay out, write atomically as PNG, close the figure."""
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def _colorize(labels: np.ndarray) -> np.ndarray:
    """Label image -> RGB with stable pseudo-random colours per id (0 black)."""
    lab = labels.astype(np.uint64)
    h = (lab * np.uint64(2654435761)) & np.uint64(0xFFFFFF)
    rgb = np.stack([(h >> np.uint64(s)) & np.uint64(255) for s in (16, 8, 0)], axis=-1).astype(np.float64) / 255.0
    rgb = 0.25 + 0.75 * rgb
    rgb[lab == 0] = 0.0
    return rgb


def plot_slices(raw: np.ndarray, segmentation: np.ndarray, path, *, n: int = 3, title: str = "",
                alpha: float = 0.45) -> Path:
    """A PNG with ``n`` z-slices of ``raw`` (grey) with ``segmentation`` overlaid in colour."""
    plt = _pyplot()
    path = Path(path)
    raw = np.asarray(raw)
    seg = np.asarray(segmentation)
    if raw.shape != seg.shape or raw.ndim != 3:
        raise ValueError(f"raw and segmentation must be 3-D of one shape; got {raw.shape} and {seg.shape}")
    zs = np.linspace(0, raw.shape[0] - 1, n + 2)[1:-1].round().astype(int)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4), dpi=100, squeeze=False)
    lo, hi = float(raw.min()), float(raw.max())
    for ax, z in zip(axes[0], zs):
        grey = (raw[z].astype(np.float64) - lo) / max(hi - lo, 1e-9)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        over = _colorize(seg[z])
        mask = (seg[z] != 0)[..., None]
        img = np.where(mask, (1 - alpha) * rgb + alpha * over, rgb)
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"z = {z}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save_png(fig, plt, path)
