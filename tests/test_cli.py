"""The command line: evaluate, check-submission, submit, config files, errors and exit codes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xpress_fast
from xpress_fast import io
from xpress_fast.cli import build_parser, main
from xpress_fast.metrics import xpress_scores
from xpress_fast.rois import TEST_ROI
from xpress_fast.skeletons import Skeletons, save_skeletons

# where this (built) xpress_fast is imported from: site-packages when installed, python/ in a
# checkout; the source tree holds no compiled modules when the package is installed
PYTHON_DIR = Path(xpress_fast.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A small label volume with skeletons running through its objects."""
    from xpress_fast.synthetic import make_volume

    d = tmp_path_factory.mktemp("cli")
    vol = make_volume((32, 32, 32), seed=3)
    seg = d / "seg.h5"
    io.write_volume(seg, "labels", vol.labels, voxel_size=vol.voxel_size, offset=vol.offset)
    skel = d / "skeletons.npz"
    save_skeletons(vol.skeletons, skel, fmt="arrays")
    return {"dir": d, "seg": seg, "skel": skel, "vol": vol}


def test_evaluate_json_matches_api(case, capsys):
    rc = main(["evaluate", str(case["seg"]), "--dataset", "labels", "--skeletons", str(case["skel"]), "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    vol = case["vol"]
    want = xpress_scores(vol.labels, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset).as_dict()
    assert got["n_neurons"] == want["n_neurons"] > 0
    for k, v in want.items():
        if isinstance(v, float) and np.isnan(v):
            assert got[k] is None
        else:
            assert got[k] == pytest.approx(v, rel=1e-12), k
    # the ground truth labels score (nearly) perfectly on ERL
    assert got["nerl"] > 0.9


def test_evaluate_text_and_corrected_mode(case, capsys):
    rc = main(["evaluate", str(case["seg"]), "--dataset", "labels", "--skeletons", str(case["skel"]),
               "--scoring", "corrected"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "corrected mode" in out and "xpress_erl_rand" in out


def test_evaluate_custom_roi_and_overrides(case, capsys):
    vol = case["vol"]
    begin = tuple(float(o + 4 * v) for o, v in zip(vol.offset, vol.voxel_size))
    shape = tuple(float(20 * v) for v in vol.voxel_size)
    rc = main(["evaluate", str(case["seg"]), "--dataset", "labels", "--skeletons", str(case["skel"]), "--json",
               "--roi-begin", ",".join(map(str, begin)), "--roi-shape", ",".join(map(str, shape))])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    want = xpress_scores(vol.labels, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset,
                         roi_begin=begin, roi_shape=shape)
    assert got["n_neurons"] == want.n_neurons


@pytest.mark.parametrize(
    "argv, match",
    [
        (["evaluate", "{d}/none.h5", "--skeletons", "{skel}"], "no such HDF5 file"),
        (["evaluate", "{seg}", "--dataset", "nope", "--skeletons", "{skel}"], "dataset 'nope' not found"),
        (["evaluate", "{seg}", "--dataset", "labels", "--skeletons", "{d}/none.npz"], "skeletons file not found"),
        (["evaluate", "{seg}", "--dataset", "labels", "--skeletons", "{seg}"], "not a valid skeleton file"),
        (["evaluate", "{seg}", "--dataset", "labels", "--skeletons", "{skel}", "--mode", "test"], "ROI"),
        (["evaluate", "{seg}", "--dataset", "labels", "--skeletons", "{skel}", "--roi-begin", "0,0,0"],
         "--roi-begin and --roi-shape must be given together"),
        (["submit", "{seg}", "--dataset", "labels", "--out", "{d}/s.h5"], "outside the volume"),
        (["check-submission", "{seg}", "--config", "{d}/none.json"], "config file not found"),
    ],
)
def test_user_errors_exit_2_with_message(case, capsys, argv, match):
    argv = [a.format(d=case["dir"], seg=case["seg"], skel=case["skel"]) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpress-fast {argv[0]}: error:")
    assert match in err
    assert "Traceback" not in err
    assert not (case["dir"] / "s.h5").exists()


def test_argparse_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "x.h5", "--skeletons", "s.npz", "--voxel-size", "1,2"])
    assert e.value.code == 2
    assert "three numbers" in capsys.readouterr().err
    assert main([]) == 2


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == {"demo", "train", "predict", "segment", "sweep", "evaluate", "submit",
                                "check-submission", "view"}
    for name, sp in sub.choices.items():
        assert sp.description, name
        for action in sp._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


# Options whose meaning is the command's own (what --out writes, which thresholds, how many
# merge functions, which training length, what --json prints, whether --block-shape is optional)
COMMAND_OWN = {"--out", "--thresholds", "--merge-function", "--iterations", "--json", "--block-shape", "--dataset"}
# view's --skeletons and --raw say what to show (defaults found in the outputs), not an input
VIEW_OWN = {"--skeletons", "--raw"}


def test_an_option_means_the_same_in_every_command():
    """An option that several commands take is defined once: the same help, type and default."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    seen: dict = {}
    for name, sp in sub.choices.items():
        for action in sp._actions:
            flag = max(action.option_strings, key=len, default=None)
            if flag is None or flag in COMMAND_OWN or (name == "view" and flag in VIEW_OWN):
                continue
            what = (action.help, action.type, action.default, action.choices, action.metavar)
            first = seen.setdefault(flag, (name, what))
            assert first[1] == what, f"{flag} differs between {first[0]} and {name}"
    assert {"--raw", "--raw-dataset", "--fragments", "--skeletons", "--context", "--min-seed-distance",
            "--device", "--seed", "--scheduler", "--long-range", "--scoring"} <= set(seen)


def _full_seg(tmp_path):
    """A 1200^3-at-33-nm-equivalent segmentation, stored as the 334^3 crop at 99 nm offset by the
    ROI (what a user's segmentation of the test ROI at 99 nm looks like)."""
    rng = np.random.default_rng(0)
    seg = np.repeat(rng.integers(1, 1000, size=(334, 334, 1), dtype=np.uint64), 334, axis=2)
    p = tmp_path / "seg99.h5"
    io.write_volume(p, "segmentation", seg, voxel_size=(99, 99, 99), offset=TEST_ROI.begin, compression=None)
    return p, seg


def test_submit_then_check_then_evaluate_round_trip(tmp_path, capsys):
    p, seg = _full_seg(tmp_path)
    out = tmp_path / "submission.h5"
    assert main(["submit", str(p), "--out", str(out)]) == 0
    assert "format check: OK" in capsys.readouterr().out
    assert main(["check-submission", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["shape"] == [334, 334, 334]
    sub = io.open_volume(out, "submission")
    assert sub.voxel_size == (99.0,) * 3 and sub.offset == tuple(map(float, TEST_ROI.begin))
    np.testing.assert_array_equal(sub.data[::37], seg[::37])
    # skeletons inside the test ROI: two straight lines along x in two different rows
    b = np.asarray(TEST_ROI.begin, dtype=float)
    pos = np.array([b + [99 * 10 + 5, 99 * 20 + 5, 99 * (10 + 4 * k) + 5] for k in range(6)]
                   + [b + [99 * 30 + 5, 99 * 40 + 5, 99 * (10 + 4 * k) + 5] for k in range(6)])
    edges = np.array([[k, k + 1] for k in range(5)] + [[6 + k, 7 + k] for k in range(5)])
    skel = tmp_path / "sk.npz"
    save_skeletons(Skeletons(pos, edges), skel, fmt="arrays")
    assert main(["evaluate", str(out), "--skeletons", str(skel), "--mode", "test", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = xpress_scores(seg, Skeletons(pos, edges), voxel_size=(99,) * 3, offset=TEST_ROI.begin,
                         roi_begin=TEST_ROI.begin, roi_shape=TEST_ROI.shape)
    assert got["n_neurons"] == 2 and got["split_count"] == 0
    assert got["nerl"] == pytest.approx(want.nerl)


def test_check_submission_bad_file_exits_1(tmp_path, capsys):
    p = tmp_path / "s.h5"
    io.write_volume(p, "submission", np.ones((4, 4, 4), np.uint64), voxel_size=(99, 99, 99))
    assert main(["check-submission", str(p)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "shape must be (334, 334, 334)" in out


@pytest.mark.parametrize("fmt", ["json", "toml"])
def test_config_file_supplies_options_and_flags_win(case, tmp_path, capsys, fmt):
    if fmt == "json":
        cfg = tmp_path / "c.json"
        cfg.write_text(json.dumps({"evaluate": {"dataset": "labels", "skeletons": str(case["skel"]),
                                                "scoring": "corrected", "json": True}}))
    else:
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[evaluate]\ndataset = "labels"\nskeletons = "{case["skel"]}"\n'
                       'scoring = "corrected"\njson = true\n')
    assert main(["evaluate", str(case["seg"]), "--config", str(cfg)]) == 0
    d1 = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(case["seg"]), "--config", str(cfg), "--scoring", "official"]) == 0
    d2 = json.loads(capsys.readouterr().out)
    vol = case["vol"]
    for mode, d in (("corrected", d1), ("official", d2)):
        want = xpress_scores(vol.labels, vol.skeletons, voxel_size=vol.voxel_size, mode=mode)
        assert d["n_neurons"] == want.n_neurons


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"evaluate": {"bogus": 1}}', "unknown option 'bogus'"),
        ("{not json", "could not be parsed"),
        ("[1, 2]", "must hold a table"),
    ],
)
def test_bad_config_files(case, tmp_path, capsys, content, match):
    cfg = tmp_path / "c.json"
    cfg.write_text(content)
    assert main(["evaluate", str(case["seg"]), "--skeletons", str(case["skel"]), "--config", str(cfg)]) == 2
    assert match in capsys.readouterr().err


def test_python_dash_m_subprocess_smoke(case):
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "xpress_fast", "check-submission", str(case["seg"])],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and "no dataset 'submission'" in r.stdout
    r = subprocess.run([sys.executable, "-m", "xpress_fast", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "demo" in r.stdout


@pytest.mark.skipif(shutil.which("xpress-fast") is None, reason="console script not installed")
def test_installed_console_script():
    r = subprocess.run(["xpress-fast", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "xpress-fast" in r.stdout


# --- the chain: segment -> sweep -> evaluate, and train -> predict ----------------------------------


def _noisy_affs(labels, seed=0, noise=0.4):
    a = np.zeros((3,) + labels.shape, np.float32)
    a[0, 1:] = (labels[1:] == labels[:-1]) & (labels[1:] > 0)
    a[1, :, 1:] = (labels[:, 1:] == labels[:, :-1]) & (labels[:, 1:] > 0)
    a[2, :, :, 1:] = (labels[:, :, 1:] == labels[:, :, :-1]) & (labels[:, :, 1:] > 0)
    rng = np.random.default_rng(seed)
    return np.clip((1 - noise) * a + noise * rng.random(a.shape, dtype=np.float32), 0, 1).astype(np.float32)


def test_chain_segment_sweep_evaluate_beats_trivial(case, tmp_path, capsys):
    from xpress_fast.pipeline.demo import trivial_scores

    vol = case["vol"]
    affs = tmp_path / "affs.h5"
    io.write_volume(affs, "affinities", _noisy_affs(vol.labels), voxel_size=vol.voxel_size, offset=vol.offset)
    out = tmp_path / "seg.zarr"
    argv = ["segment", str(affs), "--out", str(out), "--thresholds", "0.3,0.5,0.7", "--block-shape", "16,16,16",
            "--min-seed-distance", "4", "-q"]
    assert main(argv) == 0
    assert "8 blocks" in capsys.readouterr().out
    assert main(argv) == 0  # a finished run: everything resumed from records
    assert "nothing to do" in capsys.readouterr().out
    assert main(["sweep", "--segmented", str(out), "--skeletons", str(case["skel"]), "--json",
                 "--out", str(tmp_path / "rep")]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["threshold"] for r in rows] == [0.3, 0.5, 0.7]
    assert (tmp_path / "rep" / "scores.csv").read_text().count("\n") == 4
    assert (tmp_path / "rep" / "scores.png").read_bytes()[:4] == b"\x89PNG"
    best = max(rows, key=lambda r: r["xpress_erl_rand"])
    assert main(["evaluate", str(out), "--dataset", f"segmentation_{best['threshold']:g}", "--skeletons",
                 str(case["skel"]), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["xpress_erl_rand"] == pytest.approx(best["xpress_erl_rand"])
    trivial = trivial_scores(vol.skeletons, vol.labels.shape, voxel_size=vol.voxel_size, offset=vol.offset)
    assert got["xpress_erl_rand"] > max(trivial.values()) + 0.2
    # the in-memory sweep over the same affinities gives a table too
    assert main(["sweep", str(affs), "--skeletons", str(case["skel"]), "--thresholds", "0.5",
                 "--min-seed-distance", "4"]) == 0
    assert "best: agglomerate mean at threshold 0.500" in capsys.readouterr().out
    # ... and with the segment run's blocks, exactly the segment run's scores
    assert main(["sweep", str(affs), "--skeletons", str(case["skel"]), "--thresholds", "0.3,0.5,0.7",
                 "--min-seed-distance", "4", "--block-shape", "16,16,16", "--json"]) == 0
    in_memory = json.loads(capsys.readouterr().out)
    assert [r.pop("method") for r in in_memory] == ["agglomerate"] * 3
    assert [r.pop("method") for r in rows] == ["segment-run"] * 3
    assert in_memory == rows


def test_sweep_methods_writes_a_choice_that_segment_reproduces(case, tmp_path, capsys):
    """sweep scores merge functions x thresholds (+ long-range, mutex) in one run; segment
    --choice then makes exactly the best row's segmentation."""
    from xpress_fast.mutex import mutex_watershed
    from xpress_fast.region_graphs import axis_offsets

    vol = case["vol"]
    nn = _noisy_affs(vol.labels, seed=1, noise=0.6)
    rng = np.random.default_rng(2)
    long_range = [np.clip(0.5 * nn[c % 3] + 0.5 * rng.random(nn.shape[1:], dtype=np.float32), 0, 1)
                  for c in range(6)]
    affs = tmp_path / "affs9.zarr"
    io.write_volume(affs, "affinities", np.concatenate([nn, np.stack(long_range)]).astype(np.float32),
                    voxel_size=vol.voxel_size, offset=vol.offset)
    choice = tmp_path / "choice.json"
    assert main(["sweep", str(affs), "--skeletons", str(case["skel"]), "--merge-function", "hist_quant_50", "mean",
                 "--long-range", "3,9", "--mutex-biases", "0.5", "--thresholds", "0.2,0.4,0.6",
                 "--min-seed-distance", "4", "--json", "--write-choice", str(choice)]) == 0
    rows = json.loads(capsys.readouterr().out)
    methods = [(r["method"], r["merge_function"]) for r in rows]
    assert methods == ([("agglomerate", "hist_quant_50")] * 3 + [("agglomerate", "mean")] * 3
                       + [("agglomerate-longrange", "hist_quant_50")] * 3 + [("agglomerate-longrange", "mean")] * 3
                       + [("mutex", None)])
    chosen = json.loads(choice.read_text())
    best = max((r for r in rows if r["method"] != "mutex"), key=lambda r: r["xpress_erl_rand"])
    if chosen["method"] != "mutex":
        assert chosen["xpress_erl_rand"] == pytest.approx(best["xpress_erl_rand"])
    uses = chosen["method"] != "agglomerate"
    assert chosen["offsets"] == ([list(o) for o in axis_offsets((3, 9))] if uses else None)
    out = tmp_path / "seg.zarr"
    assert main(["segment", str(affs), "--out", str(out), "--choice", str(choice), "--min-seed-distance", "4",
                 "--block-shape", "64,64,64", "-q"]) == 0
    capsys.readouterr()
    dataset = f"segmentation_{chosen['threshold']:g}"
    assert main(["evaluate", str(out), "--dataset", dataset, "--skeletons", str(case["skel"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["xpress_erl_rand"] == pytest.approx(chosen["xpress_erl_rand"])
    assert axis_offsets((3, 9))[3:] == [(-3, 0, 0), (0, -3, 0), (0, 0, -3), (-9, 0, 0), (0, -9, 0), (0, 0, -9)]
    # the mutex watershed from the command line: one segmentation per bias, as the API makes it
    mutex_out = tmp_path / "mutex.zarr"
    assert main(["segment", str(affs), "--out", str(mutex_out), "--method", "mutex", "--long-range", "3,9",
                 "--thresholds", "0.5", "-q"]) == 0
    capsys.readouterr()
    want = mutex_watershed(io.read_volume(affs, "affinities").data, axis_offsets((3, 9)), bias=0.5)
    np.testing.assert_array_equal(io.read_volume(mutex_out, "segmentation_0.5").data, want)
    mutex_row = [r for r in rows if r["method"] == "mutex"][0]
    assert main(["evaluate", str(mutex_out), "--dataset", "segmentation_0.5", "--skeletons", str(case["skel"]),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["xpress_erl_rand"] == pytest.approx(mutex_row["xpress_erl_rand"])
    assert main(["segment", str(affs), "--out", str(tmp_path / "m2.zarr"), "--method", "mutex", "-q"]) == 2
    assert "--method mutex needs --long-range" in capsys.readouterr().err
    # never over another run's output (a resumed 'segment' would take the mutex volume as its own)
    assert main(["segment", str(affs), "--out", str(mutex_out), "--method", "mutex", "--long-range", "3,9",
                 "--thresholds", "0.5", "-q"]) == 2
    assert "give --method mutex an output of its own" in capsys.readouterr().err
    assert main(["segment", str(affs), "--out", str(out), "--method", "mutex", "--long-range", "3,9",
                 "--thresholds", "0.7", "-q"]) == 2
    assert "already holds a 'segment' run" in capsys.readouterr().err
    # a choice from a finished run's own sweep carries that run's settings
    run_choice = tmp_path / "run_choice.json"
    assert main(["sweep", "--segmented", str(out), "--skeletons", str(case["skel"]), "--write-choice",
                 str(run_choice), "-q"]) == 0
    capsys.readouterr()
    got = json.loads(run_choice.read_text())
    assert got["method"] == "segment-run" and got["inside_threshold"] == 0.5
    assert got["offsets"] == chosen["offsets"] and got["uses_offsets"] == uses


def test_segment_block_failure_exits_1(case, tmp_path, capsys, monkeypatch):
    vol = case["vol"]
    affs = tmp_path / "affs.zarr"
    io.write_volume(affs, "affinities", _noisy_affs(vol.labels), voxel_size=vol.voxel_size)
    module = sys.modules["xpress_fast.fragments"]

    def broken(*a, **k):
        raise MemoryError("simulated")

    monkeypatch.setattr(module, "watershed", broken)
    assert main(["segment", str(affs), "--out", str(tmp_path / "o.zarr"), "--block-shape", "16,32,32",
                 "--retries", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert "2 of 2 blocks failed after their retries" in err and "run the same command again" in err


def test_segment_sweep_user_errors(case, tmp_path, capsys):
    assert main(["segment", str(case["seg"]), "--affinities-dataset", "labels", "--out", str(tmp_path / "o.zarr")]) == 2
    assert "(C, Z, Y, X)" in capsys.readouterr().err
    assert main(["sweep", "--skeletons", str(case["skel"])]) == 2
    assert "sweep needs AFFS" in capsys.readouterr().err
    assert main(["sweep", "--segmented", str(tmp_path / "none.zarr"), "--skeletons", str(case["skel"])]) == 2
    assert "no finished agglomeration" in capsys.readouterr().err
    assert main(["sweep", str(case["seg"]), "--affinities-dataset", "labels", "--skeletons", str(case["skel"]),
                 "--mutex-biases", "0.5"]) == 2
    assert "--mutex-biases needs --long-range" in capsys.readouterr().err
    # the graph options: a clear error before anything is written
    affs = tmp_path / "affs.zarr"
    io.write_volume(affs, "affinities", _noisy_affs(case["vol"].labels), voxel_size=case["vol"].voxel_size)
    assert main(["segment", str(affs), "--out", str(tmp_path / "o5.zarr"), "--inside-threshold", "2"]) == 2
    assert "inside_threshold must be None or a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o5.zarr").exists()
    with pytest.raises(SystemExit):
        main(["segment", str(affs), "--out", str(tmp_path / "o6.zarr"), "--long-range", "0"])
    assert "expected positive integers like '3,9'" in capsys.readouterr().err
    assert main(["segment", str(affs), "--out", str(tmp_path / "o7.zarr"), "--long-range", "3"]) == 2
    assert "affs has 3 channels, offsets has 6" in capsys.readouterr().err
    assert not (tmp_path / "o7.zarr").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["segment", str(case["seg"]), "--out", str(tmp_path / "o.zarr"), "--choice", str(bad)]) == 2
    assert "not a choice written by 'sweep --write-choice'" in capsys.readouterr().err


def test_train_then_predict(case, tmp_path, capsys):
    pytest.importorskip("torch")
    vol = case["vol"]
    data = tmp_path / "data.h5"
    io.write_volume(data, "raw", vol.raw, voxel_size=vol.voxel_size)
    io.write_volume(data, "labels", vol.labels, voxel_size=vol.voxel_size)
    assert main(["train", "--raw", str(data), "--labels", str(data), "--out", str(tmp_path / "model"),
                 "--iterations", "2", "--preset", "tiny", "--device", "cpu", "-q"]) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out
    ckpt = sorted((tmp_path / "model").glob("*.pt"))[-1]
    for target in ("affs.zarr", "affs.h5"):
        assert main(["predict", "--raw", str(data), "--model", str(ckpt), "--out", str(tmp_path / target),
                     "--uint8", "--device", "cpu", "-q"]) == 0
        v = io.read_volume(tmp_path / target, "affinities")
        assert v.data.dtype == np.uint8 and v.data.shape[1:] == vol.raw.shape and v.data.shape[0] >= 3
    assert main(["predict", "--raw", str(data), "--model", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "x.h5")]) == 2
    assert "model file not found" in capsys.readouterr().err
    assert main(["train", "--raw", str(data), "--out", str(tmp_path / "m2")]) == 2
    assert "needs --labels or --skeletons" in capsys.readouterr().err


def test_unwritable_or_full_output_exit_2_nothing_left(case, tmp_path, capsys, monkeypatch):
    vol = case["vol"]
    affs = tmp_path / "affs.h5"
    io.write_volume(affs, "affinities", _noisy_affs(vol.labels), voxel_size=vol.voxel_size)
    assert main(["segment", str(affs), "--out", str(tmp_path / "no" / "such" / "dir" / "o.h5")]) == 2
    assert "out must be a zarr container" in capsys.readouterr().err

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    rep = tmp_path / "rep"
    monkeypatch.setattr(os, "replace", full)
    assert main(["sweep", str(affs), "--skeletons", str(case["skel"]), "--thresholds", "0.5", "--out", str(rep),
                 "--min-seed-distance", "4"]) == 2
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert list(rep.iterdir()) == []  # no temporary or half-written file left


def test_hostile_skeleton_file_exits_2_with_one_line(case, tmp_path, capsys):
    """A 1 KB archive whose .npy header declares 24 TB of positions: refused before allocating,
    as bad input (exit 2, one line naming the file), not a MemoryError traceback."""
    import io as _io
    import zipfile

    header = _io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"shape": (10**12, 3), "fortran_order": False, "descr": "<f8"})
    hostile = tmp_path / "hostile.npz"
    with zipfile.ZipFile(hostile, "w") as zf:
        zf.writestr("positions_zyx.npy", header.getvalue() + bytes(48))
        edges = _io.BytesIO()
        np.save(edges, np.zeros((0, 2), np.int64))
        zf.writestr("edges.npy", edges.getvalue())
    assert hostile.stat().st_size < 1024
    assert main(["evaluate", str(case["seg"]), "--dataset", "labels", "--skeletons", str(hostile)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpress-fast evaluate: error:") and "hostile.npz" in err
    assert "declares shape (1000000000000, 3)" in err
    assert err.count("\n") == 1 and "Traceback" not in err
