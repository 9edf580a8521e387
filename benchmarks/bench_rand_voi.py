"""Dense Rand / VOI: xpress_fast.rand_voi vs scikit-image on the same volumes, in one run.

Uses the real 250^3 ground truth and over-segmentation of ../shared/data/neuroproof_sample2.h5
when present, otherwise a synthetic pair (blocks with random relabelling) of the same size.
Prints time, Mvoxel/s and the agreement of the numbers.

    python benchmarks/bench_rand_voi.py
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "neuroproof_sample2.h5"


def load():
    if DATA.exists():
        import h5py

        with h5py.File(DATA, "r") as f:
            return f["fragments"][:], f["labels"][:], "neuroproof_sample2 fragments vs labels (real)"
    rng = np.random.default_rng(0)
    gt = (np.indices((250, 250, 250)) // 25).sum(axis=0).astype(np.uint64) + 1
    seg = gt * 7 + (rng.random(gt.shape) < 0.01)
    return seg.astype(np.uint64), gt, "synthetic blocks"


def timed(f, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main():
    import xpress_fast as xf
    from skimage.metrics import adapted_rand_error, variation_of_information

    seg, gt, what = load()
    mvox = seg.size / 1e6
    print(f"# {platform.machine()}, {os.cpu_count()} cores, numpy {np.__version__}; {what}, {seg.shape} {seg.dtype}")
    t_ours, ours = timed(lambda: xf.rand_voi(seg, gt))
    t_sk_voi, sk_voi = timed(lambda: variation_of_information(gt, seg, ignore_labels=(0,)), 1)
    t_sk_are, sk_are = timed(lambda: adapted_rand_error(gt, seg, ignore_labels=(0,)), 1)
    print(f"{'method':<40}{'time (s)':>10}{'Mvoxel/s':>10}")
    print(f"{'xpress_fast.rand_voi (VOI + Rand)':<40}{t_ours:>10.3f}{mvox / t_ours:>10.1f}")
    print(f"{'skimage variation_of_information':<40}{t_sk_voi:>10.3f}{mvox / t_sk_voi:>10.1f}")
    print(f"{'skimage adapted_rand_error':<40}{t_sk_are:>10.3f}{mvox / t_sk_are:>10.1f}")
    print(f"speed-up vs skimage (both calls): {(t_sk_voi + t_sk_are) / t_ours:.1f}x")
    print(f"VOI split/merge ours {ours.voi_split:.9f} {ours.voi_merge:.9f}, skimage {sk_voi[0]:.9f} {sk_voi[1]:.9f}")
    print(f"adapted Rand error ours {ours.adapted_rand_error:.9f}, skimage {sk_are[0]:.9f}")


if __name__ == "__main__":
    main()
