"""A rerun or a resumed block-wise run never mixes an old input with a new one.

Each run records a fingerprint of its inputs (shape, dtype, chunks, the store's modification
data) with its settings; a rerun on a changed input is refused (or restarts afresh with
``restart=True``), an input changed during a run is noticed before anything is published, and
a run killed at any point, resumed on a changed input, either refuses or gives exactly what a
fresh run on the new input gives. Failed atomic writes leave no temporary files.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from xpress_fast import io
from xpress_fast.pipeline import RunChanged, segment_volume, segmentation_dataset
import xpress_fast as xf

PYTHON_DIR = Path(xf.__file__).resolve().parents[1]  # where this xpress_fast (built) is imported from
THRESHOLDS = [0.3, 0.6]
OPTIONS = dict(thresholds=THRESHOLDS, block_shape=(12, 12, 12), watershed_options={"min_seed_distance": 3},
               scheduler="sync")


def _affs(seed, shape=(24, 24, 24)):
    """Affinities of random boxes: a different seed gives a different segmentation."""
    from xpress_fast.synthetic import make_volume

    labels = make_volume(shape, seed=seed).labels
    a = np.zeros((3,) + shape, np.float32)
    a[0, 1:] = labels[1:] == labels[:-1]
    a[1, :, 1:] = labels[:, 1:] == labels[:, :-1]
    a[2, :, :, 1:] = labels[:, :, 1:] == labels[:, :, :-1]
    noise = np.random.default_rng(seed).random(a.shape, dtype=np.float32)
    return (0.7 * a + 0.3 * noise).astype(np.float32)


def _rewrite_in_place(path, affs):
    z = zarr.open_array(str(Path(path) / "affs"), mode="r+")
    z[...] = affs


def _outputs(out):
    names = ["fragments"] + [segmentation_dataset(t) for t in THRESHOLDS]
    return {n: io.read_volume(out, n).data for n in names}


def _fresh(tmp_path, affs, name="fresh"):
    src = tmp_path / f"{name}-affs.zarr"
    io.write_volume(src, "affs", affs, voxel_size=(1, 1, 1))
    segment_volume(src, "affs", tmp_path / f"{name}.zarr", **OPTIONS)
    return _outputs(tmp_path / f"{name}.zarr")


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.fixture()
def run(tmp_path):
    src, out = tmp_path / "affs.zarr", tmp_path / "out.zarr"
    io.write_volume(src, "affs", _affs(1), voxel_size=(1, 1, 1))
    return src, out


def test_rerun_unchanged_does_nothing_and_says_so(run):
    src, out = run
    first = segment_volume(src, "affs", out, **OPTIONS)
    assert not first.up_to_date and first.n_blocks == 8
    again = segment_volume(src, "affs", out, **OPTIONS)
    assert again.up_to_date


def test_rerun_on_a_rewritten_input_is_refused_then_restarts(run, tmp_path):
    src, out = run
    segment_volume(src, "affs", out, **OPTIONS)
    _rewrite_in_place(src, _affs(2))
    with pytest.raises(RunChanged, match=r"made from other inputs: affinities changed") as info:
        segment_volume(src, "affs", out, **OPTIONS)
    assert info.value.changed == ["inputs.affinities"]
    res = segment_volume(src, "affs", out, restart=True, **OPTIONS)
    assert not res.up_to_date
    _assert_same(_outputs(out), _fresh(tmp_path, _affs(2)))


def test_other_settings_restart_keeps_the_input_in_the_same_container(tmp_path):
    """The output container may also hold the affinities: a restart deletes only the run's own outputs."""
    out = tmp_path / "both.zarr"
    io.write_volume(out, "affs", _affs(1), voxel_size=(1, 1, 1))
    segment_volume(out, "affs", out, **OPTIONS)
    with pytest.raises(RunChanged, match=r"other settings \(thresholds\)"):
        segment_volume(out, "affs", out, **{**OPTIONS, "thresholds": [0.5]})
    res = segment_volume(out, "affs", out, restart=True, **{**OPTIONS, "thresholds": [0.5]})
    assert res.segmentation_datasets == ("segmentation_0.5",)
    assert not (out / "segmentation_0.3").exists()
    np.testing.assert_array_equal(io.read_volume(out, "affs").data, _affs(1))


def test_an_input_changed_during_the_run_is_never_published(run):
    src, out = run

    class Bar:  # the progress bar of the fragments stage rewrites the input after the first block
        def __init__(self, total, desc_):
            self.desc = desc_

        def update(self, n):
            if self.desc == "fragments":
                _rewrite_in_place(src, _affs(2))
                self.desc = None

        def close(self):
            pass

    with pytest.raises(RunChanged, match="changed while the run was going on"):
        segment_volume(src, "affs", out, progress=Bar, **OPTIONS)
    assert not (out / "fragments").exists()
    with pytest.raises(RunChanged, match="made from other inputs"):
        segment_volume(src, "affs", out, **OPTIONS)


def test_a_damaged_settings_file_is_refused(run):
    src, out = run
    segment_volume(src, "affs", out, **OPTIONS)
    (out / ".xpress_fast" / "run.json").write_text("{not json")
    with pytest.raises(RunChanged, match="damaged"):
        segment_volume(src, "affs", out, **OPTIONS)


def test_a_failed_save_leaves_no_temporary(tmp_path, monkeypatch):
    def full(file, **arrays):
        with open(file, "wb") as fh:
            fh.write(b"PK partial")
        raise OSError(28, "No space left on device")

    graph = xf.region_graph(np.ones((2, 2, 2), np.uint64), np.ones((3, 2, 2, 2), np.float32))
    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space"):
        xf.save_region_graph(graph, tmp_path / "graph.npz")
    fragments = np.arange(1, 9, dtype=np.uint64).reshape(2, 2, 2)
    agg = xf.merge_history(np.ones((3, 2, 2, 2), np.float32), [0.5], fragments=fragments)
    with pytest.raises(OSError, match="No space"):
        xf.save_agglomeration(agg, tmp_path / "agg.npz")
    assert sorted(os.listdir(tmp_path)) == []


def test_temporaries_of_a_killed_run_are_removed_by_the_next_successful_run(run):
    src, out = run
    graphs = out / ".xpress_fast" / "graphs"
    graphs.mkdir(parents=True)
    stale = [graphs / ".0.npz.deadbeef.tmp.npz", out / ".xpress_fast" / ".run.json.cafe0123.tmp"]
    for p in stale:
        p.write_bytes(b"x" * 100)
        os.utime(p, (time.time() - 60, time.time() - 60))
    segment_volume(src, "affs", out, **OPTIONS)
    assert not any(p.exists() for p in stale)


CHILD = """
import sys
from xpress_fast.pipeline import segment_volume
segment_volume(sys.argv[1], "affs", sys.argv[2], thresholds={thresholds}, block_shape=(12, 12, 12),
               watershed_options={{"min_seed_distance": 3}}, scheduler="sync")
"""


def _child_duration(tmp_path, env):
    src, out = tmp_path / "probe-affs.zarr", tmp_path / "probe.zarr"
    io.write_volume(src, "affs", _affs(1), voxel_size=(1, 1, 1))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD.format(thresholds=THRESHOLDS), str(src), str(out)], env=env,
                   check=True, timeout=120)
    return time.perf_counter() - t0


def test_killed_resumed_on_a_changed_input_refuses_or_equals_a_fresh_run(tmp_path):
    """SIGKILL a block-wise run at random moments, rewrite its input, resume."""
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    duration = _child_duration(tmp_path, env)
    fresh = _fresh(tmp_path, _affs(2))
    rng = np.random.default_rng(13)
    outcomes = []
    for k, delay in enumerate(rng.uniform(0.3, 1.0, size=4) * duration):
        src, out = tmp_path / f"affs{k}.zarr", tmp_path / f"out{k}.zarr"
        io.write_volume(src, "affs", _affs(1), voxel_size=(1, 1, 1))
        child = subprocess.Popen([sys.executable, "-c", CHILD.format(thresholds=THRESHOLDS), str(src), str(out)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        _rewrite_in_place(src, _affs(2))
        try:
            segment_volume(src, "affs", out, **OPTIONS)
            outcomes.append("ran")
        except RunChanged:
            outcomes.append("refused")
            segment_volume(src, "affs", out, restart=True, **OPTIONS)
        _assert_same(_outputs(out), fresh)  # either way: exactly the new input's result
    assert "refused" in outcomes  # a kill after the run began must be noticed
