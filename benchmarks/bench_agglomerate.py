"""Affinities -> segmentations at 19 thresholds: xpress_fast vs waterz vs the XPRESS baseline style.

Methods (each runs in its own subprocess, so peak memory is its own and a crash is reported,
not fatal):

* ``ours``       ``xpress_fast.merge_history(affs, thresholds, merge_function="hist_quant_50")``
* ``ours-all-pairs``  the same with ``inside_threshold=None`` (every voxel pair in the graph)
                 (distance-transform seeds, seeded watershed, region graph, one merge run) and
                 the 19 segmentations from it.
* ``waterz``     ``waterz.agglomerate`` with its own watershed and hist_quant_50 (InitWithMax
                 false, lsd's name), all 19 segmentations copied out.
* ``baseline``   the XPRESS baseline's way: distance-transform seeds (scipy EDT, maximum filter,
                 mahotas.label), ``mahotas.cwatershed`` on the boundary distance, then waterz with
                 those fragments and hist_quant_50.

Data: synthetic affinities (Voronoi cells of ~20 voxels, boundary affinities low, noise, and
"gaps": patches where the boundary looks open, which tempt false merges) at the requested
sizes, float32; and, if present, affinities computed from the real labels of
``../shared/data/neuroproof_sample2.h5`` with the same noise model.

Reported per method: wall time, Mvoxel/s, peak RSS (VmHWM, reset after loading the
affinities) in total and above the RSS at that point, the latter relative to the affinity array, and per threshold VOI
(split, merge, bits) and adapted Rand error against the ground truth (``xpress_fast.rand_voi``).

    python benchmarks/bench_agglomerate.py --sizes 128 256 384 [--methods ours waterz baseline]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05 ... 0.95
HIST_QUANT_50 = "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256,false>>"


def affinities_from_labels(labels: np.ndarray, seed: int, gaps: int) -> np.ndarray:
    """Nearest-neighbour affinities of a label volume, made noisy and given boundary gaps."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    affs = np.zeros((3,) + labels.shape, np.float32)
    for c in range(3):
        hi = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi[c], lo[c] = slice(1, None), slice(0, -1)
        affs[c][tuple(hi)] = (labels[tuple(hi)] == labels[tuple(lo)]) & (labels[tuple(hi)] != 0)
    # gaps: boxes of 5^3 voxels where every affinity looks high
    for _ in range(gaps):
        z, y, x = (int(rng.integers(0, s)) for s in labels.shape)
        affs[:, max(z - 2, 0):z + 3, max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = np.maximum(
            affs[:, max(z - 2, 0):z + 3, max(y - 2, 0):y + 3, max(x - 2, 0):x + 3], 0.85)
    for c in range(3):
        noise = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 1.0) * 0.6
        affs[c] = np.clip(affs[c] * 0.8 + 0.1 + noise, 0.0, 1.0)
    return affs


def synthetic(size: int, seed: int = 0):
    """Voronoi cells (mean diameter ~20 voxels) as ground truth, and their affinities."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    half = (size + 1) // 2
    n_cells = max(8, int((half / 10) ** 3))
    grid = np.ones((half,) * 3, bool)
    points = rng.integers(0, half, size=(n_cells, 3))
    grid[tuple(points.T)] = False
    _, idx = ndimage.distance_transform_edt(grid, return_indices=True)
    ids = np.zeros((half,) * 3, np.uint32)
    ids[tuple(points.T)] = np.arange(1, n_cells + 1, dtype=np.uint32)
    labels = ids[tuple(idx)]
    del idx
    labels = labels.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:size, :size, :size]
    labels = np.ascontiguousarray(labels)
    return labels, affinities_from_labels(labels, seed, gaps=n_cells)


def neuroproof(seed: int = 0):
    import h5py

    path = ROOT.parent / "shared" / "data" / "neuroproof_sample2.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        labels = f["labels"][:].astype(np.uint32)
    return labels, affinities_from_labels(labels, seed, gaps=200)


# ---------------------------------------------------------------- methods (run in a child)
# Each method is a generator of the 19 segmentations; the time between yields is what counts
# (saving each segmentation for scoring happens while the clock is stopped, and only one
# segmentation is alive at a time, as a sweep would use them).

PHASES: dict = {}  # seconds of named phases, reported beside the total


def run_ours(affs):
    import xpress_fast as xf

    start = time.perf_counter()
    result = xf.merge_history(affs, THRESHOLDS, merge_function="hist_quant_50")
    # fragments + graph + the merge run for all 19 thresholds; the segmentation volumes follow
    PHASES["agglomerate"] = time.perf_counter() - start
    for t in THRESHOLDS:
        yield result.segmentation(t)


def run_ours_all_pairs(affs):
    """Ours as before the inside-only region graph (every voxel pair counted, as waterz)."""
    import xpress_fast as xf

    start = time.perf_counter()
    result = xf.merge_history(affs, THRESHOLDS, merge_function="hist_quant_50", inside_threshold=None)
    PHASES["agglomerate"] = time.perf_counter() - start
    for t in THRESHOLDS:
        yield result.segmentation(t)


def run_waterz(affs):
    import waterz

    yield from waterz.agglomerate(affs, THRESHOLDS, scoring_function=HIST_QUANT_50)


def run_baseline(affs):
    import mahotas
    import waterz
    from scipy import ndimage

    # lsd.post.watershed_from_affinities with the XPRESS baseline's settings
    mean_affs = (affs[0] + affs[1] + affs[2]) / 3
    boundary_mask = mean_affs > 0.5
    del mean_affs
    boundary_distances = ndimage.distance_transform_edt(boundary_mask)
    max_filtered = ndimage.maximum_filter(boundary_distances, 10)
    maxima = max_filtered == boundary_distances
    del max_filtered
    seeds, _ = mahotas.label(maxima)
    fragments = mahotas.cwatershed(boundary_distances.max() - boundary_distances, seeds)
    del seeds, boundary_distances
    fragments *= boundary_mask
    fragments = fragments.astype(np.uint64)
    yield from waterz.agglomerate(affs, THRESHOLDS, fragments=fragments, scoring_function=HIST_QUANT_50)


def _vm(field: str) -> int:
    """A VmXXX line of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def release_freed_memory() -> None:
    """Hands the pages that malloc keeps after free() back to the OS (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def child(method: str, data: str, truth: str) -> None:
    sys.path.insert(0, str(ROOT / "python"))
    import mahotas  # noqa: F401  (imports before the baseline measurement)
    import scipy.ndimage  # noqa: F401
    import waterz  # noqa: F401

    import xpress_fast  # noqa: F401
    import xpress_fast.agglomeration  # noqa: F401

    affs = np.load(data)
    labels = np.load(truth)
    # peak RSS of this computation alone: reset the high-water mark (Linux clear_refs 5); note
    # that ru_maxrss would carry over the parent's RSS across fork + exec
    Path("/proc/self/clear_refs").write_text("5")
    base = _vm("VmRSS")
    devnull = os.open(os.devnull, os.O_WRONLY)  # waterz prints to stdout from C++
    saved = os.dup(1)
    os.dup2(devnull, 1)
    seconds = 0.0
    rows = []
    peak = 0
    start = time.perf_counter()
    segmentations = {"ours": run_ours, "ours-all-pairs": run_ours_all_pairs, "waterz": run_waterz,
                     "baseline": run_baseline}[method](affs)
    for t in THRESHOLDS:
        # next() rather than zip(): zip's reused result tuple would keep the previous volume
        # alive while the next one is made, two volumes in the peak instead of one
        seg = next(segmentations)
        seconds += time.perf_counter() - start
        peak = max(peak, _vm("VmHWM"))
        # scored here with the clock stopped (writing 19 volumes to disk for scoring elsewhere
        # slowed the next allocations: page-cache writeback), and the scoring's own memory kept
        # out of the peak by resetting the high-water mark to what is live after it
        rows.append((t, *rand_voi(seg, labels)))
        del seg
        release_freed_memory()  # what the scoring freed is not the method's memory
        Path("/proc/self/clear_refs").write_text("5")
        start = time.perf_counter()
    segmentations.close()
    seconds += time.perf_counter() - start
    os.dup2(saved, 1)
    peak = max(peak, _vm("VmHWM"))
    print(json.dumps({"seconds": seconds, "peak_extra": peak - base, "peak": peak, "affs_bytes": affs.nbytes,
                      "phases": PHASES, "rows": rows}))


# ---------------------------------------------------------------- driver

def rand_voi(seg: np.ndarray, gt: np.ndarray):
    """(voi_split, voi_merge, adapted Rand error), ground-truth label 0 ignored, VOI in bits."""
    sys.path.insert(0, str(ROOT / "python"))
    try:
        import xpress_fast as xf

        r = xf.rand_voi(seg, gt)
        return r.voi_split, r.voi_merge, r.adapted_rand_error
    except Exception:  # the evaluator is being written alongside: fall back to numpy
        pass
    keep = gt.ravel() != 0
    s = np.unique(seg.ravel()[keep], return_inverse=True)[1].astype(np.uint64)
    g = np.unique(gt.ravel()[keep], return_inverse=True)[1].astype(np.uint64)
    _, nij = np.unique(g * np.uint64(s.max() + 1) + s, return_counts=True)
    pairs_g, ai = np.unique(g, return_counts=True)
    _, bj = np.unique(s, return_counts=True)
    n = float(keep.sum())
    pij, pa, pb = nij / n, ai / n, bj / n
    h_joint = -np.sum(pij * np.log2(pij))
    voi_split = h_joint + np.sum(pa * np.log2(pa))  # H(seg | gt)
    voi_merge = h_joint + np.sum(pb * np.log2(pb))  # H(gt | seg)
    sum_n2 = np.sum(nij.astype(np.float64) ** 2) - n
    precision = sum_n2 / (np.sum(bj.astype(np.float64) ** 2) - n)
    recall = sum_n2 / (np.sum(ai.astype(np.float64) ** 2) - n)
    return voi_split, voi_merge, 1.0 - 2.0 * precision * recall / (precision + recall)


def bench(name: str, labels: np.ndarray, affs: np.ndarray, methods, tmp: Path, timeout: float) -> list:
    data = tmp / (name.replace(" ", "_").replace("^", "") + ".npy")
    truth = data.with_name(data.stem + "-truth.npy")
    np.save(data, affs)
    np.save(truth, labels)
    n = labels.size
    results = []
    for method in methods:
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", method, str(data), str(truth)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{name:>12} {method:>9}  timed out after {timeout:.0f} s", flush=True)
            results.append({"data": name, "method": method, "error": f"timeout {timeout:.0f} s"})
            continue
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{name:>12} {method:>9}  FAILED (exit {proc.returncode}): {tail}", flush=True)
            results.append({"data": name, "method": method, "error": f"exit {proc.returncode}: {tail}"})
            continue
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        rows = [tuple(r) for r in info.pop("rows")]
        best = min(rows, key=lambda r: r[1] + r[2])
        res = {"data": name, "method": method, "voxels": n, **info, "rows": rows, "best": best}
        results.append(res)
        print(f"{name:>12} {method:>9}  {info['seconds']:8.2f} s  {n / info['seconds'] / 1e6:7.2f} Mvox/s  "
              f"peak {info['peak'] / 2**30:5.2f} GiB, +{info['peak_extra'] / 2**30:5.2f} GiB "
              f"over the inputs ({info['peak_extra'] / info['affs_bytes']:.2f}x affs)  "
              f"best VOI {best[1] + best[2]:.3f} (split {best[1]:.3f}, merge {best[2]:.3f}) at {best[0]:.2f}, "
              f"ARE {best[3]:.3f}", flush=True)
        for phase, secs in info.get("phases", {}).items():
            print(f"{'':>12} {'':>9}  {phase}: {secs:.2f} s, {n / secs / 1e6:.2f} Mvox/s", flush=True)
    data.unlink()
    truth.unlink()
    return results


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--methods", nargs="+", default=["ours", "waterz", "baseline"])
    parser.add_argument("--waterz-max-size", type=int, default=160,
                        help="skip waterz's own watershed above this size (it needs 9 GB at 192^3)")
    parser.add_argument("--real", action="store_true", help="also run on the neuroproof labels")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, help="write all results here")
    parser.add_argument("--per-threshold", action="store_true", help="print VOI / ARE at every threshold")
    args = parser.parse_args()
    import waterz

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, waterz {waterz.__version__}, "
          f"{os.cpu_count()} cores", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        cases = [(f"synth {s}^3", s) for s in args.sizes]
        if args.real:
            cases.append(("neuroproof", None))
        for name, size in cases:
            t0 = time.perf_counter()
            made = synthetic(size) if size else neuroproof()
            if made is None:
                continue
            labels, affs = made
            print(f"{name}: {labels.size / 1e6:.1f} Mvoxel, {len(np.unique(labels))} objects, "
                  f"made in {time.perf_counter() - t0:.1f} s", flush=True)
            # waterz's own watershed: 2.4 GB at 128^3, 16 GB and growing at 250^3 (killed)
            methods = [m for m in args.methods if not (m == "waterz" and max(labels.shape) > args.waterz_max_size)]
            results += bench(name, labels, affs, methods, tmp, args.timeout)
            del labels, affs
    if args.per_threshold:
        for r in results:
            if "rows" in r:
                print(f"\n{r['data']} {r['method']}: threshold  VOI split  VOI merge  adapted Rand error")
                for t, vs, vm, are in r["rows"]:
                    print(f"    {t:.2f}  {vs:.3f}  {vm:.3f}  {are:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
