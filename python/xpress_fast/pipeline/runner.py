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
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

log = logging.getLogger(__name__)

LOCAL_SCHEDULERS = ("threads", "processes", "sync")
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
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def check_run_settings(path: Path, settings: dict, holder: str, advice: str) -> None:
    """Refuse to resume a run whose settings file ``path`` holds other settings; write the
    settings of a new run.

    The error reads ``"{holder} with other settings (keys that differ); {advice}"``.
    """
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as they come back from the file
    if path.is_file():
        with open(path) as fh:
            old = json.load(fh)
        if old != settings:
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{holder} with other settings ({', '.join(changed)}); {advice}")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, settings)


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
        Local workers (threads/processes).
    retries : int
        Further attempts of a failed block.
    progress : callable, optional
        ``progress(total=n, desc_=stage)`` -> a tqdm-like bar.

    Raises
    ------
    BlockFailure
        Some blocks still failed after their retries (the others are recorded).
    """
    import dask

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
    import dask
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
    try:
        from distributed import Client, as_completed
    except ImportError:  # pragma: no cover - distributed is an optional extra
        raise ValueError(
            f"scheduler {address!r} is not one of {LOCAL_SCHEDULERS} and dask.distributed is not "
            "installed (pip install 'xpress-fast[distributed]')"
        ) from None
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
