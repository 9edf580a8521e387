"""Segmentation quality against skeletons: the XPRESS baseline pipeline vs every method we offer.

Same affinities for every method, scored with the official XPRESS rules (``xpress_scores``,
mode "official") at 19 thresholds (0.05 ... 0.95); for each method the best threshold by
XPRESS ERL+Rand is reported with its VOI (split + merge, bits), nERL and time.

Methods
-------
* ``baseline-<mf>``  the XPRESS baseline: lsd's ``watershed_from_affinities`` (distance-transform
                     seeds, min_seed_distance 5, ``mahotas.cwatershed`` on the boundary distance,
                     boundary voxels 0) then ``waterz.agglomerate`` with merge function ``mf``.
* ``ours-<mf>``      ``xpress_fast.agglomerate`` with its defaults (fragments, inside-only region graph).
* ``ours-longrange-<mf>``  the same with ``offsets=``: the long-range channels add evidence to
                     the scores of touching fragments.
* ``mutex``          ``xpress_fast.mutex_watershed`` over every affinity offset (one partition,
                     the "threshold" column is its bias), where the package has it.

Data
----
* ``tubes-<seed>``   ``xpress_fast.synthetic.make_volume`` (XNH-like axons at 33 nm), affinities
                     made from its labels for every offset by a noise model (blur, correlated
                     noise, false "gaps"); its own skeletons.
* ``neuroproof``     the real 250^3 label volume of ../shared/data (skipped when absent), the
                     same noise model, skeletons from ``skeletons_from_labels``.

Usage::

    python benchmarks/bench_quality.py --seeds 100 101 102 --size 128 [--real] [--markdown out.md]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = [round(0.05 * i, 2) for i in range(1, 20)]
# long-range channels of the U-Net's tiny preset: nearest neighbours, then -3 and -9 per axis
OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (-3, 0, 0), (0, -3, 0), (0, 0, -3),
           (-9, 0, 0), (0, -9, 0), (0, 0, -9)]
NOISE = 2.0  # amplitude of the smoothed noise field (its standard deviation is ~0.18 of this)
REAL_NOISE = 0.6
WATERZ_SCORING = {
    "hist_quant_50": "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256,false>>",
    "hist_quant_75": "OneMinus<HistogramQuantileAffinity<RegionGraphType,75,ScoreValue,256,false>>",
    "mean": "OneMinus<MeanAffinity<RegionGraphType,ScoreValue>>",
}


# ------------------------------------------------------------------------------------ data
def affinities_from_labels(labels: np.ndarray, offsets, seed: int, gaps: int, noise: float = 0.6) -> np.ndarray:
    """The package's noise model (``xpress_fast.synthetic.noisy_affinities``) for every offset."""
    from xpress_fast.synthetic import noisy_affinities

    return noisy_affinities(labels, offsets, noise=noise, gaps=gaps, seed=seed)


def tubes(size: int, seed: int, noise: float = NOISE):
    from xpress_fast.synthetic import make_volume

    vol = make_volume((size,) * 3, seed=seed)
    labels = vol.labels
    affs = affinities_from_labels(labels, OFFSETS, seed, gaps=max(1, size ** 3 // 40000), noise=noise)
    return f"tubes-{seed}", affs, vol.skeletons, vol.voxel_size


def neuroproof(seed: int = 0, noise: float = NOISE):
    import h5py
    import xpress_fast as xf

    path = ROOT.parent / "shared" / "data" / "neuroproof_sample2.h5"
    if not path.exists():
        return None
    with h5py.File(path, "r") as f:
        labels = f["labels"][:].astype(np.uint64)
    voxel_size = (10.0, 10.0, 10.0)
    skeletons = xf.skeletons_from_labels(labels, voxel_size=voxel_size, node_spacing=10)
    affs = affinities_from_labels(labels, OFFSETS, seed, gaps=200, noise=noise)
    return "neuroproof", affs, skeletons, voxel_size


# ------------------------------------------------------------------------------------ methods
def baseline_fragments(affs: np.ndarray, min_seed_distance: int = 5) -> np.ndarray:
    """lsd.post.watershed_from_affinities as the XPRESS baseline configures it."""
    import mahotas
    from scipy import ndimage

    mean_affs = (affs[0] + affs[1] + affs[2]) / 3
    boundary_mask = mean_affs > 0.5
    distances = ndimage.distance_transform_edt(boundary_mask)
    maxima = ndimage.maximum_filter(distances, min_seed_distance) == distances
    seeds, _ = mahotas.label(maxima)
    fragments = mahotas.cwatershed(distances.max() - distances, seeds)
    fragments *= boundary_mask
    return fragments.astype(np.uint64)


def run_baseline(affs, index, merge_function):
    import waterz

    start = time.perf_counter()
    fragments = baseline_fragments(affs)
    rows, scoring = [], 0.0
    nn = np.ascontiguousarray(affs[:3])
    for t, seg in zip(THRESHOLDS, waterz.agglomerate(nn, THRESHOLDS, fragments=fragments.copy(),
                                                      scoring_function=WATERZ_SCORING[merge_function])):
        s0 = time.perf_counter()
        rows.append({"threshold": t, **index.score(seg).as_dict()})
        scoring += time.perf_counter() - s0
    return rows, time.perf_counter() - start - scoring


def run_ours(affs, index, merge_function, offsets=None):
    import xpress_fast as xf

    start = time.perf_counter()
    agg = xf.merge_history(affs, THRESHOLDS, merge_function=merge_function, offsets=offsets)
    elapsed = time.perf_counter() - start
    return xf.sweep(agg, index).rows(), elapsed


MUTEX_BIASES = [0.3, 0.4, 0.5, 0.6, 0.7]


def run_mutex(affs, index, **options):
    """One mutex watershed per bias; the rows' "threshold" is the bias; time is per run."""
    import xpress_fast as xf

    rows, elapsed = [], 0.0
    for bias in MUTEX_BIASES:
        start = time.perf_counter()
        seg = xf.mutex_watershed(affs, OFFSETS, bias=bias, **options)
        elapsed += time.perf_counter() - start
        rows.append({"threshold": bias, **index.score(seg).as_dict()})
    return rows, elapsed / len(MUTEX_BIASES)


METHODS = {
    "baseline-hist_quant_50": lambda a, i: run_baseline(a, i, "hist_quant_50"),
    "baseline-hist_quant_75": lambda a, i: run_baseline(a, i, "hist_quant_75"),
    "baseline-mean": lambda a, i: run_baseline(a, i, "mean"),
    "ours-hist_quant_50": lambda a, i: run_ours(a, i, "hist_quant_50"),
    "ours-hist_quant_75": lambda a, i: run_ours(a, i, "hist_quant_75"),
    "ours-mean": lambda a, i: run_ours(a, i, "mean"),
    "ours-longrange-hist_quant_50": lambda a, i: run_ours(a, i, "hist_quant_50", offsets=OFFSETS),
    "ours-longrange-hist_quant_75": lambda a, i: run_ours(a, i, "hist_quant_75", offsets=OFFSETS),
    "ours-longrange-mean": lambda a, i: run_ours(a, i, "mean", offsets=OFFSETS),
    "mutex": run_mutex,
}


def best(rows: list) -> dict:
    values = [r["xpress_erl_rand"] if np.isfinite(r["xpress_erl_rand"]) else -np.inf for r in rows]
    return rows[int(np.argmax(values))]


def main(argv=None) -> None:
    import xpress_fast as xf

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[100, 101, 102],
                        help="synthetic volumes (seeds 0 and 1 were used in development)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--noise", type=float, default=NOISE, help="noise amplitude of the affinities")
    parser.add_argument("--real", action="store_true", help="also the real label volume in ../shared/data")
    parser.add_argument("--real-noise", type=float, default=REAL_NOISE,
                        help="noise amplitude for the real volume (its processes are thinner: the synthetic "
                             "default merges everything for every method)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--markdown", type=Path, help="write the summary table here")
    args = parser.parse_args(argv)

    cases = [lambda s=s: tubes(args.size, s, args.noise) for s in args.seeds]
    if args.real:
        cases.append(lambda: neuroproof(0, args.real_noise))
    results = []
    for make in cases:
        case = make()
        if case is None:
            print("neuroproof: ../shared/data absent, skipped", file=sys.stderr)
            continue
        name, affs, skeletons, voxel_size = case
        index = xf.SkeletonIndex(skeletons, voxel_size=voxel_size, shape=affs.shape[1:])
        for method in args.methods:
            rows, elapsed = METHODS[method](affs, index)
            b = best(rows)
            results.append({"data": name, "method": method, "seconds": elapsed, "best": b, "rows": rows})
            print(f"{name:12s} {method:26s} t={b['threshold']:.2f} erl+rand={b['xpress_erl_rand']:.3f} "
                  f"nerl={b['nerl']:.3f} voi={b['voi_split'] + b['voi_merge']:.3f} "
                  f"splits={b['split_count']} merges={b['merge_count']} {elapsed:.2f}s", flush=True)
    table = summary_table(results)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.markdown:
        args.markdown.write_text(table + "\n")


def summary_table(results: list) -> str:
    lines = ["| data | method | best t | XPRESS ERL+Rand | nERL | VOI (split + merge) | splits | merges | time (s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        b = r["best"]
        lines.append(f"| {r['data']} | {r['method']} | {b['threshold']:.2f} | {b['xpress_erl_rand']:.3f} | "
                     f"{b['nerl']:.3f} | {b['voi_split'] + b['voi_merge']:.3f} | {b['split_count']} | "
                     f"{b['merge_count']} | {r['seconds']:.2f} |")
    methods = list(dict.fromkeys(r["method"] for r in results))
    data = list(dict.fromkeys(r["data"] for r in results if r["data"].startswith("tubes")))
    if data:
        lines += ["", "Mean over the synthetic seeds (" + ", ".join(data) + "):", "",
                  "| method | XPRESS ERL+Rand | nERL | VOI |", "|---|---:|---:|---:|"]
        for m in methods:
            sel = [r["best"] for r in results if r["method"] == m and r["data"] in data]
            lines.append(f"| {m} | {np.mean([b['xpress_erl_rand'] for b in sel]):.3f} | "
                         f"{np.mean([b['nerl'] for b in sel]):.3f} | "
                         f"{np.mean([b['voi_split'] + b['voi_merge'] for b in sel]):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
