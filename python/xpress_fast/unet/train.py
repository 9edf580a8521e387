"""Training loop: random crops -> augmentations -> affinity targets -> masked balanced loss.

Every crop of step ``s`` is drawn from ``numpy.random.default_rng([seed, s, i])``, so a run that
resumes from a checkpoint sees the same crops as one that was never interrupted. Checkpoints
(``checkpoint_dir/checkpoint_<step>.pt``) hold the model configuration and weights, the optimiser
and AMP scaler states, the step and the loss history; :func:`load_model` rebuilds the model from one.

Recipes (see :class:`TrainConfig`):

* voxel labels: affinities of every offset from the labels (0 = background), optionally with grown
  boundaries; class-balanced BCE;
* skeletons only: each skeleton rasterised as a tube of radius ``skeleton_radius`` nm and its own
  id; only pairs of labelled voxels are supervised (same id 1, different ids 0, the long-range
  offsets supplying negatives between neighbouring axons), plus :func:`path_negative_loss` which
  hands those negatives down to the nearest-neighbour channels, and :func:`gap_negative_loss`:
  between two consecutive skeleton voxels of different ids on any axis-aligned line, the weakest
  nearest-neighbour link is pushed to 0 (a boundary must lie between two different axons);
* mixed: volumes with labels and volumes with skeletons (or both on one volume) in one run; each
  supervision source adds its own weighted loss term.
"""
from __future__ import annotations

import dataclasses
import glob
import logging
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .augment import AugmentConfig, augment
from .data import TrainingVolume, normalize_raw
from .losses import affinity_loss, gap_negative_loss, path_negative_loss
from .ensemble import UNetEnsemble
from .model import DEFAULT_OFFSETS, UNet3D, default_offsets
from .targets import affinities_from_labels, gap_negatives, grow_boundary, rasterize_skeletons

__all__ = ["TrainConfig", "TrainResult", "train", "load_model", "save_checkpoint", "choose_device"]

logger = logging.getLogger(__name__)

_MODEL_KEYS = ("num_fmaps", "fmap_inc_factor", "downsample_factors", "padding", "offsets", "num_convs",
               "kernel_size", "norm")


@dataclass
class TrainConfig:
    """Everything that defines a training run (model, data, loss, optimiser, augmentation).

    The model fields are passed to :class:`UNet3D`. ``crop_shape`` is the shape of the network's
    *output* per sample (the input is grown by the context for valid padding). ``ema_decay`` > 0
    keeps an exponential moving average of the weights (and batch-norm statistics), which
    becomes the trained model; the checkpoints hold both, so that a resumed run continues both.
    """

    # model
    num_fmaps: int = 12
    fmap_inc_factor: int = 3
    downsample_factors: tuple = ((2, 2, 2), (2, 2, 2))
    padding: str = "same"
    offsets: tuple = DEFAULT_OFFSETS
    num_convs: int = 2
    kernel_size: int = 3
    norm: str | None = None
    # data
    crop_shape: tuple = (48, 48, 48)
    batch_size: int = 1
    skeleton_radius: float = 66.0
    grow_boundary: int = 0
    min_labelled_fraction: float = 0.01
    # loss
    loss: str = "bce"
    balance: bool = True
    label_weight: float = 1.0
    skeleton_weight: float = 1.0
    path_weight: float = 1.0
    gap_weight: float = 1.0
    # optimisation
    steps: int = 2000
    lr: float = 5e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.0
    seed: int = 0
    amp: bool = True
    channels_last: bool = True
    num_workers: int = 0
    # checkpoints and logging
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    # augmentation
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def tiny(cls, **overrides) -> "TrainConfig":
        """A small, fast preset for CPUs: 6 feature maps, two 2x2x2 downsamplings, 24^3 crops,
        offsets up to 9 voxels (9 channels), 600 steps.

        Trains in 1-2 minutes on a CPU core (0.1-0.2 s per step with ``torch.set_num_threads(1)``;
        more threads help only on an idle machine) to useful affinities on
        :func:`xpress_fast.synthetic.make_volume` data: nearest-neighbour AUC ~0.95 on a held-out
        volume after 600 steps from voxel labels (about 0.74 from skeleton tubes alone, 0.85 with
        the recipe of :func:`xpress_fast.unet.train_from_skeletons`).
        """
        base: dict[str, Any] = dict(
            num_fmaps=6, fmap_inc_factor=2, downsample_factors=((2, 2, 2), (2, 2, 2)),
            offsets=tuple(default_offsets((3, 9))), crop_shape=(24, 24, 24),
            norm="batch", batch_size=1, steps=600, lr=3e-3, checkpoint_every=200, log_every=50,
        )
        base.update(overrides)
        return cls(**base)

    def model_kwargs(self) -> dict:
        return {k: getattr(self, k) for k in _MODEL_KEYS}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["downsample_factors"] = [list(f) for f in self.downsample_factors]
        d["offsets"] = [list(o) for o in self.offsets]
        d["crop_shape"] = list(self.crop_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        aug = d.pop("augment", None)
        known = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.downsample_factors = tuple(tuple(f) for f in cfg.downsample_factors)
        cfg.offsets = tuple(tuple(o) for o in cfg.offsets)
        cfg.crop_shape = tuple(cfg.crop_shape)
        if isinstance(aug, dict):
            aug = dict(aug)
            aug["transpose_axes"] = tuple(aug.get("transpose_axes", ()))
            cfg.augment = AugmentConfig(**aug)
        return cfg


@dataclass
class TrainResult:
    """``model`` (in eval mode, on the training device), ``losses`` (one per step run in this call
    and before it, when resumed), ``step`` (steps done in total) and ``checkpoint`` (last path or None)."""

    model: UNet3D
    losses: list
    step: int
    checkpoint: str | None


def choose_device(device=None) -> torch.device:
    """``device`` as given, else CUDA when available, else the CPU."""
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0'; got {device!r}") from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, model: UNet3D | UNetEnsemble, *, optimizer=None, scaler=None, step: int = 0, losses=(),
                    config: TrainConfig | None = None, ema_state: dict | None = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename).

    ``ema_state`` (the running average of the weights, ``TrainConfig.ema_decay``) is stored beside
    the training weights; :func:`load_model` then returns the averaged weights, and a resumed run
    continues both. A :class:`~xpress_fast.unet.UNetEnsemble` is stored as its members' weights
    (``load_model`` rebuilds the ensemble).
    """
    members = None
    if isinstance(model, UNetEnsemble):
        if optimizer is not None or ema_state is not None:
            raise ValueError("an ensemble checkpoint holds the members' weights only (no optimizer or ema_state): "
                             "an ensemble is not trained as a whole")
        members = [{"model_config": m.config, "model_state": {k: v.detach().cpu() for k, v in m.state_dict().items()}}
                   for m in model.members]
    state = {
        "format": "xpress_fast.unet/1",
        "model_config": model.config,
        "model_state": None if members is not None else {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "ensemble": members,
        "ema_state": None if ema_state is None else {k: v.detach().cpu() for k, v in ema_state.items()},
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "scaler_state": scaler.state_dict() if scaler is not None else None,
        "step": int(step),
        "losses": [float(v) for v in losses],
        "train_config": config.to_dict() if config is not None else None,
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _read_checkpoint(path) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - re-raised with the path
        raise ValueError(f"{path} is not a readable xpress_fast.unet checkpoint: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != "xpress_fast.unet/1":
        raise ValueError(f"{path} is not an xpress_fast.unet checkpoint (no 'format' marker)")
    return state


def load_model(path, *, device=None) -> UNet3D | UNetEnsemble:
    """Rebuild the :class:`UNet3D` stored in a checkpoint (eval mode, on ``device``, default CPU):
    its averaged weights where it has them (``TrainConfig.ema_decay``), else its weights. An
    ensemble checkpoint (:func:`save_checkpoint` of a :class:`~xpress_fast.unet.UNetEnsemble`)
    gives the ensemble."""
    state = _read_checkpoint(path)
    model: UNet3D | UNetEnsemble
    if state.get("ensemble"):
        members = []
        for m in state["ensemble"]:
            member = UNet3D(**m["model_config"])
            member.load_state_dict(m["model_state"])
            members.append(member)
        model = UNetEnsemble(members)
    else:
        model = UNet3D(**state["model_config"])
        model.load_state_dict(state.get("ema_state") or state["model_state"])
    model.eval()
    return model.to(torch.device(device) if device is not None else torch.device("cpu"))


def _latest_checkpoint(directory) -> str | None:
    paths = glob.glob(os.path.join(str(directory), "checkpoint_*.pt"))
    best, best_step = None, -1
    for p in paths:
        m = re.search(r"checkpoint_(\d+)\.pt$", p)
        if m and int(m.group(1)) > best_step:
            best, best_step = p, int(m.group(1))
    return best


def _prune_checkpoints(directory, keep: int) -> None:
    if keep <= 0:
        return
    # the numbered checkpoints, as _latest_checkpoint reads them; other files matching the glob
    # (checkpoint_best.pt) are left alone
    numbered = []
    for p in glob.glob(os.path.join(str(directory), "checkpoint_*.pt")):
        m = re.search(r"checkpoint_(\d+)\.pt$", p)
        if m:
            numbered.append((int(m.group(1)), p))
    for _, p in sorted(numbered)[:-keep]:
        try:
            os.remove(p)
        except OSError:  # pragma: no cover - a concurrent cleanup
            pass


def _same_model_config(a: dict, b: dict) -> bool:
    """Equal up to tuple/list spelling (checkpoints store lists)."""

    def norm(v):
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v

    return norm(a) == norm(b)


# ----------------------------------------------------------------------------------- sampling
class _Sampler:
    """Draws augmented crops with their targets from a list of training volumes."""

    def __init__(self, volumes: Sequence[TrainingVolume], model: UNet3D, config: TrainConfig):
        self.volumes = list(volumes)
        self.config = config
        self.offsets = [tuple(o) for o in config.offsets]
        out = tuple(int(s) for s in config.crop_shape)
        if model.padding == "valid":
            self.in_shape = model.valid_input_shape(out)
            self.out_shape = model.output_shape(self.in_shape)
        else:
            self.in_shape = model.valid_input_shape(out)
            self.out_shape = self.in_shape
        self.context = tuple((i - o) // 2 for i, o in zip(self.in_shape, self.out_shape))
        for k, v in enumerate(self.volumes):
            if any(s < c for s, c in zip(v.shape, self.in_shape)):
                raise ValueError(
                    f"training volume {k} of shape {v.shape} is smaller than the network input "
                    f"{self.in_shape}; use a smaller crop_shape"
                )
        sizes = np.array([np.prod(v.shape) for v in self.volumes], dtype=np.float64)
        self.p = sizes / sizes.sum()

    def sample(self, rng: np.random.Generator) -> dict:
        cfg = self.config
        for attempt in range(20):
            k = int(rng.choice(len(self.volumes), p=self.p))
            vol = self.volumes[k]
            start = [int(rng.integers(0, s - c + 1)) for s, c in zip(vol.shape, self.in_shape)]
            sl = tuple(slice(b, b + c) for b, c in zip(start, self.in_shape))
            raw = normalize_raw(np.asarray(vol.raw[sl]))
            if not np.all(np.isfinite(raw)):
                raise ValueError(f"raw of training volume {k} contains NaN or infinite values in {sl}")
            lab_list = []
            kinds = []
            if vol.labels is not None:
                lab = np.asarray(vol.labels[sl]).astype(np.uint64)
                if cfg.grow_boundary:
                    lab = grow_boundary(lab, cfg.grow_boundary)
                lab_list.append(lab)
                kinds.append("labels")
                if vol.labelled is not None:
                    lab_list.append(np.asarray(vol.labelled[sl]).astype(np.uint64))
                    kinds.append("labelled")
            if vol.skeletons is not None:
                crop_off = vol.offset + np.asarray(start) * vol.voxel_size
                sk = rasterize_skeletons(vol.skeletons, self.in_shape, voxel_size=vol.voxel_size,
                                         offset=crop_off, radius=cfg.skeleton_radius)
                if vol.labels is None and (sk != 0).mean() < cfg.min_labelled_fraction and attempt < 19:
                    continue
                lab_list.append(sk)
                kinds.append("skeletons")
            break
        raw, lab_list = augment(raw, lab_list, rng, cfg.augment)
        labs = dict(zip(kinds, lab_list))
        c = self.context
        crop = (slice(None),) + tuple(slice(b, b + o) for b, o in zip(c, self.out_shape))
        sample = {"raw": raw[None]}
        if "labels" in labs:
            t = affinities_from_labels(labs["labels"], self.offsets,
                                       labelled=labs["labelled"].astype(bool) if "labelled" in labs else None)
            sample["label_affs"], sample["label_mask"] = t.affinities[crop], t.mask[crop]
        if "skeletons" in labs:
            t = affinities_from_labels(labs["skeletons"], self.offsets, ignore_zero=True)
            sample["skel_affs"], sample["skel_mask"] = t.affinities[crop], t.mask[crop]
            if cfg.gap_weight:
                links, groups = gap_negatives(labs["skeletons"][crop[1:]], self.offsets)
                sample["gap_links"], sample["gap_groups"] = links, groups
        return sample


def _collate(samples: list[dict]) -> dict:
    keys = set.intersection(*[set(s) for s in samples]) - {"gap_links", "gap_groups"}
    out: dict[str, Any] = {}  # tensors, and lists of tensors for the gap links
    if any("gap_links" in s for s in samples):
        empty = np.zeros(0, np.int64)
        out["gap_links"] = [torch.from_numpy(s.get("gap_links", empty)) for s in samples]
        out["gap_groups"] = [torch.from_numpy(s.get("gap_groups", empty)) for s in samples]
    for k in keys:
        out[k] = torch.from_numpy(np.stack([s[k] for s in samples]))
    # a batch mixing sources: fill the missing ones with zero masks
    for k, m in (("label_affs", "label_mask"), ("skel_affs", "skel_mask")):
        if any(k in s for s in samples) and k not in keys:
            shape = next(s[k] for s in samples if k in s).shape
            out[k] = torch.from_numpy(np.stack([s.get(k, np.zeros(shape, np.float32)) for s in samples]))
            out[m] = torch.from_numpy(np.stack([s.get(m, np.zeros(shape, np.float32)) for s in samples]))
    return out


class _StepBatches(torch.utils.data.IterableDataset):
    """Yields the collated batch of every step in ``[start, stop)``; worker w of W takes the steps
    ``start + w, start + w + W, ...`` and the DataLoader interleaves workers round-robin, so the
    batch order (and content: crops are seeded by step) does not depend on ``num_workers``."""

    def __init__(self, sampler: "_Sampler", seed: int, batch_size: int, start: int, stop: int):
        super().__init__()
        self.sampler, self.seed, self.batch_size, self.start, self.stop = sampler, seed, batch_size, start, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, n = (0, 1) if info is None else (info.id, info.num_workers)
        for step in range(self.start + wid, self.stop, n):
            samples = [self.sampler.sample(np.random.default_rng([self.seed, step, i]))
                       for i in range(self.batch_size)]
            yield _collate(samples)


# ----------------------------------------------------------------------------------- training
def _as_volumes(raw, labels, skeletons, voxel_size, offset, labelled) -> list[TrainingVolume]:
    if isinstance(raw, TrainingVolume) or (isinstance(raw, (list, tuple)) and raw and
                                           all(isinstance(v, TrainingVolume) for v in raw)):
        if labels is not None or skeletons is not None or labelled is not None:
            raise ValueError("pass labels/skeletons inside the TrainingVolume(s), not beside them")
        return [raw] if isinstance(raw, TrainingVolume) else list(raw)
    if skeletons is not None and voxel_size is None:
        raise ValueError("voxel_size (nm, z y x) is required to place skeletons in raw; got None")
    return [TrainingVolume(raw=raw, labels=labels, skeletons=skeletons,
                           voxel_size=(1.0, 1.0, 1.0) if voxel_size is None else voxel_size,
                           offset=(0.0, 0.0, 0.0) if offset is None else offset, labelled=labelled)]


def _ema_update(ema: dict, model: UNet3D, decay: float, step: int) -> None:
    """One step of the exponential moving average of the weights (and of the batch-norm
    statistics; integer buffers are copied). The decay ramps up as ``(1 + step) / (10 + step)``
    so that the first steps' random weights fade out quickly."""
    d = min(float(decay), (1.0 + step) / (10.0 + step))
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                ema[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                ema[k].copy_(v)


def train(
    raw,
    *,
    labels=None,
    skeletons=None,
    voxel_size=None,
    offset=None,
    labelled=None,
    config: TrainConfig | None = None,
    model: UNet3D | None = None,
    checkpoint_dir=None,
    resume: bool = True,
    device=None,
    progress: bool = False,
    callback: Callable[[int, float], Any] | None = None,
) -> TrainResult:
    """Train a :class:`UNet3D` to predict affinities.

    Parameters
    ----------
    raw : (Z, Y, X) array-like, a :class:`TrainingVolume`, or a list of them
        Raw (uint8, uint16, float32 or float64; numpy, h5py or zarr — read by crops).
    labels : (Z, Y, X) integer array-like, optional
        Voxel labels, 0 = background.
    skeletons : xpress_fast.Skeletons or networkx.Graph, optional
        Skeletons in nm (z, y, x); needs ``voxel_size``.
    voxel_size, offset : three floats, nm (z, y, x), optional
    labelled : (Z, Y, X) bool array-like, optional
        Voxels whose label is known.
    config : TrainConfig, optional (default ``TrainConfig()``)
    model : UNet3D, optional
        Start from this model (e.g. :func:`load_model` of a checkpoint, to fine-tune); it must match
        ``config``'s model fields, and without ``config`` it defines them. Default a new model.
    checkpoint_dir : path, optional
        Where checkpoints go; with ``resume`` the latest one there is continued from.
    device : torch device or str, optional
        Default CUDA when available, else CPU. On CUDA ``config.amp`` enables autocast + gradient
        scaling and ``config.channels_last`` the ``channels_last_3d`` memory format.
    progress : bool
        Show a tqdm progress bar.
    callback : callable(step, loss), optional
        Called after every step.

    Returns
    -------
    TrainResult
    """
    if config is None and isinstance(model, UNet3D):
        # fine-tuning a given model: its architecture defines the config's model fields
        mc: dict[str, Any] = model.config
        config = TrainConfig(**{k: mc[k] for k in _MODEL_KEYS})
        config.downsample_factors = tuple(tuple(f) for f in mc["downsample_factors"])
        config.offsets = tuple(tuple(o) for o in mc["offsets"])
    cfg = config if config is not None else TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"config must be a TrainConfig; got {type(cfg).__name__}")
    if cfg.loss not in ("bce", "mse"):
        raise ValueError(f"config.loss must be 'bce' or 'mse'; got {cfg.loss!r}")
    if int(cfg.num_workers) < 0:
        raise ValueError(f"config.num_workers must be >= 0; got {cfg.num_workers!r}")
    if int(cfg.steps) < 0 or int(cfg.batch_size) < 1:
        raise ValueError(f"config.steps must be >= 0 and config.batch_size >= 1; got {cfg.steps!r}, {cfg.batch_size!r}")
    volumes = _as_volumes(raw, labels, skeletons, voxel_size, offset, labelled)
    dev = choose_device(device)
    cuda = dev.type == "cuda"

    if model is None:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
            torch.manual_seed(cfg.seed)
            model = UNet3D(**cfg.model_kwargs())
    elif isinstance(model, UNetEnsemble):
        raise TypeError("model is a UNetEnsemble, which is not trained as a whole: train its members "
                        "(model.members[i]) one by one")
    elif not isinstance(model, UNet3D):
        raise TypeError(f"model must be an xpress_fast.unet.UNet3D; got {type(model).__name__}")
    else:
        expect = UNet3D(**cfg.model_kwargs()).config
        if not _same_model_config(model.config, expect):
            raise ValueError(f"model does not match config: model {model.config}, config {expect}")
    model = model.to(dev)
    if cuda and cfg.channels_last:
        # torch's stubs lack Module.to(memory_format=...), which torch accepts
        model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and cfg.amp)

    step = 0
    losses: list[float] = []
    last_ckpt = None
    if not (0.0 <= float(cfg.ema_decay) < 1.0):
        raise ValueError(f"config.ema_decay must be in [0, 1) (0: off); got {cfg.ema_decay!r}")
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()} if cfg.ema_decay > 0 else None
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        latest = _latest_checkpoint(checkpoint_dir) if resume else None
        if latest is not None:
            state = _read_checkpoint(latest)
            if not _same_model_config(state["model_config"], model.config):
                raise ValueError(
                    f"checkpoint {latest} was written for a different model configuration: "
                    f"{state['model_config']} (checkpoint) vs {model.config} (now); use another "
                    f"checkpoint_dir or resume=False"
                )
            model.load_state_dict(state["model_state"])
            if state.get("optimizer_state") is not None:
                opt.load_state_dict(state["optimizer_state"])
            if state.get("scaler_state") is not None and scaler.is_enabled():
                scaler.load_state_dict(state["scaler_state"])
            if ema is not None:
                saved = state.get("ema_state") or state["model_state"]
                ema = {k: v.detach().clone().to(dev) for k, v in saved.items()}
            step = int(state["step"])
            losses = list(state.get("losses", []))
            last_ckpt = latest
            logger.info("resumed from %s at step %d", latest, step)

    sampler = _Sampler(volumes, model, cfg)
    model.train()
    from tqdm.auto import tqdm

    bar = tqdm(total=int(cfg.steps), initial=min(step, int(cfg.steps)), disable=not progress, desc="train")
    t0 = time.perf_counter()
    try:
        batches = iter(torch.utils.data.DataLoader(
            _StepBatches(sampler, cfg.seed, int(cfg.batch_size), step, int(cfg.steps)), batch_size=None,
            num_workers=int(cfg.num_workers), pin_memory=cuda, persistent_workers=False,
        ))
        while step < cfg.steps:
            batch: dict[str, Any] = {  # tensors, and lists of tensors for the gap links
                k: ([t.to(dev) for t in v] if isinstance(v, list) else v.to(dev, non_blocking=True))
                for k, v in next(batches).items()}
            x = batch["raw"]
            if cuda and cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=cuda and cfg.amp):
                logits = model.logits(x)
            loss = logits.new_zeros((), dtype=torch.float32)
            if "label_affs" in batch:
                loss = loss + cfg.label_weight * affinity_loss(
                    logits, batch["label_affs"], batch["label_mask"], kind=cfg.loss, balance=cfg.balance)
            if "skel_affs" in batch:
                loss = loss + cfg.skeleton_weight * affinity_loss(
                    logits, batch["skel_affs"], batch["skel_mask"], kind=cfg.loss, balance=cfg.balance)
                if cfg.path_weight:
                    loss = loss + cfg.path_weight * path_negative_loss(
                        logits, batch["skel_affs"], batch["skel_mask"], cfg.offsets)
            if cfg.gap_weight and "gap_links" in batch:
                loss = loss + cfg.gap_weight * gap_negative_loss(logits, batch["gap_links"], batch["gap_groups"])
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            step += 1
            if ema is not None:
                _ema_update(ema, model, cfg.ema_decay, step)
            value = float(loss.detach())
            losses.append(value)
            bar.update(1)
            if callback is not None:
                callback(step, value)
            if cfg.log_every and step % cfg.log_every == 0:
                recent = np.mean(losses[-cfg.log_every:])
                logger.info("step %d loss %.4f (%.3f s/step)", step, recent,
                            (time.perf_counter() - t0) / max(1, len(losses)))
                bar.set_postfix(loss=f"{recent:.4f}")
            if checkpoint_dir is not None and (
                (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.steps
            ):
                last_ckpt = os.path.join(str(checkpoint_dir), f"checkpoint_{step:08d}.pt")
                save_checkpoint(last_ckpt, model, optimizer=opt, scaler=scaler, step=step, losses=losses, config=cfg,
                                ema_state=ema)
                _prune_checkpoints(checkpoint_dir, cfg.keep_checkpoints)
    finally:
        bar.close()
    if ema is not None:  # the averaged weights are the result (the checkpoints hold both)
        model.load_state_dict(ema)
    model.eval()
    return TrainResult(model=model, losses=losses, step=step, checkpoint=last_ckpt)
