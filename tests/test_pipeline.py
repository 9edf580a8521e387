"""Block-wise pipeline on dask: equality with the in-memory run, retries, resume, bad input."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import xpress_fast
from xpress_fast import io
from xpress_fast.fragments import blockwise_watershed
from xpress_fast.pipeline import (BlockFailure, BlockLayout, CompletionRecords, load_agglomeration, run_blocks,
                                  segment_volume, segmentation_dataset)

THRESHOLDS = [0.2, 0.5, 0.8]


def _affs_from_labels(labels, seed=0, noise=0.35):
    """Noisy nearest-neighbour affinities of a label volume (channels -z, -y, -x)."""
    a = np.zeros((3,) + labels.shape, np.float32)
    a[0, 1:] = (labels[1:] == labels[:-1]) & (labels[1:] > 0)
    a[1, :, 1:] = (labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] > 0)
    a[2, :, :, 1:] = (labels[:, :, 1:] == labels[:, :, :-1]) & (labels[:, :, 1:] > 0)
    rng = np.random.default_rng(seed)
    return np.clip(a * (1 - noise) + rng.random(a.shape, dtype=np.float32) * noise, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    from xpress_fast.synthetic import make_volume

    d = tmp_path_factory.mktemp("pipe")
    vol = make_volume((36, 40, 44), seed=5)
    affs = _affs_from_labels(vol.labels)
    io.write_volume(d / "affs.zarr", "affs", affs, voxel_size=vol.voxel_size, offset=vol.offset)
    io.write_volume(d / "affs.h5", "affs", (affs * 255).round().astype(np.uint8), voxel_size=vol.voxel_size)
    frags = xpress_fast.watershed(affs, min_seed_distance=4)
    io.write_volume(d / "frags.h5", "fragments", frags, voxel_size=vol.voxel_size, offset=vol.offset)
    return {"dir": d, "affs": affs, "fragments": frags, "vol": vol}


def _same_up_to_renumbering(a, b):
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def _objects_cut_by_blocks(labels, layout):
    """How many objects of a label volume lie in more than one block of the layout."""
    block_of = np.zeros(labels.shape, np.int64)
    for b in layout:
        block_of[b.core] = b.index
    return sum(len(np.unique(block_of[labels == i])) > 1 for i in np.unique(labels[labels != 0]))


def test_block_layout_partitions_the_volume():
    layout = BlockLayout((10, 7, 5), (4, 4, 5))
    assert len(layout) == 3 * 2 * 1
    count = np.zeros((10, 7, 5), int)
    for b in layout:
        count[b.core] += 1
        read, inner = b.with_context((2, 2, 2), layout.shape)
        assert np.array_equal(np.arange(10 * 7 * 5).reshape(10, 7, 5)[read][inner],
                              np.arange(10 * 7 * 5).reshape(10, 7, 5)[b.core])
    assert np.all(count == 1)
    with pytest.raises(ValueError, match="block_shape must be three positive integers"):
        BlockLayout((4, 4, 4), (0, 4, 4))
    with pytest.raises(IndexError, match="block index"):
        layout.block(6)


@pytest.mark.parametrize("merge_function", ["hist_quant_50", "mean"])
@pytest.mark.parametrize("block_shape", [(16, 16, 16), (11, 40, 13)])
def test_given_fragments_blockwise_identical_to_in_memory(volume, tmp_path, merge_function, block_shape):
    d = volume["dir"]
    res = segment_volume(d / "affs.zarr", "affs", tmp_path / "out.zarr", thresholds=THRESHOLDS,
                         merge_function=merge_function, fragments=(d / "frags.h5", "fragments"),
                         block_shape=block_shape)
    assert res.n_blocks > 1
    agg = xpress_fast.merge_history(volume["affs"], THRESHOLDS, fragments=volume["fragments"],
                                  merge_function=merge_function)
    n_segments = []
    for t in THRESHOLDS:
        seg = io.read_volume(tmp_path / "out.zarr", segmentation_dataset(t))
        np.testing.assert_array_equal(seg.data, agg.segmentation(t))  # exact, same ids
        assert seg.voxel_size == tuple(volume["vol"].voxel_size)
        n_segments.append(len(np.unique(seg.data)))
    # objects really were cut by blocks and merged back; the thresholds differ
    assert n_segments[0] > n_segments[-1]


def test_blockwise_fragments_unique_ids_and_agglomeration_identical(volume, tmp_path):
    d = volume["dir"]
    out = tmp_path / "out.zarr"
    bs = (12, 16, 20)
    res = segment_volume(d / "affs.h5", "affs", out, thresholds=THRESHOLDS, block_shape=bs, context=(4, 4, 4),
                         watershed_options={"min_seed_distance": 4})
    frags = io.read_volume(out, "fragments").data
    layout = BlockLayout(frags.shape, bs)
    seen = {}
    for b in layout:
        for i in np.unique(frags[b.core]):
            if i:
                assert seen.setdefault(int(i), b.index) == b.index, "a fragment id appears in two blocks"
    assert res.n_fragments == len(seen)
    affs8 = io.read_volume(d / "affs.h5", "affs").data
    agg = xpress_fast.merge_history(affs8, THRESHOLDS, fragments=frags)
    for t in THRESHOLDS:
        np.testing.assert_array_equal(io.read_volume(out, segmentation_dataset(t)).data, agg.segmentation(t))
    # the sweep of a block-wise run reads fragment ids from the zarr and matches dense scoring
    vol = volume["vol"]
    agg2 = load_agglomeration(out)
    result = xpress_fast.sweep(agg2, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset,
                               fragments=io.open_volume(out, "fragments").data)
    for t, s in zip(THRESHOLDS, result.scores):
        want = xpress_fast.xpress_scores(agg.segmentation(t), vol.skeletons, voxel_size=vol.voxel_size,
                                         offset=vol.offset)
        assert s.as_dict() == pytest.approx(want.as_dict(), nan_ok=True)


BLOCKWISE = {"block_shape": (16, 16, 16), "context": (4, 4, 4)}


@pytest.mark.parametrize("affs_file, merge_function", [("affs.zarr", "hist_quant_50"), ("affs.h5", "mean")])
def test_blockwise_fragments_and_segmentations_identical_to_in_memory(volume, tmp_path, affs_file,
                                                                      merge_function):
    """The issue's demand: with the same block_shape and context, the block-wise run (threads
    scheduler, blocks cutting through objects) equals the in-memory run exactly, same ids."""
    d = volume["dir"]
    out = tmp_path / "out.zarr"
    wopts = {"min_seed_distance": 4}
    res = segment_volume(d / affs_file, "affs", out, thresholds=THRESHOLDS, merge_function=merge_function,
                         watershed_options=wopts, scheduler="threads", workers=2, **BLOCKWISE)
    assert _objects_cut_by_blocks(volume["vol"].labels, BlockLayout(volume["vol"].labels.shape, (16, 16, 16))) > 5
    affs = io.read_volume(d / affs_file, "affs").data  # float32 or uint8, what the pipeline read
    want = blockwise_watershed(affs, **BLOCKWISE, **wopts)
    frags = io.read_volume(out, "fragments").data
    assert frags.dtype == np.uint32  # every possible id fits; widened below, ids compared as they are
    np.testing.assert_array_equal(frags.astype(np.uint64), want)
    assert res.n_fragments == len(np.unique(want[want != 0]))
    # the blocks matter: the whole-volume watershed is another partition
    assert not _same_up_to_renumbering(want, xpress_fast.watershed(affs, **wopts))
    agg = xpress_fast.merge_history(affs, THRESHOLDS, merge_function=merge_function,
                                  fragments=blockwise_watershed(affs, **BLOCKWISE, **wopts))
    np.testing.assert_array_equal(agg.fragments, want)
    with pytest.warns(FutureWarning, match="block_shape in watershed_options is deprecated"):
        old = xpress_fast.merge_history(affs, THRESHOLDS, merge_function=merge_function,
                                        watershed_options={**BLOCKWISE, **wopts})
    np.testing.assert_array_equal(old.fragments, want)
    n_segments = []
    for t in THRESHOLDS:
        seg = io.read_volume(out, segmentation_dataset(t)).data
        np.testing.assert_array_equal(seg.astype(np.uint64), agg.segmentation(t))
        n_segments.append(len(np.unique(seg)))
    assert n_segments[0] > n_segments[-1]  # the thresholds differ, so each comparison is its own


@pytest.mark.parametrize("merge_function", ["hist_quant_50", "mean"])
def test_long_range_evidence_blockwise_identical_to_in_memory(volume, tmp_path, merge_function):
    """Long-range pairs read from the planes below each block, and their evidence kept for
    fragments that touch anywhere in the volume: the same agglomeration as in memory."""
    from xpress_fast.region_graphs import axis_offsets

    d = volume["dir"]
    labels = volume["vol"].labels
    offsets = axis_offsets((3, 9))
    rng = np.random.default_rng(3)
    long_range = []
    for o in offsets[3:]:
        shifted = np.full(labels.shape, -1, np.int64)
        here = tuple(slice(-c, None) if c < 0 else slice(None) for c in o)
        there = tuple(slice(None, c) if c < 0 else slice(None) for c in o)
        shifted[here] = labels[there]
        same = (shifted == labels) & (labels > 0)
        long_range.append(np.clip(same * 0.7 + rng.random(labels.shape) * 0.3, 0, 1))
    affs = np.concatenate([volume["affs"], np.stack(long_range).astype(np.float32)])
    io.write_volume(tmp_path / "affs9.zarr", "affs", affs, voxel_size=volume["vol"].voxel_size)
    res = segment_volume(tmp_path / "affs9.zarr", "affs", tmp_path / "out.zarr", thresholds=THRESHOLDS,
                         merge_function=merge_function, fragments=(d / "frags.h5", "fragments"),
                         block_shape=(16, 16, 16), offsets=offsets)
    assert res.n_blocks > 1
    agg = xpress_fast.merge_history(affs, THRESHOLDS, fragments=volume["fragments"], merge_function=merge_function,
                                  offsets=offsets)
    plain = xpress_fast.merge_history(affs, THRESHOLDS, fragments=volume["fragments"], merge_function=merge_function)
    assert not np.array_equal(agg.scores, plain.scores)  # the long-range channels change the run
    for t in THRESHOLDS:
        seg = io.read_volume(tmp_path / "out.zarr", segmentation_dataset(t))
        np.testing.assert_array_equal(seg.data, agg.segmentation(t))
    with pytest.raises(ValueError, match=r"inside_threshold must be None or a number in \[0, 1\]"):
        segment_volume(tmp_path / "affs9.zarr", "affs", tmp_path / "out3.zarr", thresholds=THRESHOLDS,
                       inside_threshold=2.0)
    assert not (tmp_path / "out3.zarr").exists()  # refused before anything was written
    res32 = segment_volume(d / "affs.zarr", "affs", tmp_path / "out4.zarr", thresholds=THRESHOLDS,
                           fragments=(d / "frags.h5", "fragments"), inside_threshold=np.float32(0.5))
    assert res32.n_blocks >= 1  # a numpy float is a valid setting (recorded as a plain float)
    with pytest.raises(ValueError, match="offsets must have no positive component"):
        segment_volume(tmp_path / "affs9.zarr", "affs", tmp_path / "out2.zarr", thresholds=THRESHOLDS,
                       offsets=offsets[:3] + [(3, 0, 0)] + offsets[4:])


def _flaky_watershed(monkeypatch, fail_blocks, failures_per_block, calls):
    """Make the watershed of some blocks (found by id_offset) fail a number of times."""
    module = sys.modules["xpress_fast.fragments"]
    real = module.watershed
    remaining = {}

    def flaky(affs, *, id_offset=0, **kw):
        calls.append(id_offset)
        if id_offset in fail_blocks:
            remaining.setdefault(id_offset, failures_per_block)
            if remaining[id_offset] > 0:
                remaining[id_offset] -= 1
                raise RuntimeError("simulated worker failure")
        return real(affs, id_offset=id_offset, **kw)

    monkeypatch.setattr(module, "watershed", flaky)
    return real


def test_retries_are_bounded_and_reported(volume, tmp_path, monkeypatch):
    d = volume["dir"]
    kw = dict(thresholds=THRESHOLDS, block_shape=(18, 20, 22), context=(3, 3, 3),
              watershed_options={"min_seed_distance": 4})
    calls: list = []
    ref = tmp_path / "ref.zarr"
    segment_volume(d / "affs.zarr", "affs", ref, **kw)
    stride = (18 + 6) * (20 + 6) * (22 + 6) + 1
    # block 1 fails once, then works: one retry, same result
    _flaky_watershed(monkeypatch, {stride}, 1, calls)
    res = segment_volume(d / "affs.zarr", "affs", tmp_path / "a.zarr", retries=1, **kw)
    assert res.reports[0].retries == 1 and res.reports[0].completed == 8
    # blocks 2 and 3 fail three times: more than retries=2 -> the run fails and says which
    monkeypatch.undo()
    calls.clear()
    _flaky_watershed(monkeypatch, {2 * stride, 3 * stride}, 3, calls)
    out = tmp_path / "b.zarr"
    with pytest.raises(BlockFailure, match=r"2 of 8 blocks failed .*block 2: RuntimeError: simulated") as e:
        segment_volume(d / "affs.zarr", "affs", out, retries=2, **kw)
    assert sorted(e.value.failures) == [2, 3]
    assert calls.count(2 * stride) == 3 and calls.count(0) == 1
    assert not io.dataset_exists(out, "fragments")  # nothing half-done looks complete
    records = CompletionRecords(out / ".xpress_fast" / "records")
    assert [records.done("fragments", i) for i in range(8)] == [True, True, False, False, True, True, True, True]
    # resume: only the failed blocks run again; the result equals the uninterrupted run
    monkeypatch.undo()
    calls.clear()
    _flaky_watershed(monkeypatch, set(), 0, calls)
    res = segment_volume(d / "affs.zarr", "affs", out, retries=2, **kw)
    assert sorted(calls) == [2 * stride, 3 * stride]
    assert res.reports[0].skipped == 6 and res.reports[0].completed == 2
    for name in ["fragments"] + [segmentation_dataset(t) for t in THRESHOLDS]:
        np.testing.assert_array_equal(io.read_volume(out, name).data, io.read_volume(ref, name).data)
    # a finished run run again does nothing
    calls.clear()
    res = segment_volume(d / "affs.zarr", "affs", out, retries=2, **kw)
    assert calls == [] and res.reports == ()
    # ... and the resumed fragments are exactly the in-memory block-wise ones
    want = blockwise_watershed(volume["affs"], block_shape=(18, 20, 22), context=(3, 3, 3), min_seed_distance=4)
    np.testing.assert_array_equal(io.read_volume(out, "fragments").data.astype(np.uint64), want)


def test_resume_refuses_other_settings(volume, tmp_path):
    d = volume["dir"]
    out = tmp_path / "o.zarr"
    segment_volume(d / "affs.zarr", "affs", out, thresholds=[0.5], block_shape=(20, 20, 20), fragments_only=True)
    with pytest.raises(ValueError, match=r"holds a run with other settings \(block_shape\)"):
        segment_volume(d / "affs.zarr", "affs", out, thresholds=[0.5], block_shape=(16, 20, 20))


def test_sync_and_distributed_schedulers(volume, tmp_path):
    distributed = pytest.importorskip("distributed")
    d = volume["dir"]
    kw = dict(thresholds=[0.5], block_shape=(18, 20, 22), fragments=(d / "frags.h5", "fragments"))
    segment_volume(d / "affs.zarr", "affs", tmp_path / "s.zarr", scheduler="sync", **kw)
    want = io.read_volume(tmp_path / "s.zarr", "segmentation_0.5").data
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        segment_volume(d / "affs.zarr", "affs", tmp_path / "d.zarr", scheduler=cluster.scheduler_address, **kw)
    np.testing.assert_array_equal(io.read_volume(tmp_path / "d.zarr", "segmentation_0.5").data, want)


def test_run_blocks_rejects_bad_retries(tmp_path):
    with pytest.raises(ValueError, match="retries must be a non-negative integer"):
        run_blocks("x", [], lambda b: {}, records=CompletionRecords(tmp_path), retries=-1)


def test_unreachable_scheduler(volume, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr("xpress_fast.pipeline.runner.CONNECT_TIMEOUT", "1s")
    d = volume["dir"]
    with pytest.raises(ValueError, match="cannot connect to the dask scheduler"):
        segment_volume(d / "affs.zarr", "affs", tmp_path / "o.zarr", thresholds=[0.5],
                       scheduler="tcp://127.0.0.1:1", fragments_only=True)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"out": "o.h5"}, ValueError, "out must be a zarr container"),
        ({"thresholds": [0.5, 0.2]}, ValueError, "strictly increasing"),
        ({"thresholds": [1.5]}, ValueError, r"thresholds must be numbers in \[0, 1\]; got 1.5"),
        ({"merge_function": "median"}, ValueError, "merge_function must be one of"),
        ({"context": (1, 2)}, ValueError, "context must be three"),
        ({"context": (4, -1, 4)}, ValueError, "context must be three integers >= 0"),
        ({"block_shape": (16, 0, 16)}, ValueError, "block_shape must be three positive integers"),
        ({"block_shape": (16, 16)}, ValueError, "block_shape must be three positive integers"),
        ({"watershed_options": {"id_offset": 3}}, ValueError, "must not set id_offset"),
        ({"watershed_options": {"block_shape": (8, 8, 8)}}, ValueError, "must not set block_shape"),
        ({"dataset": "nope"}, ValueError, "dataset 'nope' not found"),
        ({"fragments_shape": (36, 40, 43)}, ValueError, "fragments has shape"),
        ({"affs_shape": (36, 40, 44)}, ValueError, r"affinities must be 4-dimensional \(C, Z, Y, X\)"),
        ({"affs_dtype": np.float64}, TypeError, "float32 or uint8"),
        ({"workers": 0}, ValueError, "workers must be a positive integer"),
        ({"retries": -1}, ValueError, "retries must be a non-negative integer"),
        ({"scheduler": ""}, ValueError, "scheduler must be"),
    ],
)
def test_bad_input(volume, tmp_path, kwargs, exc, match):
    d = volume["dir"]
    affs, dataset = d / "affs.zarr", kwargs.pop("dataset", "affs")
    if "fragments_shape" in kwargs:
        io.write_volume(tmp_path / "f.h5", "f", np.ones(kwargs.pop("fragments_shape"), np.uint64),
                        voxel_size=volume["vol"].voxel_size)
        kwargs["fragments"] = (tmp_path / "f.h5", "f")
    if "affs_shape" in kwargs:
        affs = tmp_path / "a.h5"
        io.write_volume(affs, "affs", np.zeros(kwargs.pop("affs_shape"), np.float32), voxel_size=(1, 1, 1))
    if "affs_dtype" in kwargs:
        affs = tmp_path / "a.h5"
        io.write_volume(affs, "affs", volume["affs"].astype(kwargs.pop("affs_dtype")), voxel_size=(1, 1, 1))
    out = tmp_path / kwargs.pop("out", "o.zarr")
    kwargs.setdefault("thresholds", [0.5])
    with pytest.raises(exc, match=match):
        segment_volume(affs, dataset, out, **kwargs)


def test_write_thresholds_subset_and_none(volume, tmp_path):
    d = volume["dir"]
    out = tmp_path / "o.zarr"
    kw = dict(thresholds=THRESHOLDS, block_shape=(18, 20, 22), fragments=(d / "frags.h5", "fragments"))
    res = segment_volume(d / "affs.zarr", "affs", out, write_thresholds=[], **kw)
    assert res.segmentation_datasets == ()
    assert not any(io.dataset_exists(out, segmentation_dataset(t)) for t in THRESHOLDS)
    agg = load_agglomeration(out)
    want = xpress_fast.merge_history(volume["affs"], THRESHOLDS, fragments=volume["fragments"])
    for t in THRESHOLDS:  # every threshold is available from the saved merge history
        np.testing.assert_array_equal(agg.map(volume["fragments"], t), want.segmentation(t))
    res = segment_volume(d / "affs.zarr", "affs", out, write_thresholds=[0.5], **kw)
    assert res.segmentation_datasets == ("segmentation_0.5",)
    np.testing.assert_array_equal(io.read_volume(out, "segmentation_0.5").data, want.segmentation(0.5))
    res = segment_volume(d / "affs.zarr", "affs", out, **kw)  # the others, resumed from the saved graph
    assert [r.stage for r in res.reports] == [next(r.stage for r in res.reports)] and len(res.reports) == 1
    np.testing.assert_array_equal(io.read_volume(out, "segmentation_0.2").data, want.segmentation(0.2))
    with pytest.raises(ValueError, match=r"write_thresholds must be among thresholds .* got segmentation_0.3"):
        segment_volume(d / "affs.zarr", "affs", out, write_thresholds=[0.3], **kw)
