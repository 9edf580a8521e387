"""`evaluate` on several segmentations (skeletons prepared once), and the warnings a user would want:
nodes outside a segmentation smaller than the skeletons, a --voxel-size that contradicts the file."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import xpress_fast as xf
from xpress_fast import io
from xpress_fast.cli import main
from xpress_fast.skeletons import save_skeletons


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    from xpress_fast.synthetic import make_volume

    d = tmp_path_factory.mktemp("cli-evaluate")
    vol = make_volume((32, 32, 32), seed=5)
    full, half = d / "full.h5", d / "half.h5"
    io.write_volume(full, "labels", vol.labels, voxel_size=vol.voxel_size, offset=vol.offset)
    io.write_volume(half, "labels", vol.labels[:16], voxel_size=vol.voxel_size, offset=vol.offset)
    skel = d / "skeletons.npz"
    save_skeletons(vol.skeletons, skel, fmt="arrays")
    return {"full": full, "half": half, "skel": skel, "vol": vol}


def _api(vol, labels, **kw):
    return xf.xpress_scores(labels, vol.skeletons, voxel_size=vol.voxel_size, offset=vol.offset, **kw).as_dict()


def _same(got, want):
    for k, v in want.items():
        assert got[k] is None if isinstance(v, float) and np.isnan(v) else got[k] == pytest.approx(v, rel=1e-12), k


def test_several_segmentations_one_json_list(case, capsys):
    rc = main(["evaluate", str(case["full"]), str(case["half"]), str(case["full"]), "--dataset", "labels",
               "--skeletons", str(case["skel"]), "--outside", "drop", "--json"])
    assert rc == 0
    got = json.loads(capsys.readouterr().out)
    vol = case["vol"]
    assert [g["segmentation"] for g in got] == [str(case["full"]), str(case["half"]), str(case["full"])]
    _same(got[0], _api(vol, vol.labels))
    _same(got[1], _api(vol, vol.labels[:16], outside="drop"))
    assert got[2] == got[0]


def test_outside_nodes_warn_in_one_line_then_refuse_or_split(case, capsys):
    argv = ["evaluate", str(case["half"]), "--dataset", "labels", "--skeletons", str(case["skel"]), "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpress-fast evaluate: warning: ") and "lie outside" in lines[0]
    _same(json.loads(captured.out), _api(case["vol"], case["vol"].labels[:16], outside="drop"))

    assert main(argv + ["--outside", "error"]) == 2
    assert "lie outside" in capsys.readouterr().err

    assert main(argv + ["--outside", "split"]) == 0
    split = json.loads(capsys.readouterr().out)
    want = _api(case["vol"], case["vol"].labels[:16], outside="split")
    _same(split, want)
    dropped = _api(case["vol"], case["vol"].labels[:16], outside="drop")
    assert split["split_count"] > dropped["split_count"] and split["erl"] < dropped["erl"]


def test_voxel_size_contradicting_the_file_warns(case, capsys):
    vol = case["vol"]
    other = ",".join(str(2 * v) for v in vol.voxel_size)
    assert main(["evaluate", str(case["full"]), "--dataset", "labels", "--skeletons", str(case["skel"]),
                 "--voxel-size", other, "--outside", "drop", "--json"]) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "'resolution' attr says" in err and "voxel_size" in err


def test_read_volume_warns_only_on_a_contradiction(case):
    vol = case["vol"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same = io.read_volume(case["full"], "labels", voxel_size=vol.voxel_size, offset=vol.offset)
    assert same.voxel_size == tuple(vol.voxel_size)
    with pytest.warns(xf.XpressWarning, match=r"offset \[1.0, 2.0, 3.0\] given, but its 'offset' attr says"):
        moved = io.read_volume(case["full"], "labels", offset=(1, 2, 3))
    assert moved.offset == (1.0, 2.0, 3.0)
