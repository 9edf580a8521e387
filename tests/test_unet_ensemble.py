"""UNetEnsemble: the mean of its members' affinities, by hand; predict, checkpoints and the
block-wise pipeline take it as one model; bad members are refused; it is not trained whole."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast.unet import (  # noqa: E402
    TrainConfig, UNet3D, UNetEnsemble, load_model, normalize_raw, predict, save_checkpoint, train,
)
from reference_unet import he_init  # noqa: E402

TINY = dict(num_fmaps=2, fmap_inc_factor=2, downsample_factors=((2, 2, 2),))

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model(seed, **kw):
    torch.manual_seed(seed)
    return he_init(UNet3D(padding="same", **{**TINY, **kw}).eval())


def _raw(shape=(12, 14, 10), seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _one_shot(model, raw):
    with torch.no_grad():
        return model(torch.from_numpy(normalize_raw(raw)[None, None]))[0].numpy()


def test_forward_is_the_mean_of_the_members():
    members = [_model(s) for s in (0, 1, 2)]
    ens = UNetEnsemble(members)
    raw = _raw()
    each = [_one_shot(m, raw) for m in members]
    assert np.abs(each[0] - each[1]).max() > 0.01  # the members really differ
    got = _one_shot(ens, raw)
    np.testing.assert_allclose(got, (each[0] + each[1] + each[2]) / 3, rtol=0, atol=1e-6)
    with torch.no_grad():
        lg = ens.logits(torch.from_numpy(normalize_raw(raw)[None, None]))[0].numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-lg)), got, atol=1e-5)
    # the geometry is the members'
    assert ens.offsets == members[0].offsets and ens.out_channels == 12 and len(ens) == 3
    assert ens.receptive_radius == members[0].receptive_radius and ens.padding == "same"
    # members of another width are fine (the output's geometry is the same)
    UNetEnsemble([_model(0), _model(1, num_fmaps=3)])


def test_predict_takes_an_ensemble_a_list_and_checkpoints(tmp_path):
    members = [_model(s) for s in (0, 1)]
    raw = _raw((20, 18, 16), seed=1)
    want = (predict(raw, members[0], block_shape=8) + predict(raw, members[1], block_shape=8)) / 2
    np.testing.assert_allclose(predict(raw, UNetEnsemble(members), block_shape=8), want, atol=1e-6)
    np.testing.assert_allclose(predict(raw, members, block_shape=8), want, atol=1e-6)
    paths = []
    for i, m in enumerate(members):
        paths.append(tmp_path / f"m{i}.pt")
        save_checkpoint(paths[-1], m)
    np.testing.assert_allclose(predict(raw, paths, block_shape=8), want, atol=1e-6)
    # an ensemble checkpoint comes back as the ensemble, and a list may mix ensembles and models
    save_checkpoint(tmp_path / "ens.pt", UNetEnsemble(members))
    back = load_model(tmp_path / "ens.pt")
    assert isinstance(back, UNetEnsemble) and len(back) == 2
    np.testing.assert_allclose(predict(raw, tmp_path / "ens.pt", block_shape=8), want, atol=1e-6)
    three = predict(raw, [tmp_path / "ens.pt", _model(5)], block_shape=8)
    np.testing.assert_allclose(three, (2 * want + predict(raw, _model(5), block_shape=8)) / 3, atol=1e-6)


def test_pipeline_predicts_an_ensemble_checkpoint_block_wise(tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("dask")
    from xpress_fast import io
    from xpress_fast.pipeline import predict_volume

    members = [_model(s) for s in (3, 4)]
    save_checkpoint(tmp_path / "ens.pt", UNetEnsemble(members))
    raw = _raw((24, 20, 18), seed=2)
    io.write_volume(tmp_path / "raw.zarr", "raw", raw, voxel_size=(1, 1, 1))
    predict_volume(tmp_path / "raw.zarr", "raw", tmp_path / "ens.pt", tmp_path / "out.zarr",
                   tile_shape=(8, 8, 6), block_shape=(16, 16, 12), scheduler="sync")
    got = io.read_volume(tmp_path / "out.zarr", "affinities").data
    want = predict(raw, UNetEnsemble(members), block_shape=(8, 8, 6))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_bad_members_are_refused():
    with pytest.raises(ValueError, match="at least one UNet3D"):
        UNetEnsemble([])
    with pytest.raises(TypeError, match=r"members\[1\] must be an xpress_fast.unet.UNet3D; got str"):
        UNetEnsemble([_model(0), "m.pt"])
    with pytest.raises(TypeError, match="members must be a list or tuple"):
        UNetEnsemble(_model(0))
    with pytest.raises(ValueError, match=r"members\[1\] differs from members\[0\] in offsets"):
        UNetEnsemble([_model(0), _model(1, offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1)))])
    with pytest.raises(ValueError, match="in padding"):
        UNetEnsemble([_model(0), he_init(UNet3D(padding="valid", **TINY))])
    with pytest.raises(ValueError, match="model is an empty list"):
        predict(_raw(), [])
    with pytest.raises(TypeError, match="got int"):
        predict(_raw(), 3)


def test_an_ensemble_is_not_trained_whole(tmp_path):
    ens = UNetEnsemble([_model(0), _model(1)])
    cfg = TrainConfig(**TINY, padding="same", steps=1, crop_shape=(8, 8, 8))
    raw = _raw((16, 16, 16))
    with pytest.raises(TypeError, match="not trained as a whole"):
        train(raw, labels=np.ones(raw.shape, np.uint64), config=cfg, model=ens)
    with pytest.raises(ValueError, match="members' weights only"):
        save_checkpoint(tmp_path / "x.pt", ens, ema_state={})
    assert not (tmp_path / "x.pt").exists()
