"""train_from_skeletons: bad input refused before training, rounds, resume after an interruption,
history and plot; and the ``train --skeletons`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast import io  # noqa: E402
from xpress_fast.cli import main  # noqa: E402
from xpress_fast.skeletons import Skeletons, save_skeletons  # noqa: E402
from xpress_fast.synthetic import make_volume  # noqa: E402
from xpress_fast.unet import (  # noqa: E402
    SkeletonRecipe,
    TrainConfig,
    check_skeleton_training_input,
    train_from_skeletons,
)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def vol():
    return make_volume((32, 32, 32), seed=3)


def _cfg(steps=3):
    return TrainConfig.tiny(num_fmaps=4, downsample_factors=((2, 2, 2),), crop_shape=(16, 16, 16), steps=steps,
                            checkpoint_every=1, keep_checkpoints=1, log_every=0)


# ------------------------------------------------------------------------------ bad input
def test_bad_input_is_refused_before_training(vol, tmp_path):
    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    check_skeleton_training_input(vol.raw, vol.skeletons, **geo)  # the good case passes
    empty = Skeletons(np.zeros((0, 3)), np.zeros((0, 2), np.int64))
    with pytest.raises(ValueError, match="empty skeleton set"):
        train_from_skeletons(vol.raw, empty, out=tmp_path / "a", **geo)
    far = Skeletons(vol.skeletons.positions + 1e5, vol.skeletons.edges)
    with pytest.raises(ValueError, match="lie outside the raw volume: only 0 of"):
        train_from_skeletons(vol.raw, far, out=tmp_path / "b", **geo)
    # most nodes outside (the skeletons were shifted by 2/3 of the volume) is refused too
    shifted = Skeletons(vol.skeletons.positions + [0, 0, 22 * 33.0], vol.skeletons.edges)
    with pytest.raises(ValueError, match="lie outside the raw volume"):
        check_skeleton_training_input(vol.raw, shifted, **geo)
    # the same skeletons in voxel coordinates while nm are declared
    in_voxels = Skeletons(vol.skeletons.positions / vol.voxel_size, vol.skeletons.edges)
    with pytest.raises(ValueError, match="looks like voxel coordinates"):
        train_from_skeletons(vol.raw, in_voxels, out=tmp_path / "c", **geo)
    for raw, err, match in ((vol.raw > 100, TypeError, "raw.dtype must be"),
                            (vol.raw.astype(np.complex64), TypeError, "raw.dtype must be"),
                            (np.where(vol.raw > 250, np.nan, vol.raw.astype(np.float32)), ValueError, "NaN"),
                            (vol.raw[0], ValueError, "3-dimensional")):
        with pytest.raises(err, match=match):
            train_from_skeletons(raw, vol.skeletons, out=tmp_path / "d", **geo)
    with pytest.raises(ValueError, match="validation_skeletons is an empty skeleton set"):
        train_from_skeletons(vol.raw, vol.skeletons, validation_skeletons=empty, out=tmp_path / "e", **geo)
    with pytest.raises(ValueError, match="recipe.rounds must be >= 1"):
        train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(rounds=0), **geo)
    for q in (0.0, 60.0, float("nan")):
        with pytest.raises(ValueError, match="recipe.dark_quantile must be a percentage"):
            train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(dark_quantile=q), **geo)
    for pad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="recipe.margin_pad must be"):
            train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(margin_pad=pad), **geo)
        with pytest.raises(ValueError, match="recipe.tube_pad must be"):
            train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(tube_pad=pad), **geo)
    for low in (0.0, float("nan")):
        with pytest.raises(ValueError, match="recipe.tube_min must be a positive"):
            train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(tube_min=low), **geo)
    # nothing was trained or written
    assert not any((tmp_path / d).exists() for d in "abcde")


def test_voxel_coordinates_refused_by_plain_train_too(vol):
    from xpress_fast.unet import TrainingVolume, train

    in_voxels = Skeletons(vol.skeletons.positions / vol.voxel_size, vol.skeletons.edges)
    with pytest.raises(ValueError, match="looks like voxel coordinates"):
        train(vol.raw, skeletons=in_voxels, voxel_size=vol.voxel_size, config=_cfg(1))
    # with a world offset, voxel indices relative to the world origin are recognised as well
    off = np.array([1000.0, 2000.0, 3000.0]) * vol.voxel_size
    world = Skeletons((vol.skeletons.positions + off) / vol.voxel_size, vol.skeletons.edges)
    with pytest.raises(ValueError, match="looks like voxel coordinates"):
        TrainingVolume(raw=vol.raw, skeletons=world, voxel_size=vol.voxel_size, offset=off)
    TrainingVolume(raw=vol.raw, skeletons=vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset)


def test_voxel_size_one_is_not_mistaken_for_voxels():
    raw = np.zeros((20, 20, 20), np.uint8)
    sk = Skeletons(np.array([[1.0, 1, 1], [15, 15, 15]]), np.array([[0, 1]]))
    check_skeleton_training_input(raw, sk, voxel_size=(1, 1, 1))  # nm == voxels: nothing to detect


# ------------------------------------------------------------------------------ rounds and resume
def test_rounds_resume_after_interruption(vol, tmp_path):
    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    recipe = SkeletonRecipe(rounds=2, round_steps=3, margin=400.0, min_nodes=1)
    full = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(), recipe=recipe, out=tmp_path / "full", **geo)
    assert [h["round"] for h in full.history] == [0, 1]
    assert [h["steps"] for h in full.history] == [3, 3]
    assert full.history[1]["pseudo"]["kept_segments"] >= 0
    assert set(full.history[0]["validation"]) >= {"xpress_erl_rand", "nerl", "threshold", "on"}
    assert full.history[0]["validation"]["on"] == "training skeletons"
    saved = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [h["round"] for h in saved] == [0, 1]
    assert (tmp_path / "full" / "round_1" / "pseudo_labels.npz").is_file()

    class Stop(Exception):
        pass

    def interrupt(r, step, loss):
        if r == 1 and step == 2:
            raise Stop

    with pytest.raises(Stop):
        train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(), recipe=recipe, out=tmp_path / "cut",
                             callback=interrupt, **geo)
    assert (tmp_path / "cut" / "round_0" / "round.json").is_file()
    assert not (tmp_path / "cut" / "round_1" / "round.json").exists()
    seen = []
    again = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(), recipe=recipe, out=tmp_path / "cut",
                                 callback=lambda r, s, l: seen.append((r, s)), log=seen.append, **geo)
    # round 0 was skipped; round 1 continued from its step-1 checkpoint (the interruption came
    # during step 2, before that step's checkpoint was written)
    assert [x for x in seen if isinstance(x, tuple)] == [(1, 2), (1, 3)]
    assert any("round 0: finished earlier" in x for x in seen if isinstance(x, str))
    a, b = full.model.state_dict(), again.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert again.history[1]["validation"] == full.history[1]["validation"]


def test_restarts_keep_the_best_initialisation(vol, tmp_path):
    """restarts=2: round 0 trained from seeds s and s + 777, the one with the higher validation
    ERL+Rand kept (its weights, its checkpoint); initialisation 2 equals a plain run with seed
    s + 777; a rerun finds the round finished."""
    from xpress_fast.unet import load_model
    from xpress_fast.unet.skeleton_training import RESTART_SEED

    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    recipe = SkeletonRecipe(restarts=2)
    lines: list = []
    res = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(2), recipe=recipe, out=tmp_path / "r",
                               log=lines.append, **geo)
    scores = res.history[0]["restarts"]
    assert len(scores) == 2 and res.history[0]["validation"]["xpress_erl_rand"] == max(scores)
    pick = int(np.argmax(scores))
    assert any(f"kept initialisation {pick + 1}" in x for x in lines)
    assert res.checkpoint == str(tmp_path / "r" / "round_0" / "checkpoint_chosen.pt")
    kept = load_model(res.checkpoint).state_dict()
    for k, v in res.model.state_dict().items():
        torch.testing.assert_close(v, kept[k], rtol=0, atol=0)
    # initialisation 2 is a plain run with the seed shifted by RESTART_SEED
    second = load_model(tmp_path / "r" / "round_0" / "restart_1" / "checkpoint_00000002.pt").state_dict()
    plain = train_from_skeletons(vol.raw, vol.skeletons, config=TrainConfig.from_dict(
        {**_cfg(2).to_dict(), "seed": _cfg(2).seed + RESTART_SEED}), recipe=SkeletonRecipe(), **geo)
    for k, v in plain.model.state_dict().items():
        torch.testing.assert_close(v, second[k], rtol=0, atol=0)
    again = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(2), recipe=recipe, out=tmp_path / "r",
                                 log=lines.append, **geo)
    assert any("round 0: finished earlier" in x for x in lines)
    for k, v in again.model.state_dict().items():
        torch.testing.assert_close(v, kept[k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="recipe.restarts must be >= 1"):
        train_from_skeletons(vol.raw, vol.skeletons, recipe=SkeletonRecipe(restarts=0), **geo)


def test_ensemble_keeps_every_initialisation(vol, tmp_path):
    """restarts=2, ensemble=True: the result is the UNetEnsemble of both initialisations (their
    own weights), scored as one model, saved as one checkpoint that a rerun finds."""
    from xpress_fast.unet import UNetEnsemble, evaluate_affinities, load_model, predict

    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    recipe = SkeletonRecipe(restarts=2, ensemble=True)
    lines: list = []
    res = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(2), recipe=recipe, out=tmp_path / "e",
                               log=lines.append, **geo)
    assert isinstance(res.model, UNetEnsemble) and len(res.model) == 2
    for i, member in enumerate(res.model.members):
        own = load_model(tmp_path / "e" / "round_0" / f"restart_{i}" / "checkpoint_00000002.pt").state_dict()
        for k, v in member.state_dict().items():
            torch.testing.assert_close(v, own[k], rtol=0, atol=0)
    swept, _ = evaluate_affinities(predict(vol.raw, res.model), vol.skeletons, **geo)
    entry = res.history[0]
    assert entry["ensemble"] is True and len(entry["restarts"]) == 2
    assert entry["validation"]["xpress_erl_rand"] == pytest.approx(swept.best()["xpress_erl_rand"])
    assert any("ensemble of the 2 initialisations" in x for x in lines)
    assert res.checkpoint == str(tmp_path / "e" / "round_0" / "checkpoint_ensemble.pt")
    again = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(2), recipe=recipe, out=tmp_path / "e",
                                 log=lines.append, **geo)
    assert any("round 0: finished earlier" in x for x in lines)
    assert isinstance(again.model, UNetEnsemble)
    np.testing.assert_array_equal(predict(vol.raw, again.model), predict(vol.raw, res.model))
    for bad in (SkeletonRecipe(restarts=1, ensemble=True), SkeletonRecipe(restarts=2, ensemble=True, rounds=2)):
        with pytest.raises(ValueError, match="recipe.ensemble needs restarts >= 2"):
            train_from_skeletons(vol.raw, vol.skeletons, recipe=bad, **geo)


# ------------------------------------------------------------------------------ the command
def test_cli_train_from_skeletons(vol, tmp_path, capsys):
    data = tmp_path / "data.h5"
    io.write_volume(data, "raw", vol.raw, voxel_size=vol.voxel_size, offset=vol.offset)
    skel = tmp_path / "skeletons.npz"
    save_skeletons(vol.skeletons, skel, fmt="arrays")
    out = tmp_path / "model"
    args = ["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(out), "--preset", "tiny",
            "--iterations", "2", "--rounds", "2", "--round-steps", "2", "--min-nodes", "1", "--device", "cpu",
            "--validation-skeletons", str(skel), "--margin-pad", "70", "--tube-pad", "40", "--restarts", "1"]
    assert main(args + ["-q"]) == 0
    saved = json.loads((out / "recipe.json").read_text())["recipe"]
    assert (saved["margin_pad"], saved["tube_pad"], saved["rounds"], saved["restarts"]) == (70.0, 40.0, 2, 1)
    text = capsys.readouterr().out
    assert "trained 2 rounds; validation skeletons: ERL+Rand" in text
    assert (out / "training.png").is_file() and (out / "round_1" / "round.json").is_file()
    # a rerun finds both rounds finished
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "round 0: finished earlier" in text and "round 1: finished earlier" in text
    # bad input: exit 2 with one line, before training
    bad = tmp_path / "bad.npz"
    save_skeletons(Skeletons(vol.skeletons.positions / vol.voxel_size, vol.skeletons.edges), bad, fmt="arrays")
    assert main(["train", "--raw", str(data), "--skeletons", str(bad), "--out", str(tmp_path / "m2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "looks like voxel coordinates" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m2").exists()
    io.write_volume(data, "labels", vol.labels, voxel_size=vol.voxel_size, offset=vol.offset)
    assert main(["train", "--raw", str(data), "--labels", str(data), "--out", str(tmp_path / "m3"),
                 "--rounds", "2", "-q"]) == 2
    assert "--rounds: the skeleton-only recipe's options" in capsys.readouterr().err
    assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(tmp_path / "m4"),
                 "--dark-quantile", "70", "-q"]) == 2
    assert "--dark-quantile must be a percentage" in capsys.readouterr().err
    assert not (tmp_path / "m4").exists()
    for pad in ("-5", "wide"):
        assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(tmp_path / "m5"),
                     "--margin-pad", pad, "-q"]) == 2
        assert "--margin-pad must be a number of nm >= 0" in capsys.readouterr().err
        assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(tmp_path / "m5"),
                     "--tube-pad", pad, "-q"]) == 2
        assert "--tube-pad must be a number of nm >= 0, or 'none' for one tube radius" in capsys.readouterr().err
    assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(tmp_path / "m5"),
                 "--restarts", "0", "-q"]) == 2
    assert "--restarts must be >= 1" in capsys.readouterr().err
    assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(tmp_path / "m5"),
                 "--ensemble", "-q"]) == 2
    assert "--ensemble needs --restarts 2 or more and --rounds 1" in capsys.readouterr().err
    # --ensemble writes one checkpoint that 'predict' reads like one model
    ens = tmp_path / "ens"
    assert main(["train", "--raw", str(data), "--skeletons", str(skel), "--out", str(ens), "--preset", "tiny",
                 "--iterations", "1", "--restarts", "2", "--ensemble", "--device", "cpu", "-q"]) == 0
    assert f"checkpoint {ens / 'round_0' / 'checkpoint_ensemble.pt'}" in capsys.readouterr().out
    assert main(["predict", "--raw", str(data), "--model", str(ens / "round_0" / "checkpoint_ensemble.pt"),
                 "--out", str(tmp_path / "affs.h5"), "--device", "cpu", "-q"]) == 0
    assert io.read_volume(tmp_path / "affs.h5", "affinities").data.shape[1:] == vol.raw.shape
    assert not (tmp_path / "m5").exists()


@pytest.mark.parametrize("margin", [250.0, None])
def test_round_volume_labels_dark_voxels_background(vol, margin):
    """Round 0's labels: tubes, mined background (with a margin) and the dark voxels as background."""
    from xpress_fast.unet import rasterize_skeletons
    from xpress_fast.unet.labels import dark_background, mine_background
    from xpress_fast.unet.skeleton_training import _round_volume

    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    cfg = TrainConfig.tiny(skeleton_radius=133.0)
    tubes = rasterize_skeletons(vol.skeletons, vol.raw.shape, radius=133.0, **geo)
    dark = dark_background(vol.raw, tubes, quantile=5.0)
    assert 0.005 < dark.mean() < 0.2
    tv = _round_volume(vol.raw, vol.skeletons, vol.voxel_size, vol.offset, cfg,
                       SkeletonRecipe(margin=margin, margin_pad=None, dark_quantile=5.0), None)
    labels, labelled = np.asarray(tv.labels), np.asarray(tv.labelled)
    np.testing.assert_array_equal(labels[tubes != 0], tubes[tubes != 0])
    assert labelled[dark].all() and not labels[dark].any()
    base = tubes != 0
    if margin is not None:
        base = base | mine_background(vol.skeletons, vol.raw.shape, margin=margin, **geo)
    assert (dark & ~base).any()  # dark voxels that neither the tubes nor the mining label
    np.testing.assert_array_equal(labelled, base | dark)
    plain = _round_volume(vol.raw, vol.skeletons, vol.voxel_size, vol.offset, cfg,
                          SkeletonRecipe(margin=margin, margin_pad=None, dark_quantile=None), None)
    if margin is None:  # tubes alone: the skeleton loss, no label volume
        assert plain.labels is None
    else:
        np.testing.assert_array_equal(np.asarray(plain.labelled), base)


def test_round_volume_margin_pad_widens_each_skeletons_margin(vol):
    """With margin_pad, skeleton k's mined background starts at max(margin, radius_k + pad)."""
    from xpress_fast.unet import rasterize_skeletons, skeleton_radii
    from xpress_fast.unet.labels import mine_background
    from xpress_fast.unet.skeleton_training import _round_volume

    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    cfg = TrainConfig.tiny(skeleton_radius=133.0)
    tubes = rasterize_skeletons(vol.skeletons, vol.raw.shape, radius=133.0, **geo) != 0
    radii = skeleton_radii(vol.raw, vol.skeletons, **geo)
    assert radii and all(0 < r <= 700 for r in radii.values())
    tv = _round_volume(vol.raw, vol.skeletons, vol.voxel_size, vol.offset, cfg,
                       SkeletonRecipe(margin=250.0, margin_pad=50.0, dark_quantile=None), None)
    want = mine_background(vol.skeletons, vol.raw.shape, margin=250.0,
                           margins={k: max(250.0, r + 50.0) for k, r in radii.items()}, **geo)
    fixed = mine_background(vol.skeletons, vol.raw.shape, margin=250.0, **geo)
    np.testing.assert_array_equal(np.asarray(tv.labelled), tubes | want)
    assert not np.asarray(tv.labels)[want].any()
    assert (want <= fixed).all() and want.sum() < fixed.sum()  # only ever fewer negatives


def test_round_volume_tube_pad_fits_each_tube_inside_its_radius(vol):
    """With tube_pad, skeleton k's tube radius is radius_k - pad clipped to [tube_min, radius]."""
    from xpress_fast.unet import rasterize_skeletons, skeleton_radii
    from xpress_fast.unet.skeleton_training import _round_volume

    geo = dict(voxel_size=vol.voxel_size, offset=vol.offset)
    cfg = TrainConfig.tiny(skeleton_radius=133.0)
    radii = skeleton_radii(vol.raw, vol.skeletons, **geo)
    own = {k: min(133.0, max(66.0, r - 33.0)) for k, r in radii.items() if r < 700.0}
    assert any(r < 133.0 for r in own.values())  # some tubes narrow on this volume
    tv = _round_volume(vol.raw, vol.skeletons, vol.voxel_size, vol.offset, cfg,
                       SkeletonRecipe(margin=None, dark_quantile=None, tube_pad=33.0, tube_min=66.0), None)
    want = rasterize_skeletons(vol.skeletons, vol.raw.shape, radius=133.0, radii=own, **geo)
    fixed = rasterize_skeletons(vol.skeletons, vol.raw.shape, radius=133.0, **geo)
    np.testing.assert_array_equal(np.asarray(tv.labels), want)
    np.testing.assert_array_equal(np.asarray(tv.labelled), want != 0)
    # only ever narrower: every tube voxel is a voxel of the same skeleton's fixed tube, unless
    # that voxel was a conflict there (two fixed tubes claimed it)
    lab = np.asarray(tv.labels)
    assert ((lab == fixed) | (fixed == 0))[lab != 0].all() and (lab != 0).sum() < (fixed != 0).sum()


def test_pseudo_boundary_round(vol, tmp_path):
    from xpress_fast.unet.skeleton_training import PSEUDO_BACKGROUND

    recipe = SkeletonRecipe(rounds=2, round_steps=1, margin=400.0, min_nodes=1, pseudo_boundary=True)
    res = train_from_skeletons(vol.raw, vol.skeletons, config=_cfg(2), recipe=recipe, out=tmp_path,
                               voxel_size=vol.voxel_size, offset=vol.offset)
    info = res.history[1]["pseudo"]
    with np.load(tmp_path / "round_1" / "pseudo_labels.npz") as z:
        saved = z["labels"]
    assert info["boundary_fraction"] == pytest.approx(np.mean(saved == PSEUDO_BACKGROUND))
    assert info["labelled_fraction"] == pytest.approx(np.mean(saved != 0))
    ids = set(np.unique(vol.skeletons.ids).tolist())
    assert set(np.unique(saved).tolist()) <= ids | {0, int(PSEUDO_BACKGROUND)}
