"""train(): learning on synthetic data (labels and skeletons), checkpoints that resume, errors."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast.skeletons import Skeletons  # noqa: E402
from xpress_fast.synthetic import make_volume  # noqa: E402
from xpress_fast.unet import (  # noqa: E402
    AugmentConfig,
    TrainConfig,
    TrainingVolume,
    UNet3D,
    affinities_from_labels,
    augment,
    load_model,
    open_training_volume,
    predict,
    train,
)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def train_vol():
    return make_volume((48, 48, 48), seed=0)


@pytest.fixture(scope="module")
def test_vol():
    return make_volume((40, 40, 40), seed=1)


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    r = rankdata(score)
    n1 = int(positive.sum())
    n0 = positive.size - n1
    return float((r[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _separation(affs, labels, offsets):
    """AUCs: nearest-neighbour affinities (same axon vs. not), and long-range affinities between
    voxels of the *same* axon vs. voxels of two *different* axons (neighbouring tubes)."""
    t = affinities_from_labels(labels, offsets)
    m = t.mask[:3] > 0
    nn = _auc(affs[:3][m], t.affinities[:3][m] > 0.5)
    c = offsets.index((0, -3, 0))
    partner = np.roll(labels, 3, axis=1)
    both = (t.mask[c] > 0) & (labels > 0) & (partner > 0)
    lr = _auc(affs[c][both], (labels == partner)[both])
    return nn, lr


FAST = dict(num_fmaps=4, fmap_inc_factor=2, downsample_factors=((2, 2, 2),), crop_shape=(20, 20, 20),
            norm="batch", lr=1e-2, steps=150, log_every=0, checkpoint_every=0)


def test_training_from_labels_learns(train_vol, test_vol):
    cfg = TrainConfig(offsets=tuple(UNet3D().offsets[:6]), **FAST)
    res = train(train_vol.raw, labels=train_vol.labels, config=cfg)
    assert res.step == 150 and len(res.losses) == 150
    first, last = np.mean(res.losses[:15]), np.mean(res.losses[-15:])
    assert last < 0.8 * first, (first, last)
    affs = predict(test_vol.raw, res.model, block_shape=40)
    nn, lr = _separation(affs, test_vol.labels, [tuple(o) for o in cfg.offsets])
    # over training seeds 0..2 we measured nn 0.81-0.87, lr 0.83-0.88 (chance: 0.5)
    assert nn > 0.7, nn
    assert lr > 0.6, lr


def test_training_from_skeletons_learns(train_vol, test_vol):
    cfg = TrainConfig(offsets=tuple(UNet3D().offsets[:6]), skeleton_radius=100.0, **FAST)
    res = train(train_vol.raw, skeletons=train_vol.skeletons, voxel_size=train_vol.voxel_size, config=cfg)
    first, last = np.mean(res.losses[:15]), np.mean(res.losses[-15:])
    assert last < 0.8 * first, (first, last)
    affs = predict(test_vol.raw, res.model, block_shape=40)
    nn, lr = _separation(affs, test_vol.labels, [tuple(o) for o in cfg.offsets])
    # better than chance (0.5); over training seeds 0..2 we measured nn 0.69-0.77, lr 0.77-0.89
    assert nn > 0.6, nn
    assert lr > 0.5, lr


TINY = dict(num_fmaps=2, fmap_inc_factor=2, downsample_factors=((2, 2, 2),), crop_shape=(12, 12, 12),
            offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, -3, 0)), log_every=0)


def _small():
    return make_volume((16, 16, 16), seed=5)


def test_resume_equals_uninterrupted(tmp_path):
    v = _small()
    full = train(v.raw, labels=v.labels, config=TrainConfig(steps=6, checkpoint_every=0, **TINY))
    ck = tmp_path / "ck"
    part = train(v.raw, labels=v.labels, config=TrainConfig(steps=4, checkpoint_every=2, **TINY), checkpoint_dir=ck)
    assert part.step == 4 and part.checkpoint.endswith("checkpoint_00000004.pt")
    resumed = train(v.raw, labels=v.labels, config=TrainConfig(steps=6, checkpoint_every=2, **TINY), checkpoint_dir=ck)
    assert resumed.step == 6 and len(resumed.losses) == 6
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=1e-5)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    # keep_checkpoints=2 pruned the oldest
    assert sorted(p.name for p in ck.iterdir()) == ["checkpoint_00000004.pt", "checkpoint_00000006.pt"]
    # load_model rebuilds the same network
    m = load_model(resumed.checkpoint)
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), resumed.model(x))
    # a finished run resumes to nothing new
    again = train(v.raw, labels=v.labels, config=TrainConfig(steps=6, **TINY), checkpoint_dir=ck)
    assert again.step == 6


def _ref_ema(states, decay):
    """The weight average by hand: e_0 = w_0; e_t = d_t e_(t-1) + (1 - d_t) w_t with
    d_t = min(decay, (1 + t) / (10 + t)); integer buffers are the last step's."""
    ema = {k: v.clone().double() if v.is_floating_point() else v.clone() for k, v in states[0].items()}
    for t, w in enumerate(states[1:], start=1):
        d = min(decay, (1 + t) / (10 + t))
        for k, v in w.items():
            ema[k] = d * ema[k] + (1 - d) * v.double() if v.is_floating_point() else v.clone()
    return ema


def test_ema_weights_equal_reference_and_resume(tmp_path):
    v = _small()
    BN = dict(TINY, norm="batch")  # batch-norm statistics are averaged too
    states = []

    def grab(step, loss):
        states.append({k: t.detach().clone() for k, t in model_ref[0].state_dict().items()})

    # the raw weights after every step, from a run without averaging (initialised as train() does)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model_ref = [UNet3D(**TrainConfig(**BN).model_kwargs())]
    states.append({k: t.detach().clone() for k, t in model_ref[0].state_dict().items()})
    plain = train(v.raw, labels=v.labels, config=TrainConfig(steps=5, checkpoint_every=0, **BN),
                  model=model_ref[0], callback=grab)
    assert len(states) == 6
    want = _ref_ema(states, 0.9)
    cfg = dict(BN, ema_decay=0.9)
    full = train(v.raw, labels=v.labels, config=TrainConfig(steps=5, checkpoint_every=0, **cfg))
    np.testing.assert_allclose(full.losses, plain.losses, rtol=1e-6)  # averaging does not change training
    for k, a in full.model.state_dict().items():
        torch.testing.assert_close(a.double() if a.is_floating_point() else a, want[k], msg=k)
    # interrupted at step 3 and resumed: the same averaged weights; load_model returns them
    ck = tmp_path / "ck"
    train(v.raw, labels=v.labels, config=TrainConfig(steps=3, checkpoint_every=1, **cfg), checkpoint_dir=ck)
    resumed = train(v.raw, labels=v.labels, config=TrainConfig(steps=5, checkpoint_every=1, **cfg), checkpoint_dir=ck)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)
    loaded = load_model(resumed.checkpoint).state_dict()
    for k, a in full.model.state_dict().items():
        torch.testing.assert_close(a, loaded[k], msg=k)
    # the raw training weights are kept in the checkpoint for resuming
    raw_state = torch.load(resumed.checkpoint, weights_only=True)["model_state"]
    assert any(not torch.equal(raw_state[k], loaded[k]) for k in raw_state if raw_state[k].is_floating_point())


def test_checkpoint_from_other_config_is_refused(tmp_path):
    v = _small()
    train(v.raw, labels=v.labels, config=TrainConfig(steps=1, **TINY), checkpoint_dir=tmp_path)
    other = TrainConfig(steps=2, **{**TINY, "num_fmaps": 3})
    with pytest.raises(ValueError, match="different model configuration"):
        train(v.raw, labels=v.labels, config=other, checkpoint_dir=tmp_path)
    res = train(v.raw, labels=v.labels, config=other, checkpoint_dir=tmp_path, resume=False)
    assert res.step == 2


def test_mixed_volumes_and_files(tmp_path):
    h5py = pytest.importorskip("h5py")
    v = _small()
    path = tmp_path / "train.h5"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = v.raw
        f["volumes/raw"].attrs["resolution"] = [33, 33, 33]
        f["volumes/raw"].attrs["offset"] = [0, 0, 0]
        f["volumes/labels"] = v.labels
    with_labels = open_training_volume(path)
    assert with_labels.shape == (16, 16, 16) and with_labels.skeletons is None
    with_skel = open_training_volume(path, labels_key=None, skeletons=v.skeletons)
    res = train([with_labels, with_skel], config=TrainConfig(steps=4, batch_size=2, **TINY))
    assert res.step == 4 and all(np.isfinite(res.losses))


def test_training_is_deterministic():
    v = _small()
    a = train(v.raw, labels=v.labels, config=TrainConfig(steps=3, **TINY))
    b = train(v.raw, labels=v.labels, config=TrainConfig(steps=3, **TINY))
    assert a.losses == b.losses


def test_augment_deterministic_and_consistent():
    rng = np.random.default_rng
    raw = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    lab = np.arange(512, dtype=np.uint64).reshape(8, 8, 8)
    cfg = AugmentConfig(missing_section_p=0.2, misalign_p=0.2, misalign_max=2, noise=0.0,
                        intensity_scale=0.0, intensity_shift=0.0)
    r1, (l1,) = augment(raw, [lab], rng(3), cfg)
    r2, (l2,) = augment(raw, [lab], rng(3), cfg)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(l1, l2)
    # geometric only: raw follows the labels voxel for voxel (apart from blanked sections)
    geo = AugmentConfig(noise=0.0, intensity_scale=0.0, intensity_shift=0.0)
    for seed in range(6):
        r, (l,) = augment(raw, [lab], rng(seed), geo)
        np.testing.assert_array_equal(r.ravel(), raw.ravel()[l.ravel().astype(np.int64)])
    assert raw.dtype == np.float32 and lab[1, 2, 3] == 83  # inputs untouched


def test_tiny_preset():
    cfg = TrainConfig.tiny()
    assert cfg.steps > 0 and UNet3D(**cfg.model_kwargs()).out_channels == len(cfg.offsets)
    assert list(cfg.offsets[:3]) == [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(raw=np.zeros((16, 16, 16), np.int32)), TypeError, "raw.dtype must be uint8"),
        (dict(raw=np.zeros((16, 16), np.uint8)), ValueError, "raw must be 3-dimensional"),
        (dict(labels=np.zeros((16, 16, 15), np.uint64)), ValueError, "labels and raw must have the same shape"),
        (dict(labels=np.zeros((16, 16, 16), np.float32)), TypeError, "labels must have an integer dtype"),
        (dict(labels=None), ValueError, "needs labels or skeletons"),
        (dict(labels=None, skeletons="sk"), ValueError, "voxel_size .* is required"),
        (dict(labels=None, skeletons=Skeletons(np.full((2, 3), 1e6), np.array([[0, 1]])), voxel_size=(33, 33, 33)),
         ValueError, "lie outside the volume"),
        (dict(config=TrainConfig(**{**TINY, "crop_shape": (32, 32, 32)})), ValueError,
         "smaller than the network input"),
        (dict(config="tiny"), TypeError, "config must be a TrainConfig"),
        (dict(config=TrainConfig(loss="l1", **TINY)), ValueError, "config.loss must be"),
        (dict(config=TrainConfig(ema_decay=1.0, **TINY)), ValueError, "config.ema_decay must be in"),
        (dict(config=TrainConfig(ema_decay=float("nan"), **TINY)), ValueError, "config.ema_decay must be in"),
        (dict(model=UNet3D(num_fmaps=5)), ValueError, "model does not match config"),
        (dict(device="gpu!"), ValueError, "device must be a torch device"),
    ],
)
def test_errors(kwargs, exc, match):
    raw = np.zeros((16, 16, 16), np.uint8)
    args = dict(raw=raw, labels=np.zeros((16, 16, 16), np.uint64), config=TrainConfig(steps=1, **TINY))
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train(args.pop("raw"), **args)


def test_labels_voxel_size_mismatch_in_file(tmp_path):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["volumes/raw"] = np.zeros((8, 8, 8), np.uint8)
        f["volumes/raw"].attrs["resolution"] = [33, 33, 33]
        f["volumes/labels"] = np.zeros((8, 8, 8), np.uint64)
        f["volumes/labels"].attrs["resolution"] = [66, 66, 66]
    with pytest.raises(ValueError, match="same voxel size"):
        open_training_volume(tmp_path / "t.h5")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_amp_training_runs(tmp_path):
    v = _small()
    res = train(v.raw, labels=v.labels, config=TrainConfig(steps=3, **TINY), device="cuda", checkpoint_dir=tmp_path)
    assert next(res.model.parameters()).is_cuda and all(np.isfinite(res.losses))
    m = load_model(res.checkpoint)
    assert not next(m.parameters()).is_cuda


def test_training_volume_validates():
    with pytest.raises(ValueError, match="labelled and raw must have the same shape"):
        TrainingVolume(np.zeros((4, 4, 4), np.uint8), labels=np.zeros((4, 4, 4), np.uint8),
                       labelled=np.zeros((4, 4, 3), bool))


def test_fine_tune_given_model_without_config(tmp_path):
    v = _small()
    first = train(v.raw, labels=v.labels, config=TrainConfig(steps=2, **TINY), checkpoint_dir=tmp_path)
    model = load_model(first.checkpoint)
    before = [p.detach().clone() for p in model.parameters()]
    # without a config the model's architecture is kept (crop and steps from the defaults are too
    # big here, so pass a config built from the model's fields instead and check both paths agree)
    cfg = TrainConfig(steps=2, **TINY)
    res = train(v.raw, labels=v.labels, model=model, config=cfg)
    assert res.model.config == model.config
    assert any(not torch.equal(a, b) for a, b in zip(before, res.model.parameters()))
    with pytest.raises(ValueError, match="smaller than the network input"):
        train(v.raw, labels=v.labels, model=load_model(first.checkpoint))  # default 48^3 crops


def test_zarr_volume_with_skeleton_file(tmp_path):
    zarr = pytest.importorskip("zarr")
    from xpress_fast.skeletons import save_skeletons

    v = _small()
    root = zarr.open_group(str(tmp_path / "t.zarr"), mode="w")
    raw = root.create_array("volumes/raw", shape=v.raw.shape, dtype="uint8", chunks=(8, 8, 8))
    raw[:] = v.raw
    raw.attrs["resolution"] = [33, 33, 33]
    raw.attrs["offset"] = [0, 0, 0]
    save_skeletons(v.skeletons, tmp_path / "sk.npz")
    tv = open_training_volume(tmp_path / "t.zarr", labels_key=None, skeletons=tmp_path / "sk.npz")
    assert tv.labels is None and tv.skeletons.n_nodes == v.skeletons.n_nodes
    np.testing.assert_array_equal(tv.voxel_size, [33, 33, 33])
    res = train(tv, config=TrainConfig(steps=2, **TINY))
    assert res.step == 2 and all(np.isfinite(res.losses))


def test_worker_processes_give_the_same_batches():
    v = _small()
    a = train(v.raw, labels=v.labels, config=TrainConfig(steps=3, **TINY))
    b = train(v.raw, labels=v.labels, config=TrainConfig(steps=3, num_workers=2, **TINY))
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-6)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        train(v.raw, labels=v.labels, config=TrainConfig(steps=1, num_workers=-1, **TINY))
