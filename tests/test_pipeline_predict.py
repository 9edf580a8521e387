"""Block-wise prediction on dask (predict_volume): identical to the in-memory predict(), model
cached per process, bounded retries, resume, bad input, and the CLI."""
from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from xpress_fast import io  # noqa: E402
from xpress_fast.cli import main  # noqa: E402
from xpress_fast.pipeline import BlockFailure, BlockLayout, CompletionRecords, predict_volume  # noqa: E402
from xpress_fast.pipeline import prediction  # noqa: E402
from xpress_fast.unet import UNet3D, predict, save_checkpoint  # noqa: E402
from reference_unet import he_init  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

TINY = dict(num_fmaps=2, fmap_inc_factor=2, downsample_factors=((2, 2, 2),))
SHAPE = (20, 26, 23)  # not a multiple of the tiles or blocks: the last ones are cut
TILE = (6, 8, 6)  # a size the valid-padding net accepts as is
BLOCK = (12, 16, 12)  # 2 x 2 x 2 blocks of 2 x 2 x 2 tiles (fewer at the far faces)
VOXEL, OFFSET = (8.0, 4.0, 4.0), (16.0, 0.0, 8.0)


def _model(padding, seed=0):
    """A tiny random model whose output really depends on the input (He-initialised biases too)."""
    torch.manual_seed(seed)
    return he_init(UNet3D(padding=padding, **TINY).eval())


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    d = tmp_path_factory.mktemp("pred")
    raw = np.random.default_rng(7).integers(0, 256, SHAPE, dtype=np.uint8)
    io.write_volume(d / "raw.zarr", "raw", raw, voxel_size=VOXEL, offset=OFFSET)
    io.write_volume(d / "raw.h5", "raw", raw, voxel_size=VOXEL, offset=OFFSET)
    ckpt = {}
    for padding in ("same", "valid"):
        ckpt[padding] = d / f"{padding}.pt"
        save_checkpoint(ckpt[padding], _model(padding))
    return {"dir": d, "raw": raw, "ckpt": ckpt}


def _read(out, dataset="affinities"):
    return io.read_volume(out, dataset)


@pytest.mark.parametrize("padding, scheduler, dtype, raw_file", [
    ("same", "threads", "float32", "raw.zarr"),
    ("valid", "sync", "uint8", "raw.h5"),
])
def test_blockwise_identical_to_in_memory(case, tmp_path, padding, scheduler, dtype, raw_file):
    raw, ckpt = case["raw"], case["ckpt"][padding]
    want = predict(raw, str(ckpt), block_shape=TILE, dtype=dtype)
    res = predict_volume(case["dir"] / raw_file, "raw", ckpt, tmp_path / "o.zarr", tile_shape=TILE,
                         block_shape=BLOCK, dtype=dtype, scheduler=scheduler, workers=2)
    assert res.n_blocks == 8 and res.tile_shape == TILE and res.report.completed == 8
    got = _read(tmp_path / "o.zarr")
    assert got.data.dtype == np.dtype(dtype) and got.data.shape == (12,) + SHAPE
    np.testing.assert_array_equal(got.data, want)  # exact: the same windows through the same net
    assert got.voxel_size == VOXEL and got.offset == OFFSET
    assert not (tmp_path / "o.zarr" / "affinities.partial").exists()
    # the equality is not trivial: tiling changes the result (same: overlap 8 < receptive radius
    # 10; valid: mirror padding at the volume's faces), and the output varies in space
    one_shot = predict(raw, str(ckpt), block_shape=64, dtype=dtype) if padding == "same" else None
    if one_shot is not None:
        assert not np.array_equal(one_shot, want)
    assert want.astype(np.float32).std(axis=(1, 2, 3)).min() > 0.01 * (255 if dtype == "uint8" else 1)


def test_batches_within_blocks_are_close(case, tmp_path):
    """batch_size > 1 batches windows per block, not across the volume: equal up to rounding."""
    ckpt = case["ckpt"]["valid"]
    want = predict(case["raw"], str(ckpt), block_shape=TILE, batch_size=3)
    predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, tmp_path / "o.zarr", tile_shape=TILE,
                   block_shape=BLOCK, batch_size=3)
    np.testing.assert_allclose(_read(tmp_path / "o.zarr").data, want, rtol=0, atol=1e-5)


def test_default_block_shape_and_model_loaded_once_per_process(case, tmp_path, monkeypatch):
    train = sys.modules["xpress_fast.unet.train"]
    real, loads = train.load_model, []

    def counting(path, **kw):
        loads.append(str(path))
        return real(path, **kw)

    monkeypatch.setattr(train, "load_model", counting)
    monkeypatch.setattr(prediction, "DEFAULT_BLOCK_EDGE", 10)  # blocks of 12 x 16 x 12 = 2 tiles each way
    prediction._MODELS.clear()
    ckpt = case["ckpt"]["same"]
    res = predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, tmp_path / "a.zarr", tile_shape=TILE, workers=2)
    assert res.block_shape == BLOCK and res.n_blocks == 8
    assert len(loads) == 2  # the driver's check + one for the process's 8 blocks on 2 threads
    predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, tmp_path / "b.zarr", tile_shape=TILE, workers=2)
    assert len(loads) == 3  # the next run's blocks reuse the process's model
    np.testing.assert_array_equal(_read(tmp_path / "a.zarr").data, _read(tmp_path / "b.zarr").data)


def test_block_callable_pickles(case, tmp_path):
    """The process and distributed schedulers ship the block function by pickle."""
    ckpt = case["ckpt"]["valid"]
    predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, tmp_path / "o.zarr", tile_shape=TILE, block_shape=BLOCK)
    from xpress_fast.unet.predict import Tiling

    tiling = Tiling.plan(_model("valid"), SHAPE, TILE)
    io.write_volume(tmp_path / "o.zarr", "copy.partial", np.zeros((12,) + SHAPE, np.float32), voxel_size=VOXEL)
    fn = prediction._PredictBlock(case["dir"] / "raw.zarr", "raw", ckpt, prediction._file_digest(ckpt),
                                  tmp_path / "o.zarr", "copy.partial", tiling, device=None, batch_size=1,
                                  dtype="float32", amp=True)
    block = BlockLayout(SHAPE, BLOCK).block(5)
    pickle.loads(pickle.dumps(fn))(block)
    copy, want = _read(tmp_path / "o.zarr", "copy.partial").data, _read(tmp_path / "o.zarr").data
    np.testing.assert_array_equal(copy[(slice(None),) + block.core], want[(slice(None),) + block.core])
    assert not copy[:, : block.begin[0]].any()  # only its own block was written


def _flaky_tiles(monkeypatch, fail_begins, failures_per_block, calls):
    """Make the prediction of the blocks starting at ``fail_begins`` fail a number of times."""
    module = sys.modules["xpress_fast.unet.predict"]
    real = module._predict_tiles
    remaining = {}

    def flaky(model, read, tiles, out, *, origin=(0, 0, 0), **kw):
        calls.append(tuple(origin))
        if tuple(origin) in fail_begins:
            remaining.setdefault(tuple(origin), failures_per_block)
            if remaining[tuple(origin)] > 0:
                remaining[tuple(origin)] -= 1
                raise RuntimeError("simulated worker failure")
        return real(model, read, tiles, out, origin=origin, **kw)

    monkeypatch.setattr(module, "_predict_tiles", flaky)


def test_retries_bounded_failures_reported_and_resumed(case, tmp_path, monkeypatch):
    raw_path, ckpt = case["dir"] / "raw.zarr", case["ckpt"]["same"]
    kw = dict(tile_shape=TILE, block_shape=BLOCK)
    want = predict(case["raw"], str(ckpt), block_shape=TILE)
    layout = BlockLayout(SHAPE, BLOCK)
    begin = {b.index: b.begin for b in layout}
    calls: list = []
    # block 1 fails once, then works: one retry, same result
    _flaky_tiles(monkeypatch, {begin[1]}, 1, calls)
    res = predict_volume(raw_path, "raw", ckpt, tmp_path / "a.zarr", retries=1, **kw)
    assert res.report.retries == 1 and res.report.completed == 8
    assert calls.count(begin[1]) == 2
    np.testing.assert_array_equal(_read(tmp_path / "a.zarr").data, want)
    # blocks 2 and 3 fail three times: more than retries=2 -> the run fails and says which
    monkeypatch.undo()
    calls.clear()
    _flaky_tiles(monkeypatch, {begin[2], begin[3]}, 3, calls)
    out = tmp_path / "b.zarr"
    with pytest.raises(BlockFailure, match=r"2 of 8 blocks failed .*block 2: RuntimeError: simulated") as e:
        predict_volume(raw_path, "raw", ckpt, out, scheduler="sync", retries=2, **kw)
    assert sorted(e.value.failures) == [2, 3]
    assert calls.count(begin[2]) == 3 and calls.count(begin[0]) == 1
    assert not io.dataset_exists(out, "affinities")  # nothing half-done looks complete
    records = CompletionRecords(out / ".xpress_fast" / "records")
    assert [records.done("predict-affinities", i) for i in range(8)] == [True] * 2 + [False] * 2 + [True] * 4
    # resume: only the failed blocks run again; the result equals the uninterrupted run
    monkeypatch.undo()
    calls.clear()
    _flaky_tiles(monkeypatch, set(), 0, calls)
    res = predict_volume(raw_path, "raw", ckpt, out, retries=2, **kw)
    assert sorted(calls) == sorted([begin[2], begin[3]])
    assert res.report.skipped == 6 and res.report.completed == 2
    np.testing.assert_array_equal(_read(out).data, want)
    # a finished run run again does nothing; other settings are refused
    calls.clear()
    assert predict_volume(raw_path, "raw", ckpt, out, **kw).report is None and calls == []
    with pytest.raises(ValueError, match=r"holds a prediction into 'affinities' with other settings \(block_shape\)"):
        predict_volume(raw_path, "raw", ckpt, out, tile_shape=TILE, block_shape=(6, 8, 6))
    # another dataset of the same container is a run of its own
    res = predict_volume(raw_path, "raw", ckpt, out, out_dataset="affs/b", **kw)
    assert res.report.completed == 8
    np.testing.assert_array_equal(_read(out, "affs/b").data, want)


def test_changed_checkpoint_is_refused(case, tmp_path):
    """Blocks predicted with two different models must never be mixed in one output."""
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, _model("same", seed=0))
    out = tmp_path / "o.zarr"
    predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, out, tile_shape=TILE, block_shape=BLOCK)
    save_checkpoint(ckpt, _model("same", seed=1))  # retrained in place
    with pytest.raises(ValueError, match=r"other settings \(checkpoint\)"):
        predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, out, tile_shape=TILE, block_shape=BLOCK)
    # a worker whose process has not loaded the model yet checks the file it loads
    prediction._MODELS.clear()
    with pytest.raises(ValueError, match="changed since the run started"):
        prediction._cached_model(str(ckpt), prediction._file_digest(case["ckpt"]["same"]), None)

def test_changed_raw_is_refused_then_restarted(case, tmp_path):
    """A raw volume rewritten in place after a finished prediction: refused, or predicted afresh."""
    import shutil

    from xpress_fast.pipeline import RunChanged

    raw = tmp_path / "raw.h5"
    shutil.copy(case["dir"] / "raw.h5", raw)
    out = tmp_path / "o.zarr"
    kw = dict(tile_shape=TILE, block_shape=BLOCK)
    assert not predict_volume(raw, "raw", case["ckpt"]["same"], out, **kw).up_to_date
    assert predict_volume(raw, "raw", case["ckpt"]["same"], out, **kw).up_to_date
    new_raw = 255 - case["raw"]
    io.write_volume(raw, "raw", new_raw, voxel_size=VOXEL, offset=OFFSET)
    with pytest.raises(RunChanged, match="made from other inputs: raw changed"):
        predict_volume(raw, "raw", case["ckpt"]["same"], out, **kw)
    res = predict_volume(raw, "raw", case["ckpt"]["same"], out, restart=True, **kw)
    assert not res.up_to_date
    fresh = tmp_path / "fresh.zarr"
    predict_volume(raw, "raw", case["ckpt"]["same"], fresh, **kw)
    np.testing.assert_array_equal(_read(out).data, _read(fresh).data)


def test_distributed_scheduler(case, tmp_path):
    distributed = pytest.importorskip("distributed")
    ckpt = case["ckpt"]["same"]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        predict_volume(case["dir"] / "raw.zarr", "raw", ckpt, tmp_path / "d.zarr", tile_shape=TILE,
                       block_shape=BLOCK, scheduler=cluster.scheduler_address)
    np.testing.assert_array_equal(_read(tmp_path / "d.zarr").data, predict(case["raw"], str(ckpt), block_shape=TILE))


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"raw_dataset": "nope"}, ValueError, "dataset 'nope' not found"),
    ({"raw_data": np.zeros((2,) + SHAPE, np.uint8)}, ValueError, r"raw must be 3-D \(z, y, x\); got shape \(2, "),
    ({"raw_data": np.zeros(SHAPE, np.int32)}, TypeError, "raw.dtype must be uint8"),
    ({"block_shape": (12, 12, 12)}, ValueError, r"block_shape must be a multiple of the tile shape \(6, 8, 6\)"),
    ({"block_shape": (0, 16, 12)}, ValueError, "block_shape must be three positive integers"),
    ({"tile_shape": (0, 8, 8)}, ValueError, "tile_shape must be positive"),
    ({"out": "o.h5"}, ValueError, "out must be a zarr container"),
    ({"out": "o.txt"}, ValueError, "out must be a zarr container"),
    ({"out_dataset": ""}, ValueError, "out_dataset must be a non-empty relative name"),
    ({"retries": -1}, ValueError, "retries must be a non-negative integer"),
    ({"workers": 0}, ValueError, "workers must be a positive integer"),
    ({"dtype": "float16"}, ValueError, "dtype must be 'float32' or 'uint8'"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"device": "nonsense"}, ValueError, "device must be a torch device"),
    ({"checkpoint": "missing.pt"}, FileNotFoundError, "checkpoint not found"),
    ({"existing": True}, ValueError, "already holds a dataset 'affinities' that no block-wise prediction wrote"),
])
def test_bad_input(case, tmp_path, kwargs, exc, match):
    raw_path, dataset = case["dir"] / "raw.zarr", kwargs.pop("raw_dataset", "raw")
    if "raw_data" in kwargs:
        raw_path = tmp_path / "r.zarr"
        io.write_volume(raw_path, "raw", kwargs.pop("raw_data"), voxel_size=VOXEL)
    ckpt = tmp_path / kwargs.pop("checkpoint") if "checkpoint" in kwargs else case["ckpt"]["same"]
    out = tmp_path / kwargs.pop("out", "o.zarr")
    if kwargs.pop("existing", False):
        io.write_volume(out, "affinities", np.ones((12,) + SHAPE, np.float32), voxel_size=VOXEL)
    kwargs.setdefault("tile_shape", TILE)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(exc, match=match):
        predict_volume(raw_path, dataset, ckpt, out, **kwargs)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_cli_predict_blockwise(case, tmp_path, capsys):
    ckpt, out = case["ckpt"]["valid"], tmp_path / "o.zarr"
    argv = ["predict", "--raw", str(case["dir"] / "raw.h5"), "--model", str(ckpt), "--out", str(out),
            "--tile-shape", "6,8,6", "--block-shape", "12,16,12", "--scheduler", "sync", "--retries", "0",
            "--device", "cpu", "--uint8", "-q"]
    assert main(argv) == 0
    assert "8 blocks, 0 resumed from records, 0 retries" in capsys.readouterr().out
    np.testing.assert_array_equal(_read(out).data, predict(case["raw"], str(ckpt), block_shape=TILE, dtype="uint8"))
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    argv_bad = argv[:argv.index("--block-shape")] + ["--block-shape", "12,12,12", "-q"]
    assert main(argv_bad) == 2
    assert "block_shape must be a multiple of the tile shape" in capsys.readouterr().err
    h5 = ["predict", "--raw", str(case["dir"] / "raw.h5"), "--model", str(ckpt), "--out", str(tmp_path / "a.h5"),
          "--block-shape", "12,16,12", "--workers", "2", "-q"]
    assert main(h5) == 2
    assert "--block-shape, --workers: block-wise prediction writes a zarr container" in capsys.readouterr().err
    assert not (tmp_path / "a.h5").exists()

