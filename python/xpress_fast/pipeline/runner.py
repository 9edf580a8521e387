"""Running one function per block on dask, with bounded retries and completion records.

Each block task runs ``fn(block)``; when it returns, a completion record (a small JSON file
holding what ``fn`` returned) is written atomically. A block with a record is never run again,
so a killed run resumes from its completed blocks. A block whose function raises is retried up
to ``retries`` more times (inside its task, so every dask scheduler behaves the same); blocks
that still fail are reported in a :class:`BlockFailure` after every other block has finished --
never counted as done.
"""
from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from .._extras import require

log = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
#: The folder of a run's records, settings and merge history inside its output container.
WORK = ".xpress_fast"
#: What the temporary files of atomic writes (``xpress_fast.io.atomic_file``) carry in their names.
TEMP_SUFFIX = ".tmp"
#: How long to wait for a dask.distributed scheduler to answer.
CONNECT_TIMEOUT = "10s"


class BlockFailure(RuntimeError):
    """Blocks of a stage failed after all their retries.

    Attributes
    ----------
    stage : str
    failures : dict
        Block index -> the last error's message (with its traceback's last line).
    """

    def __init__(self, stage: str, failures: dict, n_blocks: int):
        self.stage = stage
        self.failures = dict(failures)
        shown = "; ".join(f"block {i}: {msg}" for i, msg in sorted(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(
            f"stage {stage!r}: {len(self.failures)} of {n_blocks} blocks failed after their retries: "
            f"{shown}{more}. Completed blocks are recorded; run the same command again to resume."
        )


@dataclass
class StageReport:
    """What a stage did: blocks run now, blocks skipped (complete before), retries used."""

    stage: str
    n_blocks: int
    skipped: int = 0
    completed: int = 0
    retries: int = 0
    seconds: float = 0.0
    failures: dict = field(default_factory=dict)


def check_run_options(*, scheduler, workers, retries) -> None:
    """Refuse bad scheduler / workers / retries with a ValueError naming the argument (each
    stage checks them before it writes anything)."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer; got {retries!r}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1):
        raise ValueError(f"workers must be a positive integer; got {workers!r}")
    if not isinstance(scheduler, str) or not scheduler:
        raise ValueError(f"scheduler must be 'threads', 'processes', 'sync' or a scheduler address; got {scheduler!r}")


def atomic_write_json(path: Path, obj) -> None:
    """Write ``obj`` as JSON to a temporary name beside ``path``, then move it into place: a
    reader never sees a half-written file."""
    from ..io import atomic_file

    with atomic_file(path) as tmp, open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)


def remove_stale_temporaries(directory: Path, older_than: float) -> int:
    """Delete the temporary files of atomic writes (``.<name>.<id>.tmp*``) under ``directory``
    last modified before ``older_than`` (a ``time.time()``): what a killed process left behind.
    Returns how many were removed."""
    removed = 0
    if not directory.is_dir():
        return 0
    for dirpath, _, filenames in os.walk(directory):
        for name in filenames:
            if name.startswith(".") and TEMP_SUFFIX in name:
                p = Path(dirpath) / name
                try:
                    if p.stat().st_mtime < older_than:
                        p.unlink()
                        removed += 1
                except FileNotFoundError:
                    pass
    return removed


class RunChanged(ValueError):
    """An output holds a run whose settings or inputs differ from this one's (pass
    ``restart=True`` to discard it and start afresh).

    Attributes
    ----------
    changed : list of str
        The settings that differ, and ``inputs.<name>`` for each input that changed.
    """

    def __init__(self, message: str, changed: list):
        super().__init__(message)
        self.changed = list(changed)


def _jsonable(obj):
    return json.loads(json.dumps(obj))  # tuples -> lists, as they come back from the file


def check_run_settings(path: Path, settings: dict, holder: str, advice: str, *, inputs: Optional[dict] = None) -> bool:
    """Refuse to resume a run whose settings file ``path`` holds other settings or was made from
    other inputs; write the settings (and the inputs' fingerprints) of a new run.

    ``inputs`` maps a name to the fingerprint of an input (:func:`xpress_fast.io.dataset_fingerprint`):
    an input rewritten in place since the run began makes its old blocks stale, so a rerun on it
    is refused instead of mixing old and new data. Returns True when the run is new (the file was
    written), False when it resumes a run with the same settings and inputs.

    Raises
    ------
    RunChanged
        ``"{holder} with other settings (keys); {advice}"``, or ``"{holder} made from other inputs:
        {names} changed since it began; {advice}"``.
    """
    record = _jsonable({**settings, "inputs": inputs or {}})
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, record)
        return True
    with open(path) as fh:
        try:
            old = json.load(fh)
        except ValueError as exc:  # our own record, damaged: never resume on it
            raise RunChanged(f"{holder} whose settings file {str(path)!r} is damaged ({exc}); {advice}",
                             ["settings file"]) from None
    if not isinstance(old, dict):
        raise RunChanged(f"{holder} whose settings file {str(path)!r} is damaged (not an object); {advice}",
                         ["settings file"])
    changed = sorted(k for k in set(old) | set(record) if k != "inputs" and old.get(k) != record.get(k))
    if changed:
        raise RunChanged(f"{holder} with other settings ({', '.join(changed)}); {advice}", changed)
    old_inputs = old.get("inputs")
    if not isinstance(old_inputs, dict):
        old_inputs = {}
    stale = sorted(k for k in set(old_inputs) | set(record["inputs"]) if old_inputs.get(k) != record["inputs"].get(k))
    if stale:
        raise RunChanged(f"{holder} made from other inputs: {', '.join(stale)} changed since it began "
                         f"(shape, dtype, chunks or the files' modification data); {advice}",
                         [f"inputs.{k}" for k in stale])
    return False


def check_inputs_unchanged(inputs: dict, fingerprint: Callable[[str], dict], holder: str) -> None:
    """Raise :class:`RunChanged` when an input's fingerprint differs from the one recorded when the
    run began (called before a stage publishes its output: an input rewritten *during* the run
    would otherwise leave a mix of old and new data under the final name)."""
    stale = sorted(name for name, fp in inputs.items() if _jsonable(fingerprint(name)) != _jsonable(fp))
    if stale:
        raise RunChanged(f"{holder}: {', '.join(stale)} changed while the run was going on; its outputs were not "
                         "published. Run again with restart (--restart) to start afresh on the new input",
                         [f"inputs.{k}" for k in stale])


class CompletionRecords:
    """One JSON file per completed block under ``directory/stage/``."""

    def __init__(self, directory):
        self.directory = Path(directory)

    def _path(self, stage: str, index: int) -> Path:
        return self.directory / stage / f"{index}.json"

    def done(self, stage: str, index: int) -> bool:
        return self._path(stage, index).is_file()

    def load(self, stage: str, index: int):
        with open(self._path(stage, index)) as fh:
            return json.load(fh)

    def mark(self, stage: str, index: int, info) -> None:
        path = self._path(stage, index)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, info)

    def clear(self, stage: str) -> None:
        d = self.directory / stage
        if d.is_dir():
            for p in d.iterdir():
                p.unlink()


def _run_one(fn: Callable, block, stage: str, records: CompletionRecords, retries: int) -> dict:
    """The task of one block: run with retries, record on success, return the outcome."""
    attempts = 0
    while True:
        attempts += 1
        try:
            info = fn(block)
        except Exception as exc:  # a block's failure must not stop the other blocks
            last = f"{type(exc).__name__}: {exc}"
            log.warning("stage %s block %d attempt %d failed: %s\n%s", stage, block.index, attempts, last,
                        traceback.format_exc())
            if attempts > retries:
                return {"index": block.index, "ok": False, "error": last, "attempts": attempts}
            continue
        records.mark(stage, block.index, info if info is not None else {})
        return {"index": block.index, "ok": True, "attempts": attempts}


def run_blocks(
    stage: str,
    blocks: Iterable,
    fn: Callable,
    *,
    records: CompletionRecords,
    scheduler: str = "threads",
    workers: Optional[int] = None,
    retries: int = 2,
    progress: Optional[Callable] = None,
) -> StageReport:
    """Run ``fn(block)`` for every block without a completion record, on dask.

    Parameters
    ----------
    stage : str
        Name of the stage (the records' folder).
    blocks : iterable of Block
    fn : callable
        ``fn(block) -> dict`` (JSON-serialisable, stored in the record); it writes its own
        outputs, which must be complete when it returns.
    records : CompletionRecords
    scheduler : str
        ``"threads"`` (default), ``"processes"``, ``"sync"``, or a ``dask.distributed``
        scheduler address (``tcp://host:8786``).
    workers : int, optional
        Local workers (threads/processes; default: dask's, one per core).
    retries : int
        Further attempts of a failed block before the stage fails.
    progress : callable, optional
        ``progress(total=n, desc_=stage)`` -> a tqdm-like bar.

    The block-wise stages (:func:`~xpress_fast.pipeline.predict_volume`,
    :func:`~xpress_fast.pipeline.segment_volume`) take ``scheduler``, ``workers``, ``retries``
    and ``progress`` with these meanings and pass them here.

    Raises
    ------
    BlockFailure
        Some blocks still failed after their retries (the others are recorded).
    """
    dask = require("dask", "the block-wise pipeline")

    check_run_options(scheduler=scheduler, workers=workers, retries=retries)
    blocks = list(blocks)
    report = StageReport(stage, len(blocks))
    todo = [b for b in blocks if not records.done(stage, b.index)]
    report.skipped = len(blocks) - len(todo)
    t0 = time.perf_counter()
    bar = progress(total=len(todo), desc_=stage) if progress is not None and todo else None
    outcomes = []
    if todo:
        tasks = [dask.delayed(_run_one, pure=False)(fn, b, stage, records, retries) for b in todo]
        if scheduler in LOCAL_SCHEDULERS:
            outcomes = _compute_local(tasks, scheduler, workers, bar)
        else:
            outcomes = _compute_distributed(tasks, scheduler, bar)
    if bar is not None:
        bar.close()
    for out in outcomes:
        report.retries += out["attempts"] - 1
        if out["ok"]:
            report.completed += 1
        else:
            report.failures[out["index"]] = out["error"]
    report.seconds = time.perf_counter() - t0
    log.info("stage %s: %d blocks run, %d skipped, %d retries, %d failed, %.1f s", stage,
             report.completed, report.skipped, report.retries, len(report.failures), report.seconds)
    if report.failures:
        raise BlockFailure(stage, report.failures, len(blocks))
    return report


def _compute_local(tasks, scheduler, workers, bar):
    dask = require("dask", "the block-wise pipeline")
    from dask.callbacks import Callback

    class _Bar(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            if bar is not None and isinstance(result, dict) and "attempts" in result:
                bar.update(1)

    kwargs = {"scheduler": scheduler}
    if workers is not None and scheduler != "sync":
        kwargs["num_workers"] = int(workers)
    with _Bar():
        return list(dask.compute(*tasks, **kwargs))


def _compute_distributed(tasks, address, bar):
    distributed = require("distributed", f"scheduler {address!r} (not one of {', '.join(LOCAL_SCHEDULERS)})")
    Client, as_completed = distributed.Client, distributed.as_completed
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot connect to the dask scheduler at {address!r}: {exc}") from None
    try:
        with client.as_current():
            futures = client.compute(tasks)
            outcomes = []
            for fut in as_completed(futures):
                outcomes.append(fut.result())
                if bar is not None:
                    bar.update(1)
        return outcomes
    finally:
        client.close()
