"""The ``xpress-fast`` command line: demo, train, predict, segment, sweep, evaluate, submit,
check-submission, view.

Every command takes its options from flags and, optionally, from a config file
(``--config FILE``, JSON or TOML): keys are the long option names (``block-shape`` or
``block_shape``), either at the top level or in a table named after the command
(``[segment]``); flags given on the command line win over the file.

Exit codes: 0 success; 1 the command ran but its check failed (``check-submission`` on a bad
file, blocks that still failed after their retries); 2 bad usage or bad input (a missing file or
dataset, mismatched geometry, an unwritable output), with a one-line message and no traceback;
130 interrupted.

Only this module prints; the library logs (``--verbose`` shows the log).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .agglomeration import DEFAULT_MERGE_FUNCTION
from .fragments import DEFAULT_CONTEXT
from .sweeps import DEFAULT_THRESHOLDS

log = logging.getLogger("xpress_fast")



#: Exit codes (see the module docstring).
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran but its check failed
EXIT_USAGE = 2  # bad usage or bad input (argparse exits with 2 too)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

#: The --inside-threshold value that means None (count every voxel pair): any negative one.
EVERY_PAIR = -1.0


class CliError(Exception):
    """A user error: printed as one line, exit code EXIT_USAGE."""


# ---------------------------------------------------------------------------------------------
# helpers


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def _triple(text: str) -> tuple:
    parts = text.replace(",", " ").split()
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers 'Z,Y,X'; got {text!r}")
    try:
        return tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers 'Z,Y,X'; got {text!r}") from None


def _int_triple(text: str) -> tuple:
    vals = _triple(text)
    if any(v != int(v) or v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected three positive integers 'Z,Y,X'; got {text!r}")
    return tuple(int(v) for v in vals)


def _thresholds(text) -> tuple:
    """'0.3,0.5' (or a config file's list) -> (0.3, 0.5): parsing only; the API's one threshold
    validator (xpress_fast._validate.check_thresholds) checks the values, with its messages."""
    if isinstance(text, (list, tuple)):
        parts = [str(t) for t in text]
    else:
        parts = str(text).replace(",", " ").split()
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like '0.3,0.5,0.7'; got {text!r}") from None
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one threshold")
    return tuple(vals)


def _long_range(text) -> tuple:
    """'3,9' -> (3, 9): the long-range distances of the U-Net's channel layout."""
    try:
        vals = [int(p) for p in str(text).replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers like '3,9'; got {text!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers like '3,9'; got {text!r}")
    return tuple(vals)


def _offsets_arg(args):
    """The affinity channels' offsets named by --long-range (the U-Net's layout), or None."""
    if getattr(args, "choice_offsets", None) is not None:  # from --choice
        return args.choice_offsets
    if getattr(args, "long_range", None) is None:
        return None
    from .region_graphs import axis_offsets

    return axis_offsets(args.long_range)


def _inside_arg(args):
    t = args.inside_threshold
    return None if t < 0 else t  # negative: EVERY_PAIR


def _load_config(path: str, command: str, parser: argparse.ArgumentParser) -> dict:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"config file not found: {path!r}")
    if p.suffix.lower() == ".toml" and sys.version_info < (3, 11):
        raise CliError(f"config file {path!r}: TOML config files need Python 3.11 or later (tomllib); use JSON")
    try:
        if p.suffix.lower() == ".toml":
            import tomllib

            with open(p, "rb") as fh:
                raw = tomllib.load(fh)
        else:
            with open(p) as fh:
                raw = json.load(fh)
    except Exception as exc:  # JSONDecodeError, TOMLDecodeError
        raise CliError(f"config file {path!r} could not be parsed: {exc}") from None
    if not isinstance(raw, dict):
        raise CliError(f"config file {path!r} must hold a table/object of options")
    section = raw.get(command, {})
    flat = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    if isinstance(section, dict):
        flat.update(section)
    known = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    out = {}
    for key, value in flat.items():
        dest = key.replace("-", "_")
        if dest not in known:
            raise CliError(
                f"config file {path!r}: unknown option {key!r} for '{command}' "
                f"(known: {', '.join(sorted(k.replace('_', '-') for k in known))})"
            )
        action = known[dest]
        if callable(action.type) and value is not None and not isinstance(value, bool):
            try:
                if isinstance(value, list) and action.type in (_triple, _int_triple):
                    value = action.type(",".join(str(v) for v in value))
                elif isinstance(value, list) and action.type is _thresholds:
                    value = action.type(value)  # _thresholds, which takes a list too
                else:
                    value = action.type(value) if not isinstance(value, list) else value
            except (argparse.ArgumentTypeError, ValueError) as exc:
                raise CliError(f"config file {path!r}: option {key!r}: {exc}") from None
        out[dest] = value
    return out


def _progress(desc: str, quiet: bool) -> Callable:
    """A factory of tqdm progress bars (or a no-op) handed to library functions."""

    def make(total: Optional[int] = None, desc_: Optional[str] = None):
        if quiet:
            return _NullBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc_ or desc, leave=False, file=sys.stderr,
                    dynamic_ncols=True)

    return make


class _NullBar:
    def update(self, n=1):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _load_skeletons_arg(path: str):
    from .skeletons import load_skeletons

    if not Path(path).is_file():
        raise CliError(f"skeletons file not found: {path!r}")
    return load_skeletons(path)


def _roi_from_args(args):
    """(roi_begin, roi_shape) in nm from --mode / --roi-begin / --roi-shape, or (None, None)."""
    from .rois import TEST_ROI, VALIDATION_ROI

    if args.roi_begin is not None or args.roi_shape is not None:
        if args.roi_begin is None or args.roi_shape is None:
            raise CliError("--roi-begin and --roi-shape must be given together")
        return tuple(args.roi_begin), tuple(args.roi_shape)
    if args.mode == "validation":
        return VALIDATION_ROI.begin, VALIDATION_ROI.shape
    if args.mode == "test":
        return TEST_ROI.begin, TEST_ROI.shape
    return None, None


def _format_scores(scores: dict) -> str:
    order = ["n_neurons", "erl", "nerl", "split_count", "merge_count", "rand_split", "rand_merge",
             "voi_split", "voi_merge", "nvi_split", "nvi_merge", "xpress_voi", "xpress_rand",
             "xpress_erl_voi", "xpress_erl_rand"]
    keys = [k for k in order if k in scores] + [k for k in scores if k not in order]
    lines = []
    for k in keys:
        v = scores[k]
        if isinstance(v, float):
            lines.append(f"{k:>16}  {v:.6g}")
        else:
            lines.append(f"{k:>16}  {v}")
    return "\n".join(lines)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------------------------
# commands


def cmd_evaluate(args) -> int:
    from .io import read_volume
    from .metrics import SkeletonIndex

    skeletons = _load_skeletons_arg(args.skeletons)
    roi_begin, roi_shape = _roi_from_args(args)
    indexes: dict = {}  # one prepared index per geometry, shared by the segmentations that have it
    results = []
    for path in args.segmentation:
        vol = read_volume(path, args.dataset, voxel_size=args.voxel_size, offset=args.offset)
        if vol.data.ndim != 3:
            raise CliError(f"{path}: dataset {args.dataset!r} must be a 3-D label volume; got shape {vol.data.shape}")
        key = (vol.data.shape, vol.voxel_size, vol.offset)
        if key not in indexes:
            indexes[key] = SkeletonIndex(skeletons, voxel_size=vol.voxel_size, offset=vol.offset,
                                         shape=vol.data.shape, roi_begin=roi_begin, roi_shape=roi_shape,
                                         mode=args.scoring, outside=args.outside)
        results.append((path, indexes[key].score(vol.data).as_dict()))
    if args.json:
        if len(results) == 1:
            _print(json.dumps(_jsonable(results[0][1]), indent=2))
        else:
            _print(json.dumps([{"segmentation": path, **_jsonable(d)} for path, d in results], indent=2))
    else:
        for path, d in results:
            _print(f"{path}:{args.dataset}  ({args.mode} ROI, {args.scoring} mode)")
            _print(_format_scores(d))
    return EXIT_OK


def cmd_check_submission(args) -> int:
    from .submission import check_submission

    check = check_submission(args.submission)
    if args.json:
        _print(json.dumps(_jsonable(check.as_dict()), indent=2))
    else:
        if check.ok:
            _print(f"OK: {args.submission} is a valid submission "
                   f"({check.shape} {check.dtype}, {check.n_labels} labels)")
        else:
            _print(f"INVALID: {args.submission}")
            for p in check.problems:
                _print(f"  - {p}")
        for n in check.notes:
            _print(f"  note: {n}")
    return EXIT_OK if check.ok else EXIT_CHECK_FAILED


def cmd_submit(args) -> int:
    from .io import open_volume
    from .submission import write_submission

    vol = open_volume(args.segmentation, args.dataset, voxel_size=args.voxel_size, offset=args.offset)
    if len(vol.shape) != 3:
        raise CliError(f"dataset {args.dataset!r} must be a 3-D label volume; got shape {vol.shape}")
    out = Path(args.out)
    write_submission(out, vol.data, voxel_size=vol.voxel_size, offset=vol.offset)  # checks it too
    _print(f"wrote {out}; format check: OK")
    return EXIT_OK


def _segment_mutex(args) -> int:
    """segment --method mutex: the mutex watershed of the whole volume in memory, one
    segmentation_<bias> per --thresholds value (the biases)."""
    import xpress_fast
    from .io import read_volume, write_volume
    from .pipeline import segmentation_dataset

    offsets = _offsets_arg(args)
    if offsets is None:
        raise CliError("--method mutex needs --long-range (the offsets of every affinity channel)")
    if args.fragments:
        raise CliError("--method mutex makes its own segmentation: give no --fragments")
    from .pipeline.runner import WORK

    out = Path(args.out)
    taken = [segmentation_dataset(b) for b in args.thresholds if (out / segmentation_dataset(b)).exists()]
    if (out / WORK / "run.json").exists() or taken:
        raise CliError(f"{args.out} already holds a 'segment' run or {', '.join(taken) or 'its datasets'}; "
                       f"give --method mutex an output of its own")
    t0 = time.perf_counter()
    affs = read_volume(args.affinities, args.affinities_dataset)
    names = []
    for bias in args.thresholds:
        seg = xpress_fast.mutex_watershed(affs.data, offsets, bias=bias)
        name = segmentation_dataset(bias)
        write_volume(args.out, name, seg, voxel_size=affs.voxel_size, offset=affs.offset,
                     attrs={"method": "mutex", "bias": float(bias), "offsets": [list(o) for o in offsets]})
        names.append(name)
    _print(f"wrote {args.out}: {len(names)} mutex watershed segmentations ({', '.join(names)}); "
           f"{time.perf_counter() - t0:.1f} s")
    return EXIT_OK


def _apply_choice(args) -> None:
    """--choice FILE.json (written by sweep --write-choice) sets the merge function, the
    threshold, --long-range and --inside-threshold."""
    try:
        choice = json.loads(Path(args.choice).read_text())
        method, merge_function, threshold = choice["method"], choice["merge_function"], float(choice["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"--choice {args.choice}: not a choice written by 'sweep --write-choice' ({exc})") from None
    args.method = "mutex" if method == "mutex" else "agglomerate"
    args.merge_function, args.thresholds = merge_function or args.merge_function, (threshold,)
    offsets = choice.get("offsets")
    args.choice_offsets = None if not offsets else [tuple(int(c) for c in o) for o in offsets]
    inside = choice.get("inside_threshold", 0.5)
    args.inside_threshold = EVERY_PAIR if inside is None else float(inside)


def cmd_segment(args) -> int:
    from .pipeline import segment_volume

    if args.choice:
        _apply_choice(args)
    if args.method == "mutex":
        return _segment_mutex(args)

    fragments = (args.fragments, args.fragments_dataset) if args.fragments else None
    wopts = {"min_seed_distance": args.min_seed_distance}
    result = segment_volume(
        args.affinities, args.affinities_dataset, args.out,
        thresholds=args.thresholds, merge_function=args.merge_function, fragments=fragments,
        block_shape=args.block_shape, context=args.context, watershed_options=wopts,
        offsets=_offsets_arg(args), inside_threshold=_inside_arg(args),
        scheduler=args.scheduler, workers=args.workers, retries=args.retries,
        write_thresholds=args.write_thresholds, progress=_progress("segment", args.quiet),
        restart=args.restart,
    )
    if result.up_to_date:
        _print(f"nothing to do: {args.out} already holds every output of this run (same settings, inputs "
               f"unchanged): fragments ({result.n_fragments} ids), {', '.join(result.segmentation_datasets) or 'no'} "
               "segmentations")
        return EXIT_OK
    retried = sum(r.retries for r in result.reports)
    skipped = sum(r.skipped for r in result.reports)
    _print(f"wrote {args.out}: fragments ({result.n_fragments} ids) and "
           f"{len(result.segmentation_datasets)} segmentations ({', '.join(result.segmentation_datasets)}); "
           f"{result.n_blocks} blocks, {skipped} block-stages resumed from records, {retried} retries; "
           f"{result.seconds:.1f} s")
    return EXIT_OK


def cmd_sweep(args) -> int:
    from .io import open_volume, read_volume
    from .sweeps import DEFAULT_SWEEP_MERGE_FUNCTIONS, sweep, sweep_methods

    skeletons = _load_skeletons_arg(args.skeletons)
    t0 = time.perf_counter()
    names = [args.merge_function] if isinstance(args.merge_function, str) else list(args.merge_function)  # config
    if names == ["all"]:
        names = list(DEFAULT_SWEEP_MERGE_FUNCTIONS)
    run_settings: dict = {}
    roi_begin, roi_shape = _roi_from_args(args)
    if args.segmented:
        from .pipeline import load_agglomeration

        if len(names) > 1 or args.long_range is not None or args.mutex_biases is not None:
            raise CliError("--segmented sweeps the run's own agglomeration: give no other --merge-function, "
                           "--long-range or --mutex-biases")
        agg = load_agglomeration(args.segmented)
        frag_vol = open_volume(args.segmented, "fragments")
        from .pipeline.runner import WORK

        try:  # what the run was made with, for --write-choice
            run_settings = json.loads((Path(args.segmented) / WORK / "run.json").read_text())
        except (OSError, ValueError):
            run_settings = {}
        result = sweep(agg, skeletons, args.thresholds, voxel_size=frag_vol.voxel_size, offset=frag_vol.offset,
                       roi_begin=roi_begin, roi_shape=roi_shape, mode=args.scoring, fragments=frag_vol.data)
        rows = [{"method": "segment-run", "merge_function": agg.merge_function, **r} for r in result.rows()]
    else:
        if not args.affinities:
            raise CliError("sweep needs AFFS (affinities) or --segmented OUT.zarr (a 'segment' run)")
        affs = read_volume(args.affinities, args.affinities_dataset)
        fragments = None
        wopts = {"min_seed_distance": args.min_seed_distance}
        if args.fragments:
            fragments = read_volume(args.fragments, args.fragments_dataset).data
        elif args.block_shape is not None:  # the fragments a 'segment' run with these blocks makes
            from . import blockwise_watershed

            fragments = blockwise_watershed(affs.data, block_shape=args.block_shape, context=args.context, **wopts)
        if args.mutex_biases is not None and args.long_range is None:
            raise CliError("--mutex-biases needs --long-range (the offsets of every affinity channel)")
        rows = list(sweep_methods(
            affs.data, skeletons, list(args.thresholds or DEFAULT_THRESHOLDS), merge_functions=names,
            offsets=_offsets_arg(args), mutex_biases=args.mutex_biases, fragments=fragments,
            watershed_options=wopts, inside_threshold=_inside_arg(args), voxel_size=affs.voxel_size,
            offset=affs.offset, roi_begin=roi_begin, roi_shape=roi_shape, mode=args.scoring,
        ).rows)
    from .sweeps import MethodSweepResult

    table = MethodSweepResult(tuple(rows))
    best, picked = table.best(), table.choice()
    if args.write_choice:
        from .pipeline.runner import atomic_write_json

        if args.segmented:  # the run's own settings
            offsets = run_settings.get("offsets")
            inside = run_settings.get("inside_threshold", _inside_arg(args))
        else:
            offsets = _offsets_arg(args) if picked["uses_offsets"] else None
            inside = _inside_arg(args)
        choice = {**picked, "offsets": None if offsets is None else [list(o) for o in offsets],
                  "inside_threshold": inside}
        choice["uses_offsets"] = offsets is not None
        atomic_write_json(Path(args.write_choice), _jsonable(choice))
        if not args.json:
            _print(f"wrote {args.write_choice} (use it with: xpress-fast segment ... --choice {args.write_choice})")
    if args.out:
        from .report import plot_scores, write_scores

        write_scores(rows, Path(args.out))
        same = [r for r in rows if r["method"] == best["method"] and r["merge_function"] == best["merge_function"]]
        plot_scores(same, Path(args.out) / "scores.png")
    if args.json:
        _print(json.dumps(_jsonable(rows), indent=2))
        return EXIT_OK
    _print(f"{'method':>21} {'merge function':>14} {'threshold':>9} {'nERL':>8} {'rand':>8} {'voi':>8} "
           f"{'erl+rand':>9} {'splits':>7} {'merges':>7}")
    for r in rows:
        _print(f"{r['method']:>21} {str(r['merge_function'] or '-'):>14} {r['threshold']:9.3f} {r['nerl']:8.4f} "
               f"{r['xpress_rand']:8.4f} {r['xpress_voi']:8.4f} {r['xpress_erl_rand']:9.4f} {r['split_count']:7d} "
               f"{r['merge_count']:7d}")
    _print(f"best: {best['method']} {best['merge_function'] or ''} at threshold {best['threshold']:.3f}: "
           f"xpress_erl_rand {best['xpress_erl_rand']:.4f} ({time.perf_counter() - t0:.1f} s)")
    return EXIT_OK


def _import_unet(command: str):
    from . import unet  # MissingExtra, printed as one line, when torch is absent

    return unet


def cmd_train(args) -> int:
    from .io import check_same_geometry, open_volume

    unet = _import_unet("train")
    raw = open_volume(args.raw, args.raw_dataset)
    if len(raw.shape) != 3:
        raise CliError(f"raw must be a 3-D volume; got shape {raw.shape}")
    labels = open_volume(args.labels, args.labels_dataset) if args.labels else None
    skeletons = _load_skeletons_arg(args.skeletons) if args.skeletons else None
    if labels is None and skeletons is None:
        raise CliError("train needs --labels or --skeletons (or both)")
    if labels is not None:
        check_same_geometry([("raw", raw), ("labels", labels)])
    preset = unet.TrainConfig.tiny if args.preset == "tiny" else unet.TrainConfig
    cfg = preset(steps=args.iterations, seed=args.seed)
    if args.skeleton_radius is not None:
        cfg.skeleton_radius = float(args.skeleton_radius)
    recipe_flags = [flag for flag, on in (("--rounds", args.rounds is not None),
                                          ("--round-steps", args.round_steps is not None),
                                          ("--margin", args.margin is not None),
                                          ("--margin-pad", args.margin_pad is not None),
                                          ("--tube-pad", args.tube_pad is not None),
                                          ("--restarts", args.restarts is not None),
                                          ("--ensemble", args.ensemble),
                                          ("--dark-quantile", args.dark_quantile is not None),
                                          ("--validation-skeletons", args.validation_skeletons is not None),
                                          ("--validation-raw", args.validation_raw is not None),
                                          ("--plot", args.plot is not None)) if on]
    if labels is None:
        return _train_from_skeletons(args, unet, raw, skeletons, cfg)
    if recipe_flags:
        raise CliError(f"{', '.join(recipe_flags)}: the skeleton-only recipe's options; they do not "
                       f"apply when --labels are given")
    result = unet.train(
        raw.data[...], labels=None if labels is None else labels.data[...], skeletons=skeletons,
        voxel_size=raw.voxel_size, offset=raw.offset, config=cfg, checkpoint_dir=args.out,
        device=args.device, progress=not args.quiet,
    )
    _print(f"trained {result.step} steps (last loss {result.losses[-1]:.4f}); checkpoint {result.checkpoint}"
           if result.losses else f"checkpoint {result.checkpoint}")
    return EXIT_OK


def _pad_nm(text: str, flag: str = "--margin-pad", none: str = "one fixed margin") -> float | None:
    """A pad in nm from the command line; 'none' turns the per-skeleton measurement off."""
    if text == "none":
        return None
    try:
        pad = float(text)
    except ValueError:
        pad = float("nan")
    if not (np.isfinite(pad) and pad >= 0):
        raise CliError(f"{flag} must be a number of nm >= 0, or 'none' for {none}; got {text!r}")
    return pad


def _train_from_skeletons(args, unet, raw, skeletons, cfg) -> int:
    """``train --skeletons`` without labels: the rounds of ``unet.train_from_skeletons``."""
    from ._extras import require
    from .io import open_volume

    plot = Path(args.plot) if args.plot is not None else Path(args.out) / "training.png"
    require("matplotlib", "the training plot of train --skeletons")  # before any training
    defaults = unet.SkeletonRecipe()
    recipe = unet.SkeletonRecipe(
        rounds=defaults.rounds if args.rounds is None else args.rounds,
        round_steps=defaults.round_steps if args.round_steps is None else args.round_steps,
        radius=defaults.radius if args.skeleton_radius is None else args.skeleton_radius,
        margin=defaults.margin if args.margin is None else (None if args.margin <= 0 else args.margin),
        margin_pad=defaults.margin_pad if args.margin_pad is None else _pad_nm(args.margin_pad),
        tube_pad=(defaults.tube_pad if args.tube_pad is None
                  else _pad_nm(args.tube_pad, "--tube-pad", "one tube radius")),
        dark_quantile=(defaults.dark_quantile if args.dark_quantile is None
                       else (None if args.dark_quantile <= 0 else args.dark_quantile)),
        restarts=defaults.restarts if args.restarts is None else args.restarts,
        ensemble=bool(args.ensemble), min_nodes=args.min_nodes, round_lr=args.round_lr)
    if recipe.restarts < 1:
        raise CliError(f"--restarts must be >= 1; got {recipe.restarts}")
    if recipe.ensemble and (recipe.restarts < 2 or recipe.rounds != 1):
        raise CliError(f"--ensemble needs --restarts 2 or more and --rounds 1; got --restarts {recipe.restarts}, "
                       f"--rounds {recipe.rounds}")
    if recipe.dark_quantile is not None and not recipe.dark_quantile <= 50:
        raise CliError(f"--dark-quantile must be a percentage in (0, 50], or 0 for none; got {recipe.dark_quantile}")
    if recipe.rounds < 1:
        raise CliError(f"--rounds must be >= 1; got {recipe.rounds}")
    if recipe.round_steps < 0:
        raise CliError(f"--round-steps must be >= 0; got {recipe.round_steps}")
    vraw = vsk = voff = None
    if args.validation_raw is not None and args.validation_skeletons is None:
        raise CliError("--validation-raw needs --validation-skeletons")
    if args.validation_skeletons is not None:
        vsk = _load_skeletons_arg(args.validation_skeletons)
        if args.validation_raw is not None:
            vvol = open_volume(args.validation_raw, args.raw_dataset)
            if not np.allclose(vvol.voxel_size, raw.voxel_size):
                raise CliError(f"--validation-raw has voxel size {list(vvol.voxel_size)}, the raw "
                               f"{list(raw.voxel_size)}; they must match")
            vraw, voff = vvol.data[...], vvol.offset
    data = raw.data[...]
    unet.check_skeleton_training_input(data, skeletons, voxel_size=raw.voxel_size, offset=raw.offset)
    result = unet.train_from_skeletons(
        data, skeletons, voxel_size=raw.voxel_size, offset=raw.offset, config=cfg, recipe=recipe,
        validation_raw=vraw, validation_skeletons=vsk, validation_offset=voff, out=args.out,
        device=args.device, progress=not args.quiet, log=None if args.quiet else _print)
    unet.plot_history(result.history, plot)
    last = result.history[-1]
    val = last.get("validation") or {}
    _print(f"trained {len(result.history)} rounds; {val.get('on', 'validation')}: ERL+Rand "
           f"{val.get('xpress_erl_rand', float('nan')):.4f}, nERL {val.get('nerl', float('nan')):.4f}; "
           f"checkpoint {result.checkpoint}; plot {plot}")
    return 0


def cmd_predict(args) -> int:
    from .io import container_kind, open_volume, write_volume

    unet = _import_unet("predict")
    if not Path(args.model).is_file():
        raise CliError(f"model file not found: {args.model!r}")
    dtype = "uint8" if args.uint8 else "float32"
    out = Path(args.out)
    if container_kind(out) == "zarr":  # block-wise on dask, resumable, identical to the in-memory run
        from .pipeline import predict_volume

        result = predict_volume(
            args.raw, args.raw_dataset, args.model, out, out_dataset=args.out_dataset,
            block_shape=args.block_shape, tile_shape=args.tile_shape, dtype=dtype, device=args.device,
            scheduler=args.scheduler, workers=args.workers, retries=args.retries,
            progress=_progress("predict", args.quiet), restart=args.restart,
        )
        rep = result.report
        done = ("nothing to do: already complete from the same settings and unchanged raw" if rep is None else
                f"{result.n_blocks} blocks, {rep.skipped} resumed from records, {rep.retries} retries")
        _print(f"wrote {args.out}:{args.out_dataset} ({', '.join(map(str, result.shape))}) {dtype}; "
               f"{done}; {result.seconds:.1f} s")
        return EXIT_OK
    # HDF5: predicted in memory and written in one go; the block-wise options need a zarr output
    given = [flag for flag, on in (("--block-shape", args.block_shape is not None),
                                   ("--scheduler", args.scheduler != "threads"),
                                   ("--workers", args.workers is not None), ("--retries", args.retries != 2),
                                   ("--restart", args.restart)) if on]
    if given:
        raise CliError(f"{', '.join(given)}: block-wise prediction writes a zarr container; "
                       f"give --out a .zarr path (got {args.out!r})")
    raw = open_volume(args.raw, args.raw_dataset)
    if len(raw.shape) != 3:
        raise CliError(f"raw must be a 3-D volume; got shape {raw.shape}")
    model = unet.load_model(args.model, device=args.device)
    affs = unet.predict(raw.data, model, block_shape=args.tile_shape, dtype=dtype, device=args.device,
                        progress=not args.quiet)
    write_volume(out, args.out_dataset, affs, voxel_size=raw.voxel_size, offset=raw.offset)
    _print(f"wrote {args.out}:{args.out_dataset} ({', '.join(map(str, affs.shape))}) {dtype}")
    return EXIT_OK


def cmd_demo(args) -> int:
    from .pipeline.demo import run_demo

    summary = run_demo(Path(args.out), quick=args.quick, seed=args.seed, size=args.size,
                       iterations=args.iterations, progress=None if args.quiet else _progress("demo", False),
                       log=_print)
    best = summary["best"]
    _print(f"best threshold {best['threshold']:.2f}: nERL {best['nerl']:.3f}, XPRESS ERL+Rand "
           f"{best['xpress_erl_rand']:.3f} (trivial: all one label {summary['trivial']['one_label']:.3f}, "
           f"one label per voxel {summary['trivial']['per_voxel']:.3f})")
    _print(f"demo done in {summary['seconds']:.0f} s; report in {summary['report']}")
    return EXIT_OK


def cmd_view(args) -> int:
    """Serve the outputs in neuroglancer until Ctrl-C; the URL is the first line printed."""
    from .pipeline.view import view_outputs

    viewer = view_outputs(args.output, thresholds=args.thresholds, skeletons=args.skeletons,
                          raw=(args.raw, args.raw_dataset) if args.raw else None,
                          bind_address=args.bind_address, port=args.port)
    import neuroglancer  # installed: view_outputs imported it

    url = viewer.get_viewer_url()
    _print(url)
    layers = [layer.name for layer in viewer.state.layers]
    _print(f"serving {len(layers)} layers ({', '.join(layers)}); press Ctrl-C to stop")
    if args.open:
        import webbrowser

        webbrowser.open(url)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        neuroglancer.stop()
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE",
                   help="read option defaults from a JSON or TOML file (keys: long option names, "
                        "top level or in a table named after the command); flags win")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show the library's log, and the traceback of an error, on stderr")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _command(sub, name: str, func: Callable, **kwargs) -> argparse.ArgumentParser:
    """A subcommand that runs ``func(args)``, with the options every command takes."""
    p = sub.add_parser(name, **kwargs)
    _common(p)
    p.set_defaults(func=func)
    return p


# Each option below is defined once, with one help text, for every command that takes it.


def _dataset(p: argparse.ArgumentParser, flag: str, default: str, where: str) -> None:
    """Which dataset of a container to read or write (``where``: 'dataset inside the raw container')."""
    p.add_argument(flag, default=default, metavar="NAME", help=f"the {where} (default: %(default)s)")


def _volume(p: argparse.ArgumentParser, name: str, help: str, *, default_dataset: str, required: bool = False,
            positional: Optional[str] = None, nargs: Optional[str] = None) -> None:
    """An input volume: its container (``--<name> PATH``, or the positional ``positional``) and
    ``--<name>-dataset``."""
    if positional:
        p.add_argument(name, metavar=positional, nargs=nargs, help=help)
    else:
        p.add_argument(f"--{name}", required=required, metavar="PATH", help=help)
    _dataset(p, f"--{name}-dataset", default_dataset, f"dataset inside the {name} container")


def _raw(p: argparse.ArgumentParser) -> None:
    _volume(p, "raw", "raw volume container (.h5/.zarr)", default_dataset="raw", required=True)


def _fragments(p: argparse.ArgumentParser) -> None:
    _volume(p, "fragments", "use these fragments instead of the watershed", default_dataset="fragments")


def _skeletons(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--skeletons", required=required, metavar="PATH", help="skeletons (.npz, the challenge format)")


def _seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def _device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cuda if available)")


def _json(p: argparse.ArgumentParser, what: str = "the scores", note: str = "") -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON{note}")


def _thresholds_option(p: argparse.ArgumentParser, default, default_text: str) -> None:
    p.add_argument("--thresholds", type=_thresholds, default=default, metavar="T1,T2,...",
                   help=f"agglomeration thresholds in [0, 1] (waterz semantics; default: {default_text})")


def _watershed(p: argparse.ArgumentParser) -> None:
    """The watershed's options (segment, and sweep when it makes its fragments)."""
    p.add_argument("--min-seed-distance", type=int, default=10,
                   help="watershed: minimum distance between seeds in voxels (default: %(default)s)")
    p.add_argument("--context", type=_int_triple, default=DEFAULT_CONTEXT, metavar="Z,Y,X",
                   help="context voxels read around each block for the watershed, when it runs in blocks "
                        "(default: %(default)s)")


def _blockwise(p: argparse.ArgumentParser, block_help: str) -> None:
    """The options of a block-wise command on dask (predict, segment): the same names and meaning."""
    p.add_argument("--block-shape", type=_int_triple, metavar="Z,Y,X", help=block_help)
    p.add_argument("--scheduler", default="threads", metavar="threads|processes|sync|ADDRESS",
                   help="dask scheduler: the local threaded (default), process or synchronous one, "
                        "or a dask.distributed scheduler address such as tcp://host:8786")
    p.add_argument("--workers", type=int, default=None, help="local workers (default: all cores)")
    p.add_argument("--retries", type=int, default=2,
                   help="retries of a failed block before the run fails (default: %(default)s)")
    p.add_argument("--restart", action="store_true",
                   help="when the output holds a run with other settings or from inputs changed since, discard "
                        "that run's outputs and start afresh (default: refuse)")


def _geometry(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voxel-size", type=_triple, metavar="Z,Y,X",
                   help="voxel size in nm (z,y,x); default: the dataset's 'resolution' attr")
    p.add_argument("--offset", type=_triple, metavar="Z,Y,X",
                   help="offset in nm (z,y,x); default: the dataset's 'offset' attr, else 0")


def _graph_options(p) -> None:
    p.add_argument("--long-range", type=_long_range, default=None, metavar="K1,K2,...",
                   help="the affinities hold the U-Net's long-range channels -K along z, y, x for each K "
                        "(e.g. 3,9 for the tiny preset, 3,9,27 for the default); they add evidence to "
                        "the scores of touching fragments (default: use channels 0-2 only)")
    p.add_argument("--inside-threshold", type=float, default=0.5, metavar="T",
                   help="the region graph counts only voxel pairs whose mean nearest-neighbour affinity "
                        "is > T at both voxels (default: %(default)s; a negative value counts every pair)")


def _roi(p: argparse.ArgumentParser, default_mode: str = "full") -> None:
    from .metrics import MODES

    p.add_argument("--mode", choices=("full", "validation", "test"), default=default_mode,
                   help="the evaluation ROI: the whole array (full), or the challenge's validation "
                        "or test ROI (docs/scoring.md) (default: %(default)s)")
    p.add_argument("--roi-begin", type=_triple, metavar="Z,Y,X",
                   help="a custom evaluation ROI's begin in nm (with --roi-shape; overrides --mode)")
    p.add_argument("--roi-shape", type=_triple, metavar="Z,Y,X",
                   help="a custom evaluation ROI's shape in nm (with --roi-begin)")
    p.add_argument("--scoring", choices=MODES, default="official",
                   help="'official' reproduces the challenge's numbers including its quirks; "
                        "'corrected' fixes the quirks listed in docs/scoring.md (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .metrics import OUTSIDE_POLICIES

    parser = argparse.ArgumentParser(
        prog="xpress-fast",
        description="Affinities -> watershed/agglomeration -> segmentation, scored against "
                    "skeletons with the XPRESS challenge metrics (ERL/nERL, Rand, VOI). Volumes "
                    "are HDF5 (.h5) or zarr (.zarr) datasets with 'resolution' and 'offset' attrs "
                    "(nm, z y x).",
        epilog=f"Start with: xpress-fast demo. Exit codes: {EXIT_OK} ok, {EXIT_CHECK_FAILED} a check failed, "
               f"{EXIT_USAGE} bad usage or input.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = _command(sub, "demo", cmd_demo, help="synthetic volume -> train -> predict -> segment -> sweep -> report",
                 description="Run the whole pipeline on a generated synthetic XNH-like volume "
                             "(no downloads): train a tiny U-Net briefly, predict affinities, "
                             "segment, sweep thresholds, score, and write a report "
                             "(scores.json/.csv, scores.png, slices.png).")
    p.add_argument("--out", default="xpress_fast_demo", metavar="DIR",
                   help="output directory (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny volume and a few training steps (about a minute; for tests)")
    p.add_argument("--size", type=int, metavar="N", help="volume edge in voxels (default: 64, quick: 32)")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="training iterations (default: 1500, quick: 10)")
    _seed(p)

    p = _command(sub, "train", cmd_train, help="train a U-Net for affinities",
                 description="Train a 3D U-Net (xpress_fast.unet, needs PyTorch) on raw data "
                             "with voxel labels and/or skeletons; writes a checkpoint.")
    _raw(p)
    _volume(p, "labels", "voxel labels container", default_dataset="labels")
    _skeletons(p, required=False)
    p.add_argument("--iterations", type=int, default=2000, help="training steps (default: %(default)s)")
    p.add_argument("--preset", choices=("tiny", "default"), default="default",
                   help="network size: 'tiny' (CPU-friendly, 6 feature maps) or 'default' "
                        "(default: %(default)s)")
    _device(p)
    _seed(p)
    p.add_argument("--out", required=True, metavar="DIR",
                   help="checkpoint directory (a run there is resumed from its latest checkpoint; "
                        "with skeletons only, from its last finished round)")
    g = p.add_argument_group(
        "skeletons only (no --labels)",
        "Round 0 trains on tubes around the skeletons (+ background mined at --margin nm from "
        "every skeleton and the voxels darker than --dark-quantile percent of the tubes); every further round agglomerates the model's own prediction, keeps the "
        "segments that hold nodes of exactly one skeleton as voxel labels and fine-tunes on them. "
        "Each round is checkpointed in OUT/round_<r>/; OUT/history.json and a plot of the loss and "
        "the validation score per round (--plot) are written.")
    g.add_argument("--rounds", type=int, default=None, help="rounds in all: 1 = tubes only, each further one a self-training round (default: 1)")
    g.add_argument("--round-steps", type=int, default=None,
                   help="training steps of each self-training round (default: 300)")
    g.add_argument("--round-lr", type=float, default=None, metavar="LR",
                   help="learning rate of the self-training rounds (default: the preset's)")
    g.add_argument("--margin", type=float, default=None, metavar="NM",
                   help="mine background at least NM nm from every skeleton, 0 = none (only where the "
                        "skeletons cover every object; default: 250, for XPRESS-like axons at 33 nm)")
    g.add_argument("--margin-pad", default=None, metavar="NM",
                   help="widen the margin of each skeleton to its radius measured in the raw plus NM nm "
                        "(wide objects are not mined into the background), 'none' = one fixed --margin "
                        "for all (default: 50)")
    g.add_argument("--tube-pad", default=None, metavar="NM",
                   help="narrow the tube of each skeleton to its radius measured in the raw less NM nm "
                        "(at least 66 nm, at most --skeleton-radius: thin objects get thin tubes), 'none' = "
                        "one radius for all (default: none)")
    g.add_argument("--restarts", type=int, default=None, metavar="N",
                   help="train round 0 from N initialisations and keep the one that scores best on "
                        "--validation-skeletons (else on the training skeletons; N times the training; "
                        "default: 1)")
    g.add_argument("--ensemble", action="store_true",
                   help="with --restarts N: keep all N models and write their ensemble (the mean of their "
                        "affinities; 'predict' reads it like one model) instead of the best one")
    g.add_argument("--dark-quantile", type=float, default=None, metavar="PERCENT",
                   help="also label background the voxels darker than this percentile of the tube voxels "
                        "(dark sheaths and membranes next to the objects), 0 = none "
                        "(default: 5)")
    g.add_argument("--min-nodes", type=int, default=2,
                   help="nodes a segment needs to become a pseudo-label (default: %(default)s)")
    g.add_argument("--skeleton-radius", type=float, default=None, metavar="NM",
                   help="tube radius around skeleton edges, nm (default: 133 with skeletons only, "
                        "66 when mixed with --labels)")
    g.add_argument("--validation-skeletons", metavar="PATH",
                   help="held-out skeletons (.npz) scored after every round (default: the training skeletons)")
    g.add_argument("--validation-raw", metavar="PATH",
                   help="the raw the validation skeletons lie in (default: --raw)")
    g.add_argument("--plot", metavar="PATH", help="the plot's path (default: OUT/training.png)")

    p = _command(sub, "predict", cmd_predict, help="predict affinities with a trained U-Net, block-wise",
                 description="Sliding-window prediction of affinities (C, Z, Y, X) for a raw "
                             "volume; written with the raw's resolution/offset. Into a zarr "
                             "container it runs block-wise on dask (a killed run resumes from "
                             "completed blocks; the result equals the in-memory prediction); "
                             "into HDF5 it predicts in memory.")
    _raw(p)
    p.add_argument("--model", required=True, metavar="PATH", help="checkpoint written by 'train'")
    p.add_argument("--out", required=True, metavar="PATH", help="output container (.h5/.zarr)")
    _dataset(p, "--out-dataset", "affinities", "dataset inside the output container")
    p.add_argument("--uint8", action="store_true", help="store affinities as uint8 (4x smaller)")
    _device(p)
    p.add_argument("--tile-shape", type=_int_triple, default=(64, 64, 64), metavar="Z,Y,X",
                   help="output voxels predicted per network window (default: 64,64,64)")
    _blockwise(p, "block shape in voxels (zarr output only): a multiple of the tile shape, or the "
                  "volume's size (default: the smallest multiple of the tile of at least 128)")

    p = _command(sub, "segment", cmd_segment, help="fragments + agglomeration at chosen thresholds, block-wise",
                 description="Watershed fragments and one global agglomeration, computed "
                             "block-wise on dask (a killed run resumes from completed blocks); "
                             "writes 'fragments' and 'segmentation_<threshold>' datasets.")
    _volume(p, "affinities", "affinities container (.h5/.zarr)", default_dataset="affinities", positional="AFFS")
    p.add_argument("--out", required=True, metavar="PATH.zarr",
                   help="output zarr container (also holds the block completion records)")
    _thresholds_option(p, (0.5,), "0.5")
    p.add_argument("--merge-function", default=DEFAULT_MERGE_FUNCTION,
                   help="mean, max, min or hist_quant_<Q> (default: %(default)s)")
    p.add_argument("--write-thresholds", type=_thresholds, default=None, metavar="T1,T2,...",
                   help="write segmentation volumes only for these of --thresholds (default: all); "
                        "the merge history for every threshold is saved either way (see sweep --segmented)")
    _graph_options(p)
    p.add_argument("--method", choices=("agglomerate", "mutex"), default="agglomerate",
                   help="agglomerate: block-wise fragments + one merge tree (default); mutex: the mutex "
                        "watershed over every channel, in memory, --thresholds are its biases (needs --long-range)")
    p.add_argument("--choice", metavar="FILE.json",
                   help="take the merge function, threshold, --long-range and --inside-threshold from the "
                        "file 'sweep --write-choice' wrote")
    _fragments(p)
    _watershed(p)
    _blockwise(p, "block shape in voxels (default: 128,128,128; the whole volume if smaller)")

    p = _command(sub, "sweep", cmd_sweep, help="XPRESS scores for every threshold from one agglomeration",
                 description="Agglomerate once, read the fragment ids under the skeleton "
                             "nodes once, and score every threshold through the merge history "
                             "(no volume is relabelled per threshold).")
    _volume(p, "affinities", "affinities container (.h5/.zarr), agglomerated in memory; or use --segmented",
            default_dataset="affinities", positional="AFFS", nargs="?")
    p.add_argument("--segmented", metavar="OUT.zarr",
                   help="sweep the agglomeration of a finished 'segment' run instead (reads only the "
                        "fragment ids under the skeleton nodes)")
    _watershed(p)
    p.add_argument("--block-shape", type=_int_triple, metavar="Z,Y,X",
                   help="make the fragments block by block, exactly as 'segment' with this "
                        "--block-shape and --context does (default: one whole-volume watershed)")
    _fragments(p)
    _skeletons(p)
    _thresholds_option(p, None, "0.05,0.10,...,0.95; with --segmented: the run's thresholds")
    p.add_argument("--merge-function", nargs="+", default=[DEFAULT_MERGE_FUNCTION], metavar="NAME",
                   help="one or more of mean, max, min, hist_quant_<Q>, or 'all' (hist_quant_50, 75, 90, "
                        "mean, max); several are scored side by side (default: %(default)s)")
    _graph_options(p)
    p.add_argument("--mutex-biases", type=_thresholds, default=None, metavar="B1,B2,...",
                   help="also score the mutex watershed over every channel at these biases (needs --long-range)")
    p.add_argument("--write-choice", metavar="FILE.json",
                   help="write the best method, merge function and threshold (by XPRESS ERL+Rand) here")
    _roi(p)
    _json(p)
    p.add_argument("--out", metavar="DIR", help="also write scores.json, scores.csv and scores.png here")

    p = _command(sub, "evaluate", cmd_evaluate, help="XPRESS scores of a segmentation against skeletons",
                 description="Score a segmentation (HDF5/zarr dataset) against skeletons "
                             "(the challenge's .npz) with the XPRESS metrics.")
    p.add_argument("segmentation", metavar="SEG", nargs="+",
                   help="segmentation container(s) (.h5/.zarr); several are scored against skeletons "
                        "prepared once")
    _dataset(p, "--dataset", "submission", "segmentation dataset inside SEG")
    _skeletons(p)
    _geometry(p)
    _roi(p)
    p.add_argument("--outside", choices=OUTSIDE_POLICIES, default="warn",
                   help="skeleton nodes outside a segmentation smaller than the skeletons (no ROI): drop them "
                        "with a warning (default), silently, refuse, or score them as split errors")
    _json(p, note=" (a list of objects with a 'segmentation' key for several SEG)")

    p = _command(sub, "submit", cmd_submit, help="write the challenge's submission.h5 from a segmentation",
                 description="Crop the test ROI from a segmentation, downsample it by striding "
                             "to 99 nm (3x from 33 nm), write dataset 'submission' (uint64) "
                             "atomically, then check the format.")
    p.add_argument("segmentation", metavar="SEG", help="segmentation container (.h5/.zarr)")
    _dataset(p, "--dataset", "segmentation", "segmentation dataset inside SEG")
    _geometry(p)
    p.add_argument("--out", default="submission.h5", metavar="PATH", help="the submission file to write (default: %(default)s)")

    p = _command(sub, "check-submission", cmd_check_submission, help="check a submission.h5's format",
                 description="Check dataset 'submission': uint64, 334^3, resolution 99 nm, "
                             "offset at the test ROI's begin, not all background. "
                             f"Exit code {EXIT_CHECK_FAILED} when it fails.")
    p.add_argument("submission", metavar="FILE", help="the submission.h5 to check")
    _json(p, "the findings")

    p = _command(sub, "view", cmd_view,
                 help="open the outputs in neuroglancer (prints the URL, serves until Ctrl-C)",
                 description="Serve raw, affinities, fragments, segmentations and skeletons, with the "
                             "split and merge sites of each segmentation as annotations, in "
                             "neuroglancer (needs the [view] extra). OUTPUT is a demo directory or a "
                             "'segment' output .zarr. Prints the viewer's URL and serves until Ctrl-C.")
    p.add_argument("output", metavar="OUTPUT", help="a demo directory or a 'segment' output .zarr")
    # --thresholds, --skeletons and --raw mean 'which to show' here (their defaults come from the
    # outputs), not the inputs of a computation: options of their own
    p.add_argument("--thresholds", "--threshold", type=_thresholds, default=None, metavar="T1,T2,...",
                   help="the segmentations to show (default: the demo's best threshold, else every one written)")
    p.add_argument("--skeletons", metavar="PATH",
                   help="skeletons (.npz) whose split and merge sites to mark (default: the demo's)")
    p.add_argument("--raw", metavar="PATH", help="the raw volume container (default: the 'raw' beside the affinities)")
    _dataset(p, "--raw-dataset", "raw", "dataset inside the raw container")
    p.add_argument("--bind-address", default="127.0.0.1", metavar="HOST",
                   help="the address the server listens on (default: %(default)s; 0.0.0.0 for other machines)")
    p.add_argument("--port", type=int, default=0, help="the server's port (default: 0, any free port)")
    p.add_argument("--open", action="store_true", help="also open the URL in a web browser")
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str) -> Optional[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def _config_path(argv: Sequence[str]) -> Optional[str]:
    """The value of ``--config`` in ``argv`` (``--config F`` or ``--config=F``), if any."""
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 a check failed, 2 bad usage/input)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    config = _config_path(argv)
    if command is not None and config is not None:
        sp = _subparser(parser, command)
        if sp is not None:
            try:
                defaults = _load_config(config, command, sp)
            except CliError as exc:
                print(f"xpress-fast {command}: error: {exc}", file=sys.stderr)
                return EXIT_USAGE
            sp.set_defaults(**defaults)
            for action in sp._actions:  # options the file gives are no longer required flags
                if action.dest in defaults:
                    action.required = False
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    prog = f"xpress-fast {args.command}"
    from ._validate import XpressWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", XpressWarning)  # the CLI shows each one, as one line
        warnings.showwarning = _one_line_warning(prog)
        return _run(args, prog)


def _one_line_warning(prog: str):
    """Warnings of the package as one line on stderr, like errors (no source line)."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)
    return show


def _run(args, prog: str) -> int:
    from ._extras import MissingExtra

    try:
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MissingExtra as exc:  # an optional dependency: say which extra to install
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RuntimeError as exc:
        from .pipeline.runner import BlockFailure

        if not isinstance(exc, BlockFailure):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_CHECK_FAILED
    except (CliError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        if args.verbose:
            traceback.print_exc()
        msg = str(exc)
        if isinstance(exc, KeyError):
            msg = f"not found: {msg}"
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"{prog}: error: {exc.strerror or exc}"
              f"{f': {exc.filename!r}' if getattr(exc, 'filename', None) else ''}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
