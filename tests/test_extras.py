"""A missing optional extra gives one line naming `pip install "xpress-fast[...]"`, never a traceback.

Each case runs in a child process in which the optional modules cannot be imported
(``sys.modules[name] = None``), as on a machine with only the core installed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import xpress_fast

PYTHON_DIR = Path(xpress_fast.__file__).resolve().parents[1]

CHILD = r"""
import json, sys
for name in ("torch", "zarr", "dask", "matplotlib", "skimage", "distributed"):
    sys.modules[name] = None  # as if not installed
import numpy as np
import xpress_fast as xf
from xpress_fast._extras import MissingExtra
from xpress_fast import io

out = {}
def record(key, fn):
    try:
        fn()
        out[key] = "no error"
    except MissingExtra as exc:
        out[key] = str(exc)

# the core works without any extra
labels = np.ones((4, 4, 4), np.uint64)
sk = xf.Skeletons(np.array([[1.0, 1, 1], [1, 1, 30]]), np.array([[0, 1]]))
out["core"] = xf.xpress_scores(labels, sk, voxel_size=(10, 10, 10)).n_neurons
io.write_volume(sys.argv[1] + "/a.h5", "a", labels, voxel_size=(10, 10, 10))

record("zarr", lambda: io.write_volume(sys.argv[1] + "/a.zarr", "a", labels, voxel_size=(10, 10, 10)))
record("unet", lambda: __import__("xpress_fast.unet"))
record("skimage", lambda: xf.skeletons_from_labels(labels, voxel_size=(10, 10, 10)))
from xpress_fast.pipeline import segment_volume
record("segment_volume", lambda: segment_volume(sys.argv[1] + "/a.h5", "a", sys.argv[1] + "/o.zarr", thresholds=[0.5]))
from xpress_fast.report import _pyplot
record("matplotlib", _pyplot)
print(json.dumps(out))
"""


def _env():
    return {**os.environ, "PYTHONPATH": str(PYTHON_DIR) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_api_entry_points_name_the_extra(tmp_path):
    res = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out.pop("core") == 1
    want = {"zarr": "pipeline", "unet": "torch", "skimage": "pipeline", "segment_volume": "pipeline",
            "matplotlib": "pipeline"}
    for key, extra in want.items():
        assert f'pip install "xpress-fast[{extra}]"' in out[key], (key, out[key])


@pytest.mark.parametrize("argv, extra", [
    (["demo", "--quick", "--out", "{d}/demo"], "torch"),
    (["train", "--raw", "{d}/a.h5", "--raw-dataset", "a", "--labels", "{d}/a.h5", "--labels-dataset", "a",
      "--out", "{d}/m.pt"], "torch"),
    (["segment", "{d}/a.h5", "--affinities-dataset", "a", "--out", "{d}/o.zarr"], "pipeline"),
])
def test_cli_commands_print_one_line_and_exit_2(tmp_path, argv, extra):
    import numpy as np

    from xpress_fast import io

    io.write_volume(tmp_path / "a.h5", "a", np.ones((4, 4, 4), np.uint8), voxel_size=(10, 10, 10))
    code = ("import sys\nfor n in ('torch', 'zarr', 'dask', 'matplotlib', 'skimage', 'distributed'):\n"
            "    sys.modules[n] = None\nfrom xpress_fast.cli import main\nsys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", code, *[a.format(d=tmp_path) for a in argv]], env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f'pip install "xpress-fast[{extra}]"' in lines[0], res.stderr
