"""Everything the README shows runs: its set-up commands, every python block and every command.

The README's blocks are read from the file itself, so an edit to the README is tested as
written. Only the substitutions in ``FASTER`` are made, to keep the suite fast (fewer training
steps); each must occur in the README, so the table cannot go stale.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# README text -> what the suite runs instead (training steps only)
FASTER = {
    "TrainConfig.tiny()": "TrainConfig.tiny(steps=4)",
    "--iterations 1500": "--iterations 4",
    "checkpoint_00001500.pt": "checkpoint_00000004.pt",
}
# the package the suite itself imports (installed, or a PYTHONPATH=python checkout), with the
# path made absolute because the commands run in other directories
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)}


def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line number) of every fenced code block."""
    blocks, lang, start, lines = [], None, 0, []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if lang is None and line.startswith("```"):
            lang, start, lines = line[3:].strip(), n + 1, []
        elif lang is not None and line.startswith("```"):
            blocks.append((lang, "\n".join(lines), start))
            lang = None
        elif lang is not None:
            lines.append(line)
    assert lang is None, f"{path}: unterminated code block from line {start}"
    return blocks


def faster(text: str) -> str:
    for old, new in FASTER.items():
        text = text.replace(old, new)
    return text


def commands(block: str) -> list[list[str]]:
    """The shell commands of a block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [words for line in joined.splitlines() if (words := shlex.split(line, comments=True))]


def run_cli(words: list[str], cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    assert words[0] == "xpress-fast", words
    # `python -m xpress_fast` is the console script (tests/test_cli.py checks the entry point)
    r = subprocess.run([sys.executable, "-m", "xpress_fast", *words[1:]], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{shlex.join(words)} (in {cwd}) exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


BLOCKS = fenced_blocks(README)
SETUP, *SHELL = [text for lang, text, _ in BLOCKS if lang == "bash"]


def test_every_block_is_python_or_bash_and_every_substitution_is_used():
    assert {lang for lang, _, _ in BLOCKS} == {"python", "bash"}
    text = README.read_text()
    for old in FASTER:
        assert old in text, f"FASTER substitutes {old!r}, which the README no longer contains"


def test_setup_commands_are_what_ci_runs():
    one, two = [line for line in SETUP.splitlines() if not line.startswith("#")]
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert two == ci, "README command 2 must be exactly .ci/run's test command"
    # command 1 installs extras that exist, then runs the demo (test_demo_then_every_command)
    assert one.endswith("&& xpress-fast demo")
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extras in re.findall(r'"\.\[([^\]]+)\]"', one + two):
        for extra in extras.split(","):
            assert re.search(rf"^{extra} = \[", pyproject, re.M), f"extra [{extra}] is not in pyproject.toml"


def test_every_path_the_docs_cite_exists():
    for doc in [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if not target.startswith("http"):
                assert (doc.parent / target).exists(), f"{doc.name} links to {target}, which does not exist"
        for path in re.findall(r"`((?:benchmarks|tests|docs|tools|cpp|src|python)/[\w./-]+)`", text):
            assert (ROOT / path).exists() or list(ROOT.glob(path)), f"{doc.name} cites {path}, which does not exist"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """README command 1's job, as a user runs it: `xpress-fast demo` in an empty directory."""
    work = tmp_path_factory.mktemp("readme")
    command_1 = [line for line in SETUP.splitlines() if not line.startswith("#")][0]
    (demo,) = commands(command_1.split("&&")[-1])
    r = run_cli(demo, work)
    assert "ERL+Rand" in r.stdout or "erl" in r.stdout.lower(), r.stdout
    return work


def test_python_blocks_run_in_order(demo_dir):
    """The python blocks, in order, as one session (later blocks use earlier names)."""
    parts = []
    for lang, text, line in BLOCKS:
        if lang == "python":
            parts.append(f"# README.md line {line}\n{faster(text)}\n")
    script = demo_dir / "readme_session.py"
    script.write_text("\n".join(parts))
    r = subprocess.run([sys.executable, "-W", "error::FutureWarning", str(script)], cwd=demo_dir, env=ENV,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    # the ten-line example prints its threshold and four scores, a usable segmentation
    threshold, erl_rand, nerl, splits, merges = r.stdout.splitlines()[0].split()
    assert 0 < float(threshold) < 1 and float(erl_rand) > 0.5 and float(nerl) > 0.3


def serve_then_interrupt(words: list[str], cwd: Path) -> None:
    """`view` serves until Ctrl-C: its first line is a URL that answers; SIGINT ends it cleanly."""
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "xpress_fast", *words[1:]], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), (url, proc.stderr.read() if proc.poll() is not None else "")
        with urllib.request.urlopen(url, timeout=20) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"{shlex.join(words)} exited {proc.returncode} on Ctrl-C:\n{err}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def challenge_sized_segmentation(path: Path) -> None:
    """What `submit` needs: a segmentation covering the test ROI, here on the 99 nm grid."""
    import xpress_fast.io as xio

    rng = np.random.default_rng(0)
    seg = np.kron(rng.integers(1, 1000, (42, 42, 42), dtype=np.uint32), np.ones((8, 8, 8), np.uint32))[:334, :334, :334]
    xio.write_volume(path, "segmentation_0.5", seg, voxel_size=(99, 99, 99), offset=(3267, 3267, 3267))


def test_demo_then_every_command(demo_dir):
    """Each shell block's commands in order, in the directory a `cd` names."""
    cwd = demo_dir
    for block in SHELL:
        for words in commands(faster(block)):
            if words[0] == "cd":
                cwd = cwd / words[1]
                assert cwd.is_dir(), f"the README cds into {words[1]}, which the demo did not write"
                continue
            if words[:2] == ["xpress-fast", "submit"] and not (cwd / words[2]).exists():
                challenge_sized_segmentation(cwd / words[2])
            if words[:2] == ["xpress-fast", "view"]:
                serve_then_interrupt(words, cwd)
                continue
            run_cli(words, cwd)
    # what the commands wrote
    assert (cwd / "model2" / "checkpoint_00000004.pt").is_file()
    assert (cwd / "report2" / "scores.json").is_file() and (cwd / "choice.json").is_file()
    assert (cwd / "submission.h5").is_file()


def test_demo_report(demo_dir):
    out = demo_dir / "xpress_fast_demo"
    for name in ("scores.json", "scores.csv", "scores.png", "slices.png"):
        assert (out / "report" / name).is_file(), name
    for name in ("data.zarr", "skeletons.npz", "train.zarr", "train_skeletons.npz", "segmentation.zarr"):
        assert (out / name).exists(), name


def test_readme_is_a_users_readme():
    n = len(README.read_text().splitlines())
    assert n <= 330, f"README.md has {n} lines; design notes and benchmark logs belong in docs/ and benchmarks/"
