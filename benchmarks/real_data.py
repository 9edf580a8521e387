"""The whole pipeline on real EM data: ../shared/data/neuroproof_sample2.h5 (FIB-SEM, 10 nm, 250³).

Trains a U-Net on the first part (z < split), predicts affinities of the rest, derives skeletons
from the rest's ground-truth labels (``skeletons_from_labels``), and scores every threshold with
one sweep -- for xpress-fast's agglomeration and for waterz's on the same affinities and the same
fragments (so the comparison is of the agglomeration), plus both on the original authors'
supervoxels (``fragments`` in the file). Also the trivial segmentations. Prints a table; with
``--json`` writes the numbers.

    python benchmarks/real_data.py [--steps 1500] [--work build/real_data] [--json out.json]

The trained model, the affinities and the skeletons are cached in ``--work``, so a rerun only
repeats the scoring. Not part of the tests; skips with a message when the data is absent.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

import xpress_fast  # noqa: E402
from xpress_fast import io  # noqa: E402

THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 20)]
# the XPRESS baseline's merge function, spelled as benchmarks/bench_agglomerate.py does (waterz
# compiles one module per spelling)
HIST_QUANT_50 = "OneMinus<HistogramQuantileAffinity<RegionGraphType,50,ScoreValue,256,false>>"


def waterz_sweep(affs, fragments, thresholds, index):
    """waterz hist_quant_50 (the XPRESS baseline's merge function) on the same fragments."""
    import waterz

    scores = []
    frag = np.ascontiguousarray(fragments, dtype=np.uint64)
    t0 = time.perf_counter()
    segs = waterz.agglomerate(
        np.ascontiguousarray(affs, dtype=np.float32), thresholds, fragments=frag.copy(),
        scoring_function=HIST_QUANT_50,
    )
    for seg in segs:
        scores.append(index.score(np.array(seg, copy=True)))
    return scores, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "neuroproof_sample2.h5"))
    p.add_argument("--work", default=str(ROOT / "build" / "real_data"))
    p.add_argument("--split", type=int, default=125, help="train on z < split, test on z >= split")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--preset", choices=("tiny", "default"), default="tiny")
    p.add_argument("--min-seed-distance", type=int, default=6)
    p.add_argument("--node-spacing", type=int, default=10, help="skeleton node spacing, voxels")
    p.add_argument("--no-waterz", action="store_true")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    data = Path(args.data)
    if not data.is_file():
        print(f"skipped: {data} not found (it lies in ../shared/data beside the checkout)")
        return 0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    raw = io.read_volume(data, "raw")
    labels = io.read_volume(data, "labels").data
    sv = io.read_volume(data, "fragments").data
    vs = raw.voxel_size
    s = args.split
    train_raw, test_raw = raw.data[:s], raw.data[s:]
    test_labels, test_sv = labels[s:], sv[s:]
    offset = (raw.offset[0] + s * vs[0], raw.offset[1], raw.offset[2])
    timing = {}

    # 1. train (cached)
    from xpress_fast import unet

    ckpt_dir = work / f"model_{args.preset}_{args.steps}"
    existing = sorted(ckpt_dir.glob("*.pt"))
    t0 = time.perf_counter()
    if existing and f"{args.steps:08d}" in existing[-1].name:
        model = unet.load_model(existing[-1], device="cpu")
        print(f"model: {existing[-1]} (cached)")
    else:
        preset = unet.TrainConfig.tiny if args.preset == "tiny" else unet.TrainConfig
        cfg = preset(steps=args.steps, checkpoint_every=max(args.steps // 4, 1))
        res = unet.train(train_raw, labels=labels[:s], config=cfg, checkpoint_dir=ckpt_dir, device="cpu",
                         progress=True)
        model = res.model
        print(f"trained {args.steps} steps, loss {res.losses[0]:.3f} -> {np.mean(res.losses[-50:]):.3f}")
    timing["train_s"] = time.perf_counter() - t0

    # 2. predict (cached)
    affs_path = work / f"affs_{args.preset}_{args.steps}.zarr"
    t0 = time.perf_counter()
    if io.dataset_exists(affs_path, "affinities"):
        affs = io.read_volume(affs_path, "affinities").data
    else:
        affs = unet.predict(test_raw, model, device="cpu", progress=True)[:3]
        io.write_volume(affs_path, "affinities", affs, voxel_size=vs, offset=offset)
    timing["predict_s"] = time.perf_counter() - t0

    # 3. skeletons from the test labels (cached)
    sk_path = work / f"skeletons_{s}_{args.node_spacing}.npz"
    t0 = time.perf_counter()
    if sk_path.is_file():
        skeletons = xpress_fast.load_skeletons(sk_path)
    else:
        skeletons = xpress_fast.skeletons_from_labels(test_labels, voxel_size=vs, offset=offset,
                                                      node_spacing=args.node_spacing, min_voxels=200)
        from xpress_fast.skeletons import save_skeletons

        save_skeletons(skeletons, sk_path, fmt="arrays")
    timing["skeletons_s"] = time.perf_counter() - t0
    print(f"skeletons: {skeletons}")
    index = xpress_fast.SkeletonIndex(skeletons, voxel_size=vs, offset=offset, shape=test_labels.shape)
    truth = index.score(test_labels)

    results = {"truth": truth.as_dict(), "timing": timing}
    one = index.score_node_labels(np.ones(index.n_nodes, np.uint64))
    per_voxel = index.score_node_labels(np.arange(1, index.n_nodes + 1, dtype=np.uint64))
    results["trivial"] = {"one_label": one.as_dict(), "per_voxel": per_voxel.as_dict()}

    # 4. ours: watershed + agglomeration + sweep; waterz on the same fragments
    t0 = time.perf_counter()
    frags = xpress_fast.watershed(affs, min_seed_distance=args.min_seed_distance)
    agg = xpress_fast.merge_history(affs, THRESHOLDS, fragments=frags)
    ours = xpress_fast.sweep(agg, index)
    timing["ours_agglomerate_and_sweep_s"] = time.perf_counter() - t0
    results["ours"] = ours.rows()
    t0 = time.perf_counter()
    agg_sv = xpress_fast.merge_history(affs, THRESHOLDS, fragments=test_sv)
    results["ours_on_supervoxels"] = xpress_fast.sweep(agg_sv, index).rows()
    timing["ours_supervoxels_s"] = time.perf_counter() - t0
    if not args.no_waterz:
        wz, timing["waterz_s"] = waterz_sweep(affs, frags, THRESHOLDS, index)
        results["waterz"] = [{"threshold": t, **sc.as_dict()} for t, sc in zip(THRESHOLDS, wz)]
        wz_sv, timing["waterz_supervoxels_s"] = waterz_sweep(affs, test_sv, THRESHOLDS, index)
        results["waterz_on_supervoxels"] = [{"threshold": t, **sc.as_dict()} for t, sc in zip(THRESHOLDS, wz_sv)]

    def best(rows):
        return max(rows, key=lambda r: -np.inf if r["xpress_erl_rand"] != r["xpress_erl_rand"] else r["xpress_erl_rand"])

    print(f"\nneuroproof_sample2, test z >= {s} ({test_labels.shape}), {index.n_nodes} skeleton nodes, "
          f"{truth.n_neurons} neurons")
    print(f"{'pipeline':<34} {'thr':>5} {'nERL':>7} {'nERL/truth':>10} {'rand':>6} {'voi':>6} {'ERL+Rand':>8} "
          f"{'splits':>6} {'merges':>6}")
    rows = [("ground truth labels", dict(threshold=float("nan"), **truth.as_dict())),
            ("all one label", dict(threshold=float("nan"), **one.as_dict())),
            ("one label per voxel", dict(threshold=float("nan"), **per_voxel.as_dict()))]
    for key, name in (("ours", "xpress-fast (our fragments)"), ("waterz", "waterz (same fragments)"),
                      ("ours_on_supervoxels", "xpress-fast (authors' supervoxels)"),
                      ("waterz_on_supervoxels", "waterz (authors' supervoxels)")):
        if key in results:
            rows.append((name + " best", best(results[key])))
    for name, r in rows:
        print(f"{name:<34} {r['threshold']:5.2f} {r['nerl']:7.3f} {r['nerl'] / truth.nerl:10.3f} "
              f"{r['xpress_rand']:6.3f} {r['xpress_voi']:6.3f} {r['xpress_erl_rand']:8.3f} "
              f"{r['split_count']:6d} {r['merge_count']:6d}")
    print("timing (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
