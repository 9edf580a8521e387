"""`xpress-fast demo --quick`: the whole chain runs and writes its report."""
from __future__ import annotations

import csv
import json

import pytest

from xpress_fast.cli import main


def test_demo_quick_writes_report(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "[6/6] writing the report" in printed and "best threshold" in printed
    report = out / "report"
    rows = json.loads((report / "scores.json").read_text())
    assert len(rows) == 19 and rows[0]["threshold"] == 0.05 and rows[-1]["threshold"] == 0.95
    with open(report / "scores.csv") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 19 and float(table[3]["nerl"]) == pytest.approx(rows[3]["nerl"])
    for png in ("scores.png", "slices.png"):
        assert (report / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["size"] == 32 and summary["steps"] == 10
    assert summary["best"]["xpress_erl_rand"] == max(r["xpress_erl_rand"] for r in rows)
    assert 0 <= summary["trivial"]["one_label"] < 1


def test_demo_bad_size(tmp_path, capsys):
    pytest.importorskip("torch")
    assert main(["demo", "--size", "8", "--out", str(tmp_path / "d")]) == 2
    assert "size must be at least 24" in capsys.readouterr().err
