"""Skeleton-only vs voxel-label training of the same U-Net on the same volumes.

For every seed ``s``: a training volume (``make_volume``, seed ``s``), a validation volume
(seed ``s + 500``) and a test volume (seed ``s + 1000``), all synthetic XNH-like axons at 33 nm.
Each recipe trains the same network (``TrainConfig.tiny()`` on the CPU, a larger one with
``--gpu``) on the training volume; the model predicts the validation and test volumes; each is
fragmented (watershed, min_seed_distance 5) and agglomerated once (``merge_history``, merge
function ``mean``, 19 thresholds 0.05 ... 0.95). The threshold is **chosen on the validation
volume** (best XPRESS ERL+Rand against its skeletons) and the **test volume's** scores at that
threshold are reported, with the nearest-neighbour boundary AUC of the test affinities (same axon
vs. not, every voxel pair including myelin / extracellular space, which the skeleton recipes never
see labelled).

Recipes
-------
* ``voxel``        voxel labels (the reference; 0 = myelin / extracellular space)
* ``tubes``        skeletons only: tubes of ``skeleton_radius`` + path- and gap-negative losses
                   (``train(raw, skeletons=...)``, the recipe before issue 15)
* ``mined``        the default recipe: tubes (133 nm) + background mined at ``--margin`` nm from
                   every skeleton + the voxels darker than ``--dark-quantile`` % of the tubes
* ``mined-nodark`` tubes + mined background only (the default before the dark background)
* ``self``         tubes, then one self-training round (``train_from_skeletons``, 2 rounds)
* ``self-mined``   tubes + mined background, then one self-training round
* ``voxel-long``   voxel labels for the self-training recipes' total steps (steps + round steps)

Seeds: 0-5 were used while developing the recipes; 100-109 (the default) and 200-209 were
reporting seeds that later informed choices; 300-309 are the confirmation seeds, run with
``--inits 3`` (three initialisations per recipe; the "best of 3" rows keep the one that scores
best on the validation volume, as ``SkeletonRecipe.restarts`` does):
``--seeds 300 301 302 303 304 305 306 307 308 309 --recipes voxel mined --inits 3``.

``--real`` adds ``../shared/data/neuroproof_sample2.h5`` (FIB-SEM, 10 nm; skipped with a message
when absent): train on z < 125, validate on z >= 125, y < 125 and test on z >= 125, y >= 125;
the skeleton recipes see only ``skeletons_from_labels`` of the training half's labels.

Usage::

    PYTHONPATH=python python benchmarks/bench_skeleton_training.py [--seeds 100 101 102]
        [--recipes voxel tubes self-mined] [--real] [--gpu] [--markdown out.md] [--cache DIR]

Every (recipe, seed) result is cached as JSON in ``--cache`` (default
``benchmarks/.cache/skeleton_training``), so a run can be extended or resumed.
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

DEV_SEEDS = (0, 1)
REPORT_SEEDS = tuple(range(100, 110))
REAL = ROOT.parent / "shared" / "data" / "neuroproof_sample2.h5"


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    from scipy.stats import rankdata

    r = rankdata(score)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def boundary_auc(affs: np.ndarray, labels: np.ndarray, offsets) -> float:
    """AUC of the nearest-neighbour affinities: pairs of one object (positive) vs every other pair."""
    from xpress_fast.unet import affinities_from_labels

    t = affinities_from_labels(labels, [tuple(o) for o in offsets][:3])
    m = t.mask > 0
    return _auc(affs[:3][m], t.affinities[m] > 0.5)


def configs(gpu: bool, steps: int | None):
    from xpress_fast.unet import TrainConfig

    if gpu:
        cfg = TrainConfig(num_fmaps=12, fmap_inc_factor=3, crop_shape=(48, 48, 48), norm="batch",
                          offsets=TrainConfig.tiny().offsets, steps=4000, lr=1e-3, batch_size=2,
                          checkpoint_every=1000, log_every=100)
        sizes = dict(train=160, val=96, test=128)
    else:
        cfg = TrainConfig.tiny()
        sizes = dict(train=96, val=96, test=96)
    if steps is not None:
        cfg.steps = int(steps)
    return cfg, sizes


def run_recipe(name: str, vol, cfg, args, workdir: Path, device):
    """Train ``name`` on ``vol`` (raw, labels, skeletons, voxel_size, offset); returns (model, info)."""
    from xpress_fast.unet import SkeletonRecipe, TrainConfig, train, train_from_skeletons

    geo = dict(voxel_size=vol["voxel_size"], offset=vol["offset"])
    if name == "voxel":
        return train(vol["raw"], labels=vol["labels"], config=cfg, device=device).model, {}
    if name == "voxel-long":
        c = TrainConfig.from_dict({**cfg.to_dict(), "steps": cfg.steps + args.round_steps * (args.rounds - 1)})
        return train(vol["raw"], labels=vol["labels"], config=c, device=device).model, {}
    if name == "tubes":
        return train(vol["raw"], skeletons=vol["skeletons"], config=cfg, device=device, **geo).model, {}
    margin = args.margin if name in ("mined", "mined-nodark", "self-mined") and args.margin else None
    rounds = 1 if name.startswith("mined") else args.rounds
    plain = name == "mined-nodark"
    dark = None if plain or not args.dark_quantile else args.dark_quantile
    recipe = SkeletonRecipe(rounds=rounds, round_steps=args.round_steps, radius=cfg.skeleton_radius, margin=margin,
                            dark_quantile=dark, min_nodes=args.min_nodes,
                            margin_pad=None if margin is None or args.margin_pad < 0 else args.margin_pad,
                            tube_pad=None if args.tube_pad < 0 else args.tube_pad, tube_min=args.tube_min,
                            pseudo_inside=not args.pseudo_everywhere,
                            pseudo_boundary=args.pseudo_boundary, round_lr=args.round_lr)
    res = train_from_skeletons(vol["raw"], vol["skeletons"], config=cfg, recipe=recipe, device=device,
                               out=workdir, resume=False, **geo)
    return res.model, {"rounds": [{k: h[k] for k in ("round", "steps", "loss", "validation", "pseudo")}
                                  for h in res.history]}


def score(model, vol_val, vol_test, device, offsets) -> dict:
    from xpress_fast.unet import predict

    return score_affinities(predict(vol_val["raw"], model, device=device),
                            predict(vol_test["raw"], model, device=device), vol_val, vol_test, offsets)


def score_affinities(affs_val, affs_test, vol_val, vol_test, offsets) -> dict:
    """The threshold chosen on the validation affinities, the test volume's scores at it."""
    from xpress_fast.unet import evaluate_affinities

    sw_val, _ = evaluate_affinities(affs_val, vol_val["skeletons"], voxel_size=vol_val["voxel_size"],
                                    offset=vol_val["offset"])
    best_val = sw_val.best()
    sw_test, _ = evaluate_affinities(affs_test, vol_test["skeletons"], voxel_size=vol_test["voxel_size"],
                                     offset=vol_test["offset"])
    i = int(np.argmin(np.abs(sw_test.thresholds - best_val["threshold"])))
    row = sw_test.rows()[i]
    oracle = sw_test.best()
    return dict(threshold=row["threshold"], nerl=row["nerl"], erl_rand=row["xpress_erl_rand"],
                splits=row["split_count"], merges=row["merge_count"],
                oracle_erl_rand=oracle["xpress_erl_rand"], oracle_nerl=oracle["nerl"],
                val_erl_rand=best_val["xpress_erl_rand"],
                auc=boundary_auc(affs_test, vol_test["labels"], offsets))


def synthetic(seed: int, sizes: dict) -> dict:
    from xpress_fast.synthetic import make_volume

    vols = {}
    for part, s in (("train", seed), ("val", seed + 500), ("test", seed + 1000)):
        v = make_volume((sizes[part],) * 3, seed=s)
        vols[part] = dict(raw=v.raw, labels=v.labels, skeletons=v.skeletons, voxel_size=v.voxel_size, offset=v.offset)
    return vols


def real(args) -> dict | None:
    if not REAL.is_file():
        print(f"real data: {REAL} not found; the --real row is skipped", file=sys.stderr)
        return None
    import h5py

    from xpress_fast import skeletons_from_labels
    from xpress_fast.skeletons import load_skeletons, save_skeletons

    with h5py.File(REAL, "r") as f:
        raw, labels = f["raw"][...], f["labels"][...]
        vs = np.asarray(f["raw"].attrs.get("resolution", (10, 10, 10)), dtype=np.float64)
    half = raw.shape[0] // 2
    parts = {"train": (slice(0, half), slice(None)), "val": (slice(half, None), slice(0, raw.shape[1] // 2)),
             "test": (slice(half, None), slice(raw.shape[1] // 2, None))}
    vols = {}
    for part, (zs, ys) in parts.items():
        r, lab = np.ascontiguousarray(raw[zs, ys]), np.ascontiguousarray(labels[zs, ys])
        cached = args.cache / f"real-{part}-skeletons-min{args.real_min_voxels}.npz"
        if cached.is_file():
            sk = load_skeletons(cached)
        else:
            t0 = time.perf_counter()
            sk = skeletons_from_labels(lab, voxel_size=vs, node_spacing=4, min_voxels=args.real_min_voxels)
            save_skeletons(sk, cached, fmt="arrays")
            print(f"real data: skeletons of the {part} part ({sk.n_skeletons} objects, {sk.n_nodes} nodes) "
                  f"in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        vols[part] = dict(raw=r, labels=lab, skeletons=sk, voxel_size=vs, offset=np.zeros(3))
    return vols


def _prepare_real(args) -> None:
    """Skeletonise the real sample's three parts once (cached), without training."""
    real(args)


def main() -> None:
    from xpress_fast.unet.skeleton_training import SkeletonRecipe

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=list(REPORT_SEEDS))
    ap.add_argument("--recipes", nargs="+", default=["voxel", "mined"])
    ap.add_argument("--steps", type=int, default=None, help="round-0 / voxel training steps (default: the config's)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--round-steps", type=int, default=300)
    ap.add_argument("--round-lr", type=float, default=None, help="learning rate of the self-training rounds")
    ap.add_argument("--margin", type=float, default=250.0, help="nm from every skeleton for mined background")
    ap.add_argument("--min-nodes", type=int, default=2)
    ap.add_argument("--pseudo-everywhere", action="store_true",
                    help="pseudo-labels also where the model sees boundary (default: inside only)")
    ap.add_argument("--pseudo-boundary", action="store_true",
                    help="where the model sees boundary in a kept segment: background")
    ap.add_argument("--radius", type=float, default=None,
                    help="skeleton tube radius, nm (default: the recipe's 133 nm; 'tubes': the config's 66 nm)")
    ap.add_argument("--margin-pad", type=float,
                    default=-1.0 if SkeletonRecipe.margin_pad is None else SkeletonRecipe.margin_pad,
                    help="per-skeleton margin = max(margin, measured radius + this), nm; < 0: one fixed "
                         "margin (default: the recipe's)")
    ap.add_argument("--tube-pad", type=float,
                    default=-1.0 if SkeletonRecipe.tube_pad is None else SkeletonRecipe.tube_pad,
                    help="per-skeleton tube radius = measured radius - this, clipped to [--tube-min, radius], "
                         "nm; < 0: one radius (default: the recipe's)")
    ap.add_argument("--tube-min", type=float, default=SkeletonRecipe.tube_min, help="thinnest tube, nm")
    ap.add_argument("--dark-quantile", type=float, default=SkeletonRecipe.dark_quantile,
                    help="percentile of the tube intensities below which voxels are background (0: none; "
                         "default: the recipe's)")
    ap.add_argument("--real", action="store_true", help="add the real EM sample in ../shared/data")
    ap.add_argument("--real-only", action="store_true", help="only the real EM sample")
    ap.add_argument("--real-radius", type=float, default=30.0, help="tube radius on the 10 nm EM sample, nm")
    ap.add_argument("--real-margin", type=float, default=0.0,
                    help="mined background on the EM sample, nm; 0: none (its labels are dense, so nothing "
                         "far from every skeleton is background)")
    ap.add_argument("--real-min-voxels", type=int, default=200)
    ap.add_argument("--gpu", action="store_true", help="the larger configuration (needs CUDA to be quick)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / ".cache" / "skeleton_training")
    ap.add_argument("--tag", default="", help="suffix of the cache names (a variant being measured)")
    ap.add_argument("--inits", type=int, default=1,
                    help="initialisations per recipe and dataset (seed, seed + 777, ...); with 2 or more the "
                         "table adds each recipe's 'best of N': the one that scored best on the validation "
                         "volume (as SkeletonRecipe.restarts chooses)")
    ap.add_argument("--ensemble", action="store_true",
                    help="with --inits N >= 2: add each recipe's 'mean of N', the mean of the N models' "
                         "affinities (an ensemble; threshold chosen on the validation volume as always)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig fields for every recipe (e.g. ema_decay=0.99), in the cache key")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    device = "cuda" if (args.gpu and torch.cuda.is_available()) else "cpu"
    cfg, sizes = configs(args.gpu, args.steps)
    if args.radius is not None:
        cfg.skeleton_radius = float(args.radius)
    args.cache.mkdir(parents=True, exist_ok=True)
    datasets = [] if args.real_only else [(f"synthetic seed {s}", s) for s in args.seeds]
    if args.real or args.real_only:
        datasets.append(("neuroproof (real EM)", "real"))
    kind = "gpu" if args.gpu else "cpu"
    results = {}
    fixed = _overrides(args.set)  # refused before any training when a field is unknown
    names = list(args.recipes) + ([f"{n}, best of {args.inits}" for n in args.recipes] if args.inits > 1 else [])
    names += [f"{n}, mean of {args.inits}" for n in args.recipes] if args.inits > 1 and args.ensemble else []
    for label, seed in datasets:
        vols: dict | None = {}
        for name in args.recipes:
            rows = []
            for i in range(args.inits):
                overrides = _init_overrides(fixed, seed, i)
                row, vols = _run_one(args, cfg, sizes, kind, label, seed, name, overrides, vols, device)
                if row is None:
                    break
                rows.append(row)
            if rows:
                results[(label, name)] = rows[0]
            if len(rows) > 1:  # the initialisation that scored best on the validation volume
                results[(label, f"{name}, best of {args.inits}")] = max(rows, key=lambda r: r["val_erl_rand"])
            if len(rows) > 1 and args.ensemble:  # the mean of the initialisations' affinities
                results[(label, f"{name}, mean of {args.inits}")] = _ensemble_row(
                    args, cfg, sizes, kind, label, seed, name, fixed, vols, device)
            if vols is None:
                break
    lines = table(results, datasets, names)
    print("\n".join(lines))
    if args.markdown is not None:
        args.markdown.write_text("\n".join(lines) + "\n")


def _cache_keys(args, cfg, sizes, kind, seed, name, overrides) -> tuple[str, str]:
    """(training key, scoring key) of one run in the cache."""
    from xpress_fast.unet import SkeletonRecipe

    key = f"{kind}-{seed}-{name}-s{cfg.steps}"
    if name.startswith("self") or name == "voxel-long":
        key += f"-r{args.rounds}x{args.round_steps}"
    if "mined" in name:
        key += f"-m{args.real_margin if seed == 'real' else args.margin:g}"
    if name.startswith("mined") or name.startswith("self"):
        radius = args.real_radius if seed == "real" else (args.radius or SkeletonRecipe.radius)
        key += f"-r{radius:g}"
    if name == "mined" and args.dark_quantile:
        key += f"-d{args.dark_quantile:g}"
    if "mined" in name and seed != "real" and args.margin_pad >= 0:
        key += f"-p{args.margin_pad:g}"
    if "mined" in name and seed != "real" and args.tube_pad >= 0:
        key += f"-t{args.tube_pad:g}-{args.tube_min:g}"
    key += "".join(f"-{k}{v}" for k, v in sorted(overrides.items())) + args.tag
    eval_key = key if seed == "real" else f"{key}-v{sizes['val']}t{sizes['test']}"
    return key, eval_key


def _init_overrides(fixed: dict, seed, i: int) -> dict:
    overrides = dict(fixed)
    if i:  # another initialisation, as SkeletonRecipe.restarts seeds it
        from xpress_fast.unet.skeleton_training import RESTART_SEED

        overrides["seed"] = (0 if seed == "real" else int(seed)) + RESTART_SEED * i
    return overrides


def _ensemble_row(args, cfg, sizes, kind, label, seed, name, fixed, vols, device) -> dict:
    """Score the mean affinities of the ``--inits`` models of one recipe (trained and cached before)."""
    from xpress_fast.unet import load_model, predict

    keys = [_cache_keys(args, cfg, sizes, kind, seed, name, _init_overrides(fixed, seed, i))
            for i in range(args.inits)]
    path = args.cache / f"{keys[0][1]}-mean{args.inits}.json"
    if path.is_file():
        return json.loads(path.read_text())
    if not vols:
        vols = synthetic(seed, sizes) if seed != "real" else real(args)
    t0 = time.perf_counter()
    models = [load_model(args.cache / f"{k}.pt", device=device) for k, _ in keys]
    mean = {part: predict(vols[part]["raw"], models, device=device) for part in ("val", "test")}  # UNetEnsemble
    row = score_affinities(mean["val"], mean["test"], vols["val"], vols["test"], models[0].offsets)
    trained = [json.loads((args.cache / f"{k}.train.json").read_text())["train_seconds"] for k, _ in keys]
    row.update(train_seconds=float(np.sum(trained)), score_seconds=time.perf_counter() - t0)
    path.write_text(json.dumps(row, indent=1, default=lambda o: None))
    print(f"{label:24s} {name + ', mean':12s} AUC {row['auc']:.3f} nERL {row['nerl']:.3f} ERL+Rand "
          f"{row['erl_rand']:.3f} (thr {row['threshold']:.2f})", flush=True)
    return row


def _run_one(args, cfg, sizes, kind, label, seed, name, overrides, vols, device):
    """Train (or load from the cache) and score one recipe on one dataset: (row, volumes)."""
    from xpress_fast.unet import SkeletonRecipe

    key, eval_key = _cache_keys(args, cfg, sizes, kind, seed, name, overrides)
    path = args.cache / f"{eval_key}.json"
    if path.is_file():
        return json.loads(path.read_text()), vols
    if not vols:
        vols = synthetic(seed, sizes) if seed != "real" else real(args)
        if vols is None:
            return None, None
    # the volume's seed initialises the model unless an override (--set seed=N, --inits) says otherwise
    c = type(cfg).from_dict({**cfg.to_dict(), "seed": 0 if seed == "real" else int(seed), **overrides})
    a = argparse.Namespace(**vars(args))
    if (name.startswith("mined") or name.startswith("self")) and args.radius is None:
        c.skeleton_radius = float(SkeletonRecipe.radius)
    if seed == "real":
        c.skeleton_radius, a.margin, a.tube_pad = args.real_radius, args.real_margin, -1.0
    t0 = time.perf_counter()
    model_path, info_path = args.cache / f"{key}.pt", args.cache / f"{key}.train.json"
    if model_path.is_file() and info_path.is_file():  # trained before, scored on other volumes
        from xpress_fast.unet import load_model

        model, train_info = load_model(model_path, device=device), json.loads(info_path.read_text())
    else:
        from xpress_fast.unet import save_checkpoint

        model, info = run_recipe(name, vols["train"], c, a, args.cache / f"{key}.work", device)
        train_info = dict(train_seconds=time.perf_counter() - t0, **info)
        save_checkpoint(model_path, model)
        info_path.write_text(json.dumps(train_info, indent=1, default=lambda o: None))
    t1 = time.perf_counter()
    row = score(model, vols["val"], vols["test"], device, c.offsets)
    row.update(score_seconds=time.perf_counter() - t1, seconds=train_info["train_seconds"] +
               time.perf_counter() - t1, **train_info)
    path.write_text(json.dumps(row, indent=1, default=lambda o: None))
    print(f"{label:24s} {name:12s} AUC {row['auc']:.3f} nERL {row['nerl']:.3f} ERL+Rand "
          f"{row['erl_rand']:.3f} (thr {row['threshold']:.2f}; {row['seconds']:.0f} s)", flush=True)
    return row, vols


def _overrides(items) -> dict:
    """``FIELD=VALUE`` strings as TrainConfig fields (values parsed as JSON where they can be)."""
    from xpress_fast.unet import TrainConfig

    fields = set(TrainConfig().to_dict())
    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep or field not in fields:
            raise SystemExit(f"--set takes FIELD=VALUE with a TrainConfig field; got {item!r}")
        try:
            out[field] = json.loads(value)
        except json.JSONDecodeError:
            out[field] = value
    return out


def table(results: dict, datasets, recipes) -> list:
    lines = ["| data | recipe | boundary AUC | nERL | ERL+Rand | threshold (val) | splits / merges | "
             "nERL / voxel | ERL+Rand / voxel | train s |", "|---|---|---|---|---|---|---|---|---|---|"]
    means: dict = {}

    def reference(name: str) -> str:
        # a "best of N" row is compared with the voxel labels' best of N
        return "voxel" + name[name.index(", best of"):] if ", best of" in name else "voxel"

    for label, _ in datasets:
        for name in recipes:
            r = results.get((label, name))
            ref = results.get((label, reference(name)))
            if r is None:
                continue
            rn = r["nerl"] / ref["nerl"] if ref and ref["nerl"] else float("nan")
            re = r["erl_rand"] / ref["erl_rand"] if ref and ref["erl_rand"] else float("nan")
            lines.append(f"| {label} | {name} | {r['auc']:.3f} | {r['nerl']:.3f} | {r['erl_rand']:.3f} | "
                         f"{r['threshold']:.2f} | {r['splits']} / {r['merges']} | {rn:.2f} | {re:.2f} | "
                         f"{r['train_seconds']:.0f} |")
            if not label.startswith("neuroproof"):
                means.setdefault(name, []).append((r["auc"], r["nerl"], r["erl_rand"], rn, re))
    for name in recipes:
        if name in means and len(means[name]) > 1:
            m = np.mean(np.asarray(means[name], dtype=np.float64), axis=0)
            ref_means = np.mean(np.asarray(means.get(reference(name), [(np.nan,) * 5]), dtype=np.float64), axis=0)
            # the ratios of the means (what "x % of the voxel-trained score" means), not the mean ratio
            lines.append(f"| synthetic mean ({len(means[name])} seeds) | {name} | {m[0]:.3f} | {m[1]:.3f} | "
                         f"{m[2]:.3f} | | | {m[1] / ref_means[1]:.2f} | {m[2] / ref_means[2]:.2f} | |")
    return lines


if __name__ == "__main__":
    main()
