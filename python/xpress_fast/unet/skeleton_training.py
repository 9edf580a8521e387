"""Training from skeletons alone, in rounds: tubes (+ mined background), then self-training.

Round 0 trains on what the skeletons say directly: tubes of radius ``recipe.radius`` nm
around every edge (positives, masked loss, the path- and gap-negative terms of
:func:`~xpress_fast.unet.train`), optionally with background mined at ``margin`` nm from every
skeleton (negatives). Each later round predicts the training volume with the model so far,
agglomerates it (:func:`xpress_fast.merge_history`, threshold chosen by XPRESS ERL+Rand against
the *training* skeletons), keeps the segments that hold nodes of exactly one skeleton
(:func:`~xpress_fast.unet.select_pseudo_labels`) as voxel labels beside the tubes, and fine-tunes
on them for ``round_steps`` steps.

Every round writes ``out/round_<r>/`` (the training checkpoints, the pseudo-labels it trained
on, and ``round.json`` once finished, with its losses and validation scores); a rerun skips the
finished rounds and continues the unfinished one from its last checkpoint. ``history.json``
holds every finished round and :func:`plot_history` draws it.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._validate import float_triple

__all__ = ["SkeletonRecipe", "SkeletonTrainingResult", "train_from_skeletons", "evaluate_affinities",
           "check_skeleton_training_input", "check_skeleton_units", "plot_history", "THRESHOLDS"]

logger = logging.getLogger(__name__)

#: the code of "background" in a saved pseudo-label volume (never a skeleton id)
PSEUDO_BACKGROUND = np.iinfo(np.uint64).max

RESTART_SEED = 777  # restart i of round 0 is initialised with seed config.seed + RESTART_SEED * i
RADIUS_SEARCH = 700.0  # nm: the largest object radius skeleton_radii looks for
#: agglomeration thresholds scored per evaluation (0.05 ... 0.95)
THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))


@dataclass
class SkeletonRecipe:
    """The rounds of :func:`train_from_skeletons` (the network and optimiser: ``TrainConfig``).

    Attributes
    ----------
    rounds : int
        Rounds in all (1: tubes only; each further round is one self-training round). Default 1:
        on the synthetic benchmark (benchmarks/bench_skeleton_training.py) self-training rounds
        lowered the held-out ERL+Rand so far (they add merges), so they are opt-in.
    round_steps : int
        Training steps of every self-training round (round 0 runs ``config.steps``).
    round_lr : float or None
        Learning rate of the self-training rounds (each starts a fresh optimiser on the previous
        round's model); None: ``config.lr``.
    radius : float or None
        Tube radius, nm (None: ``config.skeleton_radius``). Default 133 nm, chosen on the
        development seeds of the synthetic XNH-like benchmark (33 nm voxels, axon radius ~250 nm
        with myelin, ~190 nm without; benchmarks/skeleton_training.md): with background mined
        at 250 nm, tubes of 66, 100 and 133 nm gave a mean held-out ERL+Rand of 0.38, 0.40 and
        0.57; on the reporting seeds 133 nm + 250 nm gave 0.41 against 0.33 for the earlier
        66 nm tubes alone (voxel labels: 0.70). At 133 nm about 94 % of the tube voxels lie in
        their own axon.
    margin : float or None
        Mine background at least this far (nm) from every skeleton; None: no mined negatives.
        Default 250 nm (the expected outer radius of an axon): on the benchmark 35 % of the
        volume is mined there, 92 % of it truly background (myelin or extracellular space).
        Use it only where the skeletons cover (almost) every object, and scale it with the
        objects' size.
    margin_pad : float or None
        Widen the margin skeleton by skeleton where the objects are wider than ``margin``: each
        skeleton's radius is measured from the raw (:func:`~xpress_fast.unet.labels.skeleton_radii`,
        where the mean intensity around it drops half way to its darkest shell) and its margin
        becomes ``max(margin, radius + margin_pad)``. Only ever fewer mined negatives. On the
        benchmark's training volumes a fixed 250 nm put 20,000-42,000 axon voxels into the mined
        background (purity 0.86-0.93), most of them in a few axons wider than 250 nm; with
        ``margin_pad=50`` it was 5,500-16,700 (purity 0.93-0.97), and 18-31 % of the volume
        instead of 30-36 % stays mined. Same assumption as ``dark_quantile``: boundaries darker
        than insides. Default 50 nm: on the ten reporting seeds the held-out ERL+Rand rose from
        0.552 to 0.577 and nERL from 0.440 to 0.481 (7 of 10 seeds better). None: one fixed margin.
    tube_pad : float or None
        Fit the tubes skeleton by skeleton inside the measured radius (as for ``margin_pad``):
        skeleton k's tube radius becomes ``radius_k - tube_pad``, clipped to
        ``[tube_min, radius]`` (a skeleton whose radius could not be measured keeps ``radius``).
        Thin objects then get thin tubes instead of tubes that reach into their boundary. On the
        benchmark ``tube_pad=33`` raised the tube purity from 0.86-0.94 to 0.97-1.00 but not the
        held-out ERL+Rand (0.601 against 0.611 on six development seeds). None (default): one
        radius for all.
    tube_min : float
        The thinnest tube with ``tube_pad`` (nm).
    dark_quantile : float or None
        Also label background the voxels darker than this percentile of the tube voxels
        (:func:`~xpress_fast.unet.labels.dark_background`): the sheaths right next to the axons,
        which no mined background reaches, and membranes where objects touch. Only where the
        boundaries are darker than the objects' insides (XNH myelin, stained EM). Default 5 %:
        on the benchmark's development seeds 0-3, 2 % and 5 % both lifted the mean held-out
        ERL+Rand from 0.628 to 0.64 and its worst seed from 0.48 to 0.55-0.57
        (benchmarks/skeleton_training.md); about 85-94 % of these voxels are truly background,
        the rest axon voxels next to the sheath. None: off.
    restarts : int
        Round 0 is trained this many times from different initialisations (seeds ``config.seed
        + 777 * i``), and the model that scores best on the validation skeletons (held-out ones
        where given, else the training skeletons) is kept. Costs ``restarts`` times the round's
        training. With partial labels no label fixes where the model puts the boundaries between
        the tubes and the mined background: on the benchmark a second initialisation moved one
        volume's held-out ERL+Rand by up to 0.3, and the best of three on the validation volume
        raised the mean of ten fresh seeds from 0.578 to 0.645 (voxel labels with the same
        choice: 0.735 to 0.745; benchmarks/skeleton_training.md). Choosing on the training
        skeletons (no validation skeletons given) was not measured. Default 1.
    ensemble : bool
        With ``restarts`` >= 2: keep every initialisation of round 0 and return their
        :class:`~xpress_fast.unet.UNetEnsemble` (the mean of their affinities) instead of the best
        one; it costs ``restarts`` times the prediction too. Only with ``rounds=1`` (an ensemble
        is not fine-tuned). Default False.
    min_nodes : int
        A segment becomes a pseudo-label only with at least this many nodes of its one skeleton.
    pseudo_inside : bool
        Keep a pseudo-label only where the model sees inside (mean nearest-neighbour affinity
        > 0.5): the watershed gives boundary voxels (myelin) to a segment too, and those would
        teach the model to join an axon to its sheath. They stay unlabelled.
    pseudo_boundary : bool
        Where the model sees boundary inside a kept segment, label background (0) instead of
        leaving it unknown: the model's own boundaries, within segments the skeletons vouch for.
    merge_function : str
        Agglomeration for the pseudo-labels and the validation scores.
    min_seed_distance : int
        The watershed's seed spacing (voxels).
    """

    rounds: int = 1
    round_steps: int = 300
    round_lr: float | None = None
    radius: float | None = 133.0
    margin: float | None = 250.0
    margin_pad: float | None = 50.0
    tube_pad: float | None = None
    tube_min: float = 66.0
    restarts: int = 1
    ensemble: bool = False
    dark_quantile: float | None = 5.0
    min_nodes: int = 2
    pseudo_inside: bool = True
    pseudo_boundary: bool = False
    merge_function: str = "mean"
    min_seed_distance: int = 5

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SkeletonTrainingResult:
    """``model`` (eval mode), ``history`` (one dict per finished round: ``round``, ``steps``,
    ``loss`` (mean of the round's last 50 losses), ``losses``, ``validation`` (best row of the
    validation sweep or None), ``pseudo`` (selection statistics or None)) and ``checkpoint``."""

    model: Any
    history: list
    checkpoint: str | None


# ----------------------------------------------------------------------------------- validation
def check_skeleton_training_input(raw, skeletons, *, voxel_size, offset=(0.0, 0.0, 0.0),
                                  name: str = "skeletons", min_inside: float = 0.5) -> None:
    """Refuse inputs that would train a model on nothing, before any training starts.

    Raises ``TypeError``/``ValueError`` naming the problem when ``raw`` is not a 3-d array of
    uint8, uint16, float32 or float64 (float raw must be finite: NaN and infinities are refused),
    when the skeleton set is empty, when fewer than ``min_inside`` of the nodes lie inside the
    volume, and when the nodes look like voxel coordinates although nm were declared (their
    extent fits the volume's shape in voxels while ``voxel_size`` is not 1).
    """
    from ..skeletons import as_skeletons
    from .data import check_raw

    check_raw("raw", raw)
    if np.dtype(raw.dtype).kind == "f":
        arr = np.asarray(raw[...]) if not isinstance(raw, np.ndarray) else raw
        if not np.all(np.isfinite(arr)):
            raise ValueError("raw contains NaN or infinite values; clean or mask them before training")
    sk = as_skeletons(skeletons, name)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if sk.n_nodes == 0:
        raise ValueError(f"{name} is an empty skeleton set (no nodes): there is nothing to train on")
    shape = np.asarray(raw.shape, dtype=np.float64)
    extent_nm = shape * vs
    v = (sk.positions - off) / vs
    inside = np.all((v >= 0) & (v < shape), axis=1)
    frac = float(inside.mean())
    lo, hi = sk.positions.min(0), sk.positions.max(0)
    check_skeleton_units(sk, raw.shape, voxel_size=vs, offset=off, name=name)
    if frac < min_inside:
        end = off + extent_nm
        raise ValueError(
            f"{name} lie outside the raw volume: only {inside.sum()} of {sk.n_nodes} nodes "
            f"({100 * frac:.0f}%) are inside; nodes span {lo.tolist()}..{hi.tolist()} nm, the volume "
            f"{off.tolist()}..{end.tolist()} nm (z, y, x); check voxel_size, offset and the axis order"
        )


def check_skeleton_units(skeletons, shape, *, voxel_size, offset=(0.0, 0.0, 0.0), name: str = "skeletons") -> None:
    """Raise ``ValueError`` when skeleton positions look like voxel coordinates although nm are
    declared: with a voxel size of 2 nm or more, at least 90 % of the nodes fit the volume's
    shape read as voxel indices (relative to the array, or to the world origin), and the nodes
    span no more than the shape (in "nm") while spanning at least a quarter of it."""
    from ..skeletons import as_skeletons

    sk = as_skeletons(skeletons, name)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if sk.n_nodes == 0:
        return
    shape = np.asarray(shape, dtype=np.float64)
    lo, hi = sk.positions.min(0), sk.positions.max(0)
    if np.max(vs) >= 2.0 and sk.n_nodes > 1:
        # nodes given in voxels: they fit [0, shape) as voxel indices (relative to the array or
        # to the world origin) and occupy only about 1 / voxel_size of every axis in nm
        span = hi - lo
        small = bool(np.all(span <= shape + 1) and np.max(span) >= 0.25 * np.min(shape))
        for p in (sk.positions, sk.positions - off / vs):
            fits = float(np.all((p >= -1) & (p <= shape + 1), axis=1).mean()) >= 0.9
            if fits and small:
                raise ValueError(
                    f"{name} looks like voxel coordinates: the nodes span {lo.tolist()}..{hi.tolist()}, "
                    f"which fits the volume's shape {shape.astype(int).tolist()} in voxels, but positions "
                    f"must be nm (z, y, x) (voxel_size {vs.tolist()}); multiply them by the voxel size"
                )


# ----------------------------------------------------------------------------------- evaluation
def evaluate_affinities(affs, skeletons, *, voxel_size, offset=(0.0, 0.0, 0.0), thresholds=THRESHOLDS,
                        merge_function: str = "mean", min_seed_distance: int = 5):
    """Watershed + one merge history of ``affs`` (first three channels), every threshold scored
    against ``skeletons``: ``(SweepResult, Agglomeration)``."""
    from ..agglomeration import merge_history
    from ..sweeps import sweep

    agg = merge_history(np.ascontiguousarray(affs[:3]), list(thresholds), merge_function=merge_function,
                        watershed_options={"min_seed_distance": int(min_seed_distance)})
    result = sweep(agg, skeletons, voxel_size=voxel_size, offset=offset)
    return result, agg


def _clean_row(row: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}


# ----------------------------------------------------------------------------------- the rounds
def _round_volume(raw, skeletons, vs, off, cfg, recipe: SkeletonRecipe, pseudo_labels):
    from .data import TrainingVolume
    from .labels import skeleton_label_volume

    if pseudo_labels is None and recipe.margin is None and recipe.dark_quantile is None and recipe.tube_pad is None:
        return TrainingVolume(raw=raw, skeletons=skeletons, voxel_size=vs, offset=off)
    from .labels import dark_background, mine_background, skeleton_radii
    from .targets import rasterize_skeletons

    background = np.zeros(raw.shape, bool)
    if pseudo_labels is not None:
        background = pseudo_labels == PSEUDO_BACKGROUND
        pseudo_labels = np.where(background, 0, pseudo_labels).astype(np.uint64)
    measured: dict[int, float] = {}
    if (recipe.margin is not None and recipe.margin_pad is not None) or recipe.tube_pad is not None:
        measured = skeleton_radii(raw, skeletons, voxel_size=vs, offset=off, max_radius=RADIUS_SEARCH)
    tube_radii = None
    if recipe.tube_pad is not None:
        # thin objects get thin tubes (within the pad of their measured boundary); never wider than
        # the fixed radius: the estimates overshoot on dark objects with faint boundaries, and a
        # tube past the boundary teaches the model to join an object to its sheath. A skeleton
        # whose profile never darkened (RADIUS_SEARCH) keeps the fixed radius.
        hi = float(cfg.skeleton_radius)
        lo = min(float(recipe.tube_min), hi)
        tube_radii = {k: float(np.clip(r - float(recipe.tube_pad), lo, hi))
                      for k, r in measured.items() if r < RADIUS_SEARCH}
    if recipe.margin is not None:
        margins = None
        if recipe.margin_pad is not None:
            # wide objects: each skeleton's margin is at least its measured radius plus the pad
            margins = {k: max(float(recipe.margin), r + float(recipe.margin_pad)) for k, r in measured.items()}
        background |= mine_background(skeletons, raw.shape, voxel_size=vs, offset=off, margin=float(recipe.margin),
                                      margins=margins)
    if recipe.dark_quantile is not None:
        tubes = rasterize_skeletons(skeletons, raw.shape, voxel_size=vs, offset=off, radius=float(cfg.skeleton_radius))
        background |= dark_background(raw, tubes, quantile=float(recipe.dark_quantile))
    labels, labelled = skeleton_label_volume(skeletons, raw.shape, voxel_size=vs, offset=off,
                                             radius=float(cfg.skeleton_radius),
                                             pseudo_labels=pseudo_labels, background=background,
                                             radii=tube_radii)
    return TrainingVolume(raw=raw, labels=labels, labelled=labelled, skeletons=skeletons, voxel_size=vs, offset=off)


def _write_json(path: Path, obj) -> None:
    from ..io import atomic_file

    with atomic_file(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1, default=lambda o: None)


def train_from_skeletons(
    raw,
    skeletons,
    *,
    voxel_size,
    offset=(0.0, 0.0, 0.0),
    config=None,
    recipe: SkeletonRecipe | None = None,
    validation_raw=None,
    validation_skeletons=None,
    validation_offset=None,
    out=None,
    resume: bool = True,
    device=None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    callback: Callable[[int, int, float], Any] | None = None,
) -> SkeletonTrainingResult:
    """Train a U-Net from skeletons alone: tubes, then self-training rounds (see the module doc).

    Parameters
    ----------
    raw : (Z, Y, X) array of uint8, uint16, float32 or float64
    skeletons : xpress_fast.Skeletons or networkx.Graph, nm (z, y, x)
    voxel_size, offset : three floats, nm (z, y, x)
    config : TrainConfig, optional (default ``TrainConfig.tiny()``); round 0 runs ``config.steps``.
    recipe : SkeletonRecipe, optional
    validation_raw, validation_skeletons : optional
        Held-out skeletons (and the raw they lie in; default ``raw``) scored after every round;
        without them the training skeletons are scored (the ``validation`` of a round then says
        ``"on": "training skeletons"``).
    validation_offset : three floats, nm, optional (default ``offset``)
    out : path, optional
        Round directories, ``history.json``; needed to resume.
    resume : bool
        Skip finished rounds and continue an unfinished one from its last checkpoint.
    device, progress : as for :func:`~xpress_fast.unet.train`
    log : callable(str), optional — one line per stage (the CLI prints them).
    callback : callable(round, step, loss), optional — after every training step.

    Returns
    -------
    SkeletonTrainingResult
    """
    from .labels import select_pseudo_labels
    from .predict import predict
    from .ensemble import UNetEnsemble
    from .train import TrainConfig, load_model, save_checkpoint, train

    say = log or (lambda msg: None)
    cfg = config if config is not None else TrainConfig.tiny()
    rec = recipe if recipe is not None else SkeletonRecipe()
    if not isinstance(rec, SkeletonRecipe):
        raise TypeError(f"recipe must be a SkeletonRecipe; got {type(rec).__name__}")
    if int(rec.rounds) < 1 or int(rec.round_steps) < 0:
        raise ValueError(f"recipe.rounds must be >= 1 and recipe.round_steps >= 0; got {rec.rounds!r}, {rec.round_steps!r}")
    if int(rec.restarts) < 1:
        raise ValueError(f"recipe.restarts must be >= 1; got {rec.restarts!r}")
    if rec.ensemble and (int(rec.restarts) < 2 or int(rec.rounds) != 1):
        raise ValueError(f"recipe.ensemble needs restarts >= 2 (the members) and rounds = 1 (an ensemble is not "
                         f"fine-tuned by self-training); got restarts={rec.restarts!r}, rounds={rec.rounds!r}")
    if rec.radius is not None:
        if not (np.isfinite(rec.radius) and rec.radius > 0):
            raise ValueError(f"recipe.radius must be a positive number of nm or None; got {rec.radius!r}")
        cfg = TrainConfig.from_dict({**cfg.to_dict(), "skeleton_radius": float(rec.radius)})
    if rec.margin is not None and not (np.isfinite(rec.margin) and rec.margin > cfg.skeleton_radius):
        raise ValueError(f"recipe.margin must be larger than the tube radius ({cfg.skeleton_radius} nm) "
                         f"or None; got {rec.margin!r}")
    if rec.margin_pad is not None and not (np.isfinite(rec.margin_pad) and rec.margin_pad >= 0):
        raise ValueError(f"recipe.margin_pad must be a number of nm >= 0 or None; got {rec.margin_pad!r}")
    if rec.tube_pad is not None and not (np.isfinite(rec.tube_pad) and rec.tube_pad >= 0):
        raise ValueError(f"recipe.tube_pad must be a number of nm >= 0 or None; got {rec.tube_pad!r}")
    if not (np.isfinite(rec.tube_min) and rec.tube_min > 0):
        raise ValueError(f"recipe.tube_min must be a positive number of nm; got {rec.tube_min!r}")
    if rec.dark_quantile is not None and not (np.isfinite(rec.dark_quantile) and 0 < rec.dark_quantile <= 50):
        raise ValueError(f"recipe.dark_quantile must be a percentage in (0, 50] or None; got {rec.dark_quantile!r}")
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    check_skeleton_training_input(raw, skeletons, voxel_size=vs, offset=off)
    from ..skeletons import as_skeletons

    skeletons = as_skeletons(skeletons)
    if validation_skeletons is not None:
        vraw = raw if validation_raw is None else validation_raw
        voff = off if validation_offset is None else float_triple("validation_offset", validation_offset)
        check_skeleton_training_input(vraw, validation_skeletons, voxel_size=vs, offset=voff,
                                      name="validation_skeletons")
        vsk, on = as_skeletons(validation_skeletons), "validation skeletons"
    else:
        vraw, vsk, voff, on = raw, skeletons, off, "training skeletons"
        if int(rec.rounds) > 1:
            logger.warning("self-training without validation_skeletons: the score per round is measured "
                           "on the training skeletons, which self-training rounds fit (on the benchmark they "
                           "rose while held-out scores fell)")

    def _validate(m) -> dict:
        """The best row of the validation sweep of model ``m``."""
        swept, _ = evaluate_affinities(predict(vraw, m, device=device, progress=progress), vsk, voxel_size=vs,
                                       offset=voff, merge_function=rec.merge_function,
                                       min_seed_distance=rec.min_seed_distance)
        return _clean_row(swept.best())

    outp = Path(out) if out is not None else None
    if outp is not None:
        outp.mkdir(parents=True, exist_ok=True)
        _write_json(outp / "recipe.json", {"recipe": rec.to_dict(), "config": cfg.to_dict()})
    history: list = []
    model: Any = None  # a UNet3D; an ensemble only after the last round (recipe.ensemble needs rounds=1)
    checkpoint = None
    for r in range(int(rec.rounds)):
        rdir = outp / f"round_{r}" if outp is not None else None
        done = rdir / "round.json" if rdir is not None else None
        if resume and rdir is not None and done is not None and done.is_file():
            with open(done) as fh:
                entry = json.load(fh)
            history.append(entry)
            checkpoint = str(rdir / Path(entry["checkpoint"]).name)  # the run may have moved
            model = None  # loaded lazily: only the last finished round's model is needed
            say(f"round {r}: finished earlier (loss {entry['loss']:.4f}), skipped")
            continue
        if model is None and checkpoint is not None:
            model = load_model(checkpoint, device=device)
        t0 = time.perf_counter()
        pseudo_info = None
        pseudo = None
        if r > 0:
            pfile = rdir / "pseudo_labels.npz" if rdir is not None else None
            if pfile is not None and resume and pfile.is_file():
                with np.load(pfile) as z:
                    pseudo = z["labels"]
                    pseudo_info = json.loads(str(z["info"]))
                say(f"round {r}: pseudo-labels from {pfile}")
            else:
                say(f"round {r}: predicting the training volume and selecting pseudo-labels")
                affs = predict(raw, model, device=device, progress=progress)
                swept, agg = evaluate_affinities(affs, skeletons, voxel_size=vs, offset=off,
                                                 merge_function=rec.merge_function,
                                                 min_seed_distance=rec.min_seed_distance)
                best = swept.best()
                seg = agg.segmentation(best["threshold"])
                sel = select_pseudo_labels(seg, skeletons, voxel_size=vs, offset=off, min_nodes=rec.min_nodes)
                pseudo = sel.labels
                inside = np.mean(affs[:3], axis=0) > 0.5
                if rec.pseudo_inside or rec.pseudo_boundary:
                    # pseudo_boundary: the kept segments' boundary voxels become background, coded
                    # as PSEUDO_BACKGROUND in the saved volume
                    outside = np.uint64(PSEUDO_BACKGROUND if rec.pseudo_boundary else 0)
                    pseudo = np.where(inside | (pseudo == 0), pseudo, outside).astype(np.uint64)
                pseudo_info = {"threshold": best["threshold"], "train_erl_rand": best["xpress_erl_rand"],
                               "kept_segments": int(sel.kept.size), "rejected_segments": int(sel.rejected.size),
                               "skeletons_covered": sel.n_skeletons, "labelled_fraction": float(np.count_nonzero(pseudo)) / pseudo.size,
                               "boundary_fraction": float(np.count_nonzero(pseudo == PSEUDO_BACKGROUND)) / pseudo.size}
                if rdir is not None and pfile is not None:
                    rdir.mkdir(parents=True, exist_ok=True)
                    tmp = rdir / "pseudo_labels.tmp.npz"
                    np.savez_compressed(tmp, labels=pseudo, info=json.dumps(pseudo_info))
                    os.replace(tmp, pfile)
            say(f"round {r}: {pseudo_info['kept_segments']} segments kept, {pseudo_info['rejected_segments']} "
                f"merged ones left out, {100 * pseudo_info['labelled_fraction']:.0f}% of voxels labelled")
        vol = _round_volume(raw, skeletons, vs, off, cfg, rec, pseudo)
        rcfg = cfg if r == 0 else TrainConfig.from_dict({**cfg.to_dict(), "steps": int(rec.round_steps),
                                                         "seed": int(cfg.seed) + r,
                                                         "lr": float(cfg.lr if rec.round_lr is None else rec.round_lr)})
        sources = ["tubes"] + (["mined background"] if rec.margin else []) + (
            ["dark background"] if rec.dark_quantile else []) + ([] if r == 0 else ["pseudo-labels"])
        say(f"round {r}: training {rcfg.steps} steps ({' + '.join(sources)})")
        step_cb = None if callback is None else (lambda step, loss, _r=r: callback(_r, step, loss))
        n_init = int(rec.restarts) if r == 0 else 1
        tried = []
        for i in range(n_init):
            icfg = rcfg if i == 0 else TrainConfig.from_dict({**rcfg.to_dict(), "seed": int(rcfg.seed) + RESTART_SEED * i})
            idir = rdir if (rdir is None or n_init == 1) else rdir / f"restart_{i}"
            if n_init > 1:
                say(f"round {r}: initialisation {i + 1} of {n_init} (seed {icfg.seed})")
            res = train(vol, config=icfg, model=model, checkpoint_dir=idir, resume=resume, device=device,
                        progress=progress, callback=step_cb)
            tried.append((_validate(res.model), res))
        # max keeps the first of equal scores; an undefined score (None) never wins
        pick = max(range(n_init), key=lambda i: tried[i][0]["xpress_erl_rand"] or -1.0)
        best, res = tried[pick]
        model = res.model
        if rec.ensemble and r == 0:
            model = UNetEnsemble([row_res.model for _, row_res in tried])
            best = _validate(model)
            say(f"round {r}: ensemble of the {n_init} initialisations ({on}: ERL+Rand "
                + ", ".join(f"{row['xpress_erl_rand']:.3f}" for row, _ in tried)
                + f"; their mean {best['xpress_erl_rand']:.3f})")
            if rdir is not None:
                ens = rdir / "checkpoint_ensemble.pt"
                save_checkpoint(ens, model)
                res.checkpoint = str(ens)
        elif n_init > 1:
            say(f"round {r}: kept initialisation {pick + 1} ({on}: ERL+Rand "
                + ", ".join(f"{row['xpress_erl_rand']:.3f}" for row, _ in tried) + ")")
            if rdir is not None and res.checkpoint is not None:
                # the kept model where a resumed run looks for it (rdir / its name)
                chosen = rdir / "checkpoint_chosen.pt"
                shutil.copyfile(res.checkpoint, chosen)
                res.checkpoint = str(chosen)
        best["on"] = on
        entry = {"round": r, "steps": int(rcfg.steps), "loss": float(np.mean(res.losses[-50:])) if res.losses else None,
                 "losses": [float(v) for v in res.losses], "validation": best, "pseudo": pseudo_info,
                 "checkpoint": res.checkpoint, "seconds": time.perf_counter() - t0,
                 "restarts": [row["xpress_erl_rand"] for row, _ in tried] if n_init > 1 else None,
                 "ensemble": bool(rec.ensemble and r == 0)}
        say(f"round {r}: loss {entry['loss']:.4f}; {on}: ERL+Rand {best['xpress_erl_rand']:.3f}, "
            f"nERL {best['nerl']:.3f} at threshold {best['threshold']:.2f}")
        history.append(entry)
        checkpoint = res.checkpoint
        if outp is not None and done is not None:
            _write_json(done, entry)
            _write_json(outp / "history.json", history)
    if model is None:
        model = load_model(checkpoint, device=device)
    if outp is not None:
        _write_json(outp / "history.json", history)
    return SkeletonTrainingResult(model=model, history=history, checkpoint=checkpoint)


def plot_history(history: Sequence[dict], path) -> Path:
    """A PNG of the training loss (per step, all rounds end to end, round boundaries dashed) and
    the validation ERL+Rand and nERL after every round."""
    from ..report import _pyplot, _save_png

    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.6, 3.8), dpi=100)
    start = 0
    for h in history:
        losses = np.asarray(h.get("losses") or [], dtype=np.float64)
        if losses.size:
            k = max(1, min(25, losses.size // 10))
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            a1.plot(np.arange(smooth.size) + start + k - 1, smooth, lw=1.2, label=f"round {h['round']}")
        start += losses.size
        a1.axvline(start, ls="--", lw=0.6, color="grey")
    a1.set_xlabel("step (all rounds)")
    a1.set_ylabel("training loss (running mean)")
    a1.set_title("loss")
    a1.grid(alpha=0.3)
    if history:
        a1.legend(fontsize=7)
    rounds = [h["round"] for h in history]
    for key, label in (("xpress_erl_rand", "ERL+Rand"), ("nerl", "nERL")):
        ys = [np.nan if (h.get("validation") or {}).get(key) is None else h["validation"][key] for h in history]
        a2.plot(rounds, ys, marker="o", label=label)
    on = (history[-1].get("validation") or {}).get("on", "validation") if history else "validation"
    a2.set_xlabel("round")
    a2.set_ylabel("best score over thresholds")
    a2.set_title(f"score on the {on}")
    a2.set_xticks(rounds)
    a2.grid(alpha=0.3)
    a2.legend(fontsize=8)
    return _save_png(fig, plt, Path(path))
