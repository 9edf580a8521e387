"""predict(): tiling equals one-shot prediction, dtypes, zarr output, errors."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast.unet import UNet3D, normalize_raw, predict, save_checkpoint  # noqa: E402
from xpress_fast.unet.predict import _read_window  # noqa: E402
from reference_unet import he_init  # noqa: E402

TINY = dict(num_fmaps=2, fmap_inc_factor=2, downsample_factors=((2, 2, 2),))


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _model(padding, seed=0, **kw):
    """A random model whose output really depends on the input (He-initialised, unlike the
    default init, under which a fresh tiny net is nearly constant in space)."""
    torch.manual_seed(seed)
    return he_init(UNet3D(padding=padding, **{**TINY, **kw}).eval())


def test_random_model_is_input_dependent():
    y = _one_shot(_model("same"), _raw((20, 22, 18), seed=4))
    assert y.std(axis=(1, 2, 3)).min() > 0.01


def _raw(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _one_shot(model, raw):
    x = torch.from_numpy(normalize_raw(raw)[None, None])
    with torch.no_grad():
        return model(x)[0].numpy()


def test_same_single_block_equals_model():
    m = _model("same")
    raw = _raw((13, 18, 16))
    got = predict(raw, m, block_shape=64)
    np.testing.assert_array_equal(got, _one_shot(m, raw))
    assert got.dtype == np.float32 and got.shape == (12, 13, 18, 16)


def test_same_tiles_with_receptive_overlap_equal_one_shot():
    m = _model("same")
    raw = _raw((20, 26, 23), seed=1)
    ov = m.receptive_radius
    got = predict(raw, m, block_shape=(7, 8, 9), overlap=ov, batch_size=3)
    np.testing.assert_allclose(got, _one_shot(m, raw), atol=2e-6)


def test_same_tiles_with_small_overlap_are_close():
    m = _model("same")
    raw = _raw((24, 24, 24), seed=2)
    got = predict(raw, m, block_shape=12, overlap=4)
    ref = _one_shot(m, raw)
    assert np.abs(got - ref).mean() < 0.01  # differs only near tile borders, and only a little


def test_valid_tiles_equal_one_shot_on_mirrored_volume():
    m = _model("valid")
    raw = _raw((17, 21, 19), seed=3)
    ctx = m.context
    # one shot on the mirror-padded volume (grown to a valid size, cropped back)
    want_in = m.valid_input_shape(raw.shape)
    lo = tuple(-c for c in ctx)
    hi = tuple(l + w for l, w in zip(lo, want_in))
    padded = _read_window(raw, lo, hi)
    ref = _one_shot(m, padded)[:, : raw.shape[0], : raw.shape[1], : raw.shape[2]]
    got = predict(raw, m, block_shape=(4, 6, 8), batch_size=2)
    np.testing.assert_allclose(got, ref, atol=2e-6)
    # mirror padding itself
    inner = (slice(ctx[1], ctx[1] + raw.shape[1]), slice(ctx[2], ctx[2] + raw.shape[2]))
    np.testing.assert_array_equal(padded[ctx[0] - 1][inner], raw[1])
    np.testing.assert_array_equal(padded[ctx[0]][inner], raw[0])


def test_uint8_output_and_progress_off(capsys):
    m = _model("same")
    raw = _raw((16, 16, 16))
    f = predict(raw, m, block_shape=8, overlap=m.receptive_radius)
    u = predict(raw, m, block_shape=8, overlap=m.receptive_radius, dtype="uint8")
    assert u.dtype == np.uint8
    np.testing.assert_array_equal(u, np.rint(f * 255).astype(np.uint8))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_zarr_output_and_checkpoint_path(tmp_path):
    zarr = pytest.importorskip("zarr")
    m = _model("same")
    raw = _raw((16, 20, 12))
    path = tmp_path / "m.pt"
    save_checkpoint(path, m)
    out = zarr.open(str(tmp_path / "affs.zarr"), mode="w", shape=(12, 16, 20, 12), chunks=(12, 8, 8, 8),
                    dtype="float32")
    res = predict(raw, str(path), block_shape=8, out=out)
    assert res is out
    np.testing.assert_allclose(out[:], predict(raw, m, block_shape=8), atol=1e-6)


def test_input_not_modified_and_h5_input(tmp_path):
    h5py = pytest.importorskip("h5py")
    m = _model("same")
    raw = _raw((12, 12, 12))
    before = raw.copy()
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f["raw"] = raw
    with h5py.File(tmp_path / "r.h5", "r") as f:
        a = predict(f["raw"], m, block_shape=8)
    np.testing.assert_array_equal(raw, before)
    np.testing.assert_array_equal(a, predict(raw, m, block_shape=8))


@pytest.mark.parametrize(
    "raw, kwargs, exc, match",
    [
        (np.zeros((8, 8, 8), np.int32), {}, TypeError, "raw.dtype must be uint8"),
        (np.zeros((8, 8), np.uint8), {}, ValueError, "raw must be 3-dimensional"),
        (np.zeros((0, 8, 8), np.uint8), {}, ValueError, "raw must not be empty"),
        ("raw.h5", {}, TypeError, "raw must be a 3-d array"),
        (np.full((8, 8, 8), np.nan, np.float32), {}, ValueError, "NaN"),
        (np.zeros((8, 8, 8), np.uint8), dict(dtype="float16"), ValueError, "dtype must be 'float32' or 'uint8'"),
        (np.zeros((8, 8, 8), np.uint8), dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (np.zeros((8, 8, 8), np.uint8), dict(block_shape=(0, 8, 8)), ValueError, "block_shape must be positive"),
        (np.zeros((8, 8, 8), np.uint8), dict(overlap=-1), ValueError, "overlap must be >= 0"),
        (np.zeros((8, 8, 8), np.uint8), dict(out=np.zeros((12, 8, 8, 7), np.float32)), ValueError,
         "out must have shape"),
        (np.zeros((8, 8, 8), np.uint8), dict(out=np.zeros((12, 8, 8, 8), np.float64)), TypeError, "out.dtype must be"),
    ],
)
def test_errors(raw, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        predict(raw, _model("same"), **kwargs)


def test_model_errors(tmp_path):
    with pytest.raises(TypeError, match="model must be an xpress_fast.unet.UNet3D"):
        predict(np.zeros((8, 8, 8), np.uint8), torch.nn.Conv3d(1, 1, 1))
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        predict(np.zeros((8, 8, 8), np.uint8), str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(ValueError, match="not an xpress_fast.unet checkpoint"):
        predict(np.zeros((8, 8, 8), np.uint8), str(bad))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_prediction_close_to_cpu():
    m = _model("same")
    raw = _raw((24, 24, 24))
    cpu = predict(raw, m, block_shape=16, device="cpu")
    gpu = predict(raw, m, block_shape=16, device="cuda", amp=True)
    np.testing.assert_allclose(gpu, cpu, atol=2e-2)
