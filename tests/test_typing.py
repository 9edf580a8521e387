"""Regression tests of bugs that annotating the package for mypy brought to light."""
from __future__ import annotations

import sys
from types import SimpleNamespace

import numpy as np
import pytest

import xpress_fast as xf


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
