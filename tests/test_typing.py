"""The package type-checks: ``mypy`` (configured in pyproject.toml: strict for the public API,
the default checks for the CLI, report, pipeline and U-Net) finds nothing. Also: the names
``xpress_fast/__init__.py`` imports for type checkers are the ones it exports at run time, and
regression tests of the bugs the annotations brought to light."""
from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import mypy  # noqa: F401  (in the [test] extra: the suite needs it)
import numpy as np
import pytest

import xpress_fast as xf

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error():
    # mypy's cache outside the repository, one per checkout, so that a rerun takes a second
    # instead of the cold run's half minute (mypy checks each cached module against its source)
    cache = Path(tempfile.gettempdir()) / f"xpress-fast-mypy-{hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MYPY")}
    run = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"mypy failed (exit {run.returncode}):\n{run.stdout}{run.stderr}"
    assert "Success: no issues found" in run.stdout


def test_type_checking_imports_match_the_lazy_exports():
    """``if TYPE_CHECKING:`` in ``__init__`` re-exports every name of ``_EXPORTS`` from the module
    that defines it (and nothing else), so ``xf.erl`` has erl's type, not Any."""
    tree = ast.parse((ROOT / "python" / "xpress_fast" / "__init__.py").read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                 and node.test.id == "TYPE_CHECKING")
    imported = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1, ast.dump(node)
        for alias in node.names:
            assert alias.asname == alias.name, f"{alias.name} must be imported 'as {alias.name}' (a re-export)"
            imported[alias.name] = node.module
    assert imported == xf._EXPORTS



def test_result_classes_resolve_their_annotations_at_run_time():
    """Names imported only under TYPE_CHECKING must not appear in a dataclass's or TypedDict's
    fields: typing.get_type_hints (dataclass tools, hypothesis' builds) evaluates them."""
    import dataclasses
    import importlib
    import inspect
    import pkgutil
    import typing

    checked = []
    for info in pkgutil.walk_packages(xf.__path__, "xpress_fast."):
        if info.name.endswith("__main__") or (info.name.startswith("xpress_fast.unet") and not _has_torch()):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__ == info.name and (
                    dataclasses.is_dataclass(obj) or typing.is_typeddict(obj)):
                typing.get_type_hints(obj)
                checked.append(obj.__qualname__)
    assert {"XpressScores", "SweepResult", "SyntheticVolume", "RegionGraph", "Volume"} <= set(checked)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


# -- bugs the annotations found ---------------------------------------------------------------

def test_a_scalar_nan_threshold_is_refused_by_name():
    """sweep(thresholds=nan) used to raise TypeError("'float' object is not iterable") while
    building the error message."""
    sk = xf.Skeletons([[0.5, 0.5, 0.5], [1.5, 0.5, 0.5]], [[0, 1]])
    agg = SimpleNamespace(map=lambda ids, t: ids, fragments=np.ones((4, 4, 4), np.uint64))
    with pytest.raises(ValueError, match="thresholds must be finite"):
        xf.sweep(agg, sk, thresholds=float("nan"), voxel_size=(1, 1, 1))


@pytest.fixture
def saved_agglomeration(tmp_path):
    affs = np.random.default_rng(0).random((3, 6, 6, 6), dtype=np.float32)
    fragments = xf.watershed(affs, min_seed_distance=2)
    path = tmp_path / "agg.npz"
    xf.save_agglomeration(xf.merge_history(affs, [0.5], fragments=fragments), path)
    return path, fragments


def test_loaded_agglomeration_checks_its_fragments(saved_agglomeration):
    """load_agglomeration(fragments=...) kept whatever it was given (Agglomeration.fragments is
    documented as uint64); a bad volume failed only later, in segmentation(), under another name."""
    path, fragments = saved_agglomeration
    agg = xf.load_agglomeration(path, fragments=fragments.astype(np.int32))
    assert agg.fragments is not None and agg.fragments.dtype == np.uint64
    np.testing.assert_array_equal(agg.fragments, fragments)
    np.testing.assert_array_equal(agg.segmentation(0.5), xf.load_agglomeration(path, fragments=fragments)
                                  .segmentation(0.5))
    with pytest.raises(ValueError, match="fragments must not contain negative labels"):
        xf.load_agglomeration(path, fragments=-fragments.astype(np.int64))
    with pytest.raises(ValueError, match="fragments must be 3-dimensional"):
        xf.load_agglomeration(path, fragments=fragments[0])


def test_pruning_checkpoints_leaves_other_files_alone(tmp_path):
    """A file matching checkpoint_*.pt without a step number (checkpoint_best.pt) made the
    pruning after a checkpoint crash with AttributeError, ending the training run."""
    pytest.importorskip("torch")
    from xpress_fast.unet.train import _prune_checkpoints

    for name in ("checkpoint_10.pt", "checkpoint_200.pt", "checkpoint_30.pt", "checkpoint_best.pt"):
        (tmp_path / name).write_bytes(b"")
    _prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_200.pt", "checkpoint_30.pt",
                                                          "checkpoint_best.pt"]


def test_toml_config_before_python_311_says_what_is_missing(tmp_path, capsys, monkeypatch):
    """On Python < 3.11 (no tomllib) a TOML config file was reported as 'could not be parsed:
    No module named tomllib'."""
    from xpress_fast.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text("json = true\n")
    monkeypatch.setattr(sys, "version_info", (3, 10, 0, "final", 0))
    monkeypatch.setitem(sys.modules, "tomllib", None)  # import tomllib fails, as before 3.11
    assert main(["check-submission", str(tmp_path / "none.h5"), "--config", str(cfg)]) == 2
    assert "TOML config files need Python 3.11 or later" in capsys.readouterr().err
