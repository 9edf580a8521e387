"""Block-wise segmentation: fragments per block, per-block region graphs merged into one global
graph, one global agglomeration, relabelling per block -- the lsd/daisy design, on dask.

Layout of the output zarr container ``out``::

    out/fragments                  uint32 or uint64 (Z, Y, X), ids unique across blocks (uint32
                                   when every possible id fits, else uint64)
    out/segmentation_<t>           same dtype (Z, Y, X), one per threshold t (segment id = the
                                   smallest fragment id it holds, as Agglomeration does)
    out/.xpress_fast/run.json      the run's settings (a rerun with other settings is refused)
    out/.xpress_fast/records/      one completion record per block and stage
    out/.xpress_fast/graphs/       the per-block region graphs (.npz)
    out/.xpress_fast/agglomeration.npz   the merge history and the per-threshold lookup tables

Every volume is written as ``<name>.partial`` and renamed when all its blocks are done, so a
dataset that exists under its final name is complete. A killed run, run again with the same
settings, skips every block with a record.

Exactness: the fragments are :func:`xpress_fast.fragments.blockwise_watershed`'s (each block's
watershed with ``context`` voxels of margin, core kept, ids offset per block), computed per block
by the same function, :func:`~xpress_fast.fragments.watershed_block`, so they are *identical* to
the in-memory ``blockwise_watershed(affs, block_shape=..., context=...)``. Given the same
fragments the block-wise region graph equals the whole volume's (each voxel edge is counted by
exactly one block, statistics combine exactly), so the agglomeration and every segmentation are
*identical* to the in-memory ``xpress_fast.merge_history(affs, thresholds,
fragments=blockwise_watershed(affs, block_shape=..., context=...))``, or to
``merge_history(..., fragments=fragments)`` with ``fragments=`` given. The whole-volume :func:`xpress_fast.watershed` (no blocks) still differs
near block faces: its flood is global, and objects cut by block faces become several fragments
that the agglomeration joins again through their high-affinity shared face.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..fragments import DEFAULT_CONTEXT
from ..agglomeration import DEFAULT_MERGE_FUNCTION
from ..region_graphs import DEFAULT_INSIDE_THRESHOLD
from .._extras import require
from .runner import (WORK, CompletionRecords, RunChanged, check_inputs_unchanged, check_run_options,
                     check_run_settings, remove_stale_temporaries, run_blocks)

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SHAPE = (128, 128, 128)


@dataclass(frozen=True)
class SegmentResult:
    """What :func:`segment_volume` wrote.

    Attributes
    ----------
    out : Path
        The zarr container.
    thresholds : (T,) float64
    segmentation_datasets : tuple of str
        ``segmentation_<t>`` per threshold, in ``out``.
    n_fragments : int
    n_blocks : int
    reports : tuple of StageReport
        Per stage: blocks run, skipped (complete before), retries.
    seconds : float
    up_to_date : bool
        Nothing was left to do: every output asked for was complete, from the same settings
        and unchanged inputs.
    """

    out: Path
    thresholds: np.ndarray
    segmentation_datasets: tuple
    n_fragments: int
    n_blocks: int
    reports: tuple
    seconds: float
    up_to_date: bool = False


def segmentation_dataset(threshold: float) -> str:
    """The dataset name of the segmentation at ``threshold``: ``segmentation_0.55``."""
    return f"segmentation_{float(threshold):g}"


def _open(path, dataset):
    from ..io import open_volume

    return open_volume(path, dataset)


# ------------------------------------------------------------------------------------------------
# the block functions (module level, so the process and distributed schedulers can pickle them)


class _FragmentsBlock:
    """Write one block's fragments: the API's ``watershed_block``, the very function the
    in-memory ``blockwise_watershed`` loops over."""

    def __init__(self, affs_path, affs_dataset, out, blocks, watershed_options):
        self.affs_path, self.affs_dataset, self.out = str(affs_path), affs_dataset, str(out)
        self.blocks = blocks
        self.watershed_options = dict(watershed_options)

    def __call__(self, block) -> dict:
        zarr = require("zarr", "the block-wise pipeline")

        from ..fragments import watershed_block

        affs = _open(self.affs_path, self.affs_dataset).data
        # dask runs blocks side by side: one kernel thread each, unless the options say otherwise
        core = watershed_block(affs, block, self.blocks, **{"threads": 1, **self.watershed_options})
        z = zarr.open_array(str(Path(self.out) / "fragments.partial"), mode="r+")
        z[block.core] = core.astype(z.dtype, copy=False)
        ids = np.unique(core)
        ids = ids[ids != 0]
        return {"n_fragments": int(ids.size), "max_id": int(ids[-1]) if ids.size else 0}


class _GraphBlock:
    def __init__(self, affs_path, affs_dataset, fragments_path, fragments_dataset, work, histograms,
                 inside_threshold, offsets):
        self.affs_path, self.affs_dataset = str(affs_path), affs_dataset
        self.fragments_path, self.fragments_dataset = str(fragments_path), fragments_dataset
        self.work, self.histograms = str(work), histograms
        self.inside_threshold, self.offsets = inside_threshold, offsets

    def __call__(self, block) -> dict:
        from ..region_graphs import long_range_graph, region_graph
        from ..saved import save_region_graph

        affs = _open(self.affs_path, self.affs_dataset).data
        frags = _open(self.fragments_path, self.fragments_dataset).data
        # long-range pairs {v, v + o} (o <= 0) belong to v: read max(-o) planes below each block
        planes = (1, 1, 1) if self.offsets is None else tuple(max(1, -int(min(o[a] for o in self.offsets)))
                                                              for a in range(3))
        read, ctx = block.lower_overlap(planes)
        f, a = np.asarray(frags[read]), np.asarray(affs[(slice(None),) + read])
        g = region_graph(f, a, context=ctx, histograms=self.histograms, threads=1,
                         inside_threshold=self.inside_threshold)
        if self.offsets is not None:  # written first: the block's graph file marks it complete
            lifted = long_range_graph(f, a, self.offsets, context=ctx, histograms=self.histograms, threads=1,
                                      inside_threshold=self.inside_threshold)
            save_region_graph(lifted, _graph_path(self.work, block.index, long_range=True))
        save_region_graph(g, _graph_path(self.work, block.index))
        return {"n_edges": int(g.n_edges)}


class _RelabelBlock:
    """Write each threshold's segmentation of a block: its fragments through that LUT row."""

    def __init__(self, fragments_path, fragments_dataset, out, work, names, rows):
        self.fragments_path, self.fragments_dataset = str(fragments_path), fragments_dataset
        self.out, self.work, self.names, self.rows = str(out), str(work), list(names), list(rows)

    def __call__(self, block) -> dict:
        zarr = require("zarr", "the block-wise pipeline")

        from ..relabel import map_labels

        frags = _open(self.fragments_path, self.fragments_dataset).data
        core = np.ascontiguousarray(np.asarray(frags[block.core]), dtype=np.uint64)
        keys = np.load(Path(self.work) / "lut_keys.npy", mmap_mode="r")
        values = np.load(Path(self.work) / "lut_values.npy", mmap_mode="r")
        # only the LUT entries of this block's fragments are needed
        ids = np.unique(core)
        if len(keys):
            pos = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
            present = keys[pos] == ids
        else:
            pos, present = np.zeros(ids.shape, np.int64), np.zeros(ids.shape, bool)
        sub_keys = np.ascontiguousarray(ids[present])
        for row, name in zip(self.rows, self.names):
            sub_values = np.ascontiguousarray(values[row][pos[present]], dtype=np.uint64)
            seg = map_labels(core, sub_keys, sub_values)
            z = zarr.open_array(str(Path(self.out) / f"{name}.partial"), mode="r+")
            z[block.core] = seg.astype(z.dtype, copy=False)
        return {}


def _graph_path(work, index: int, *, long_range: bool = False) -> Path:
    return Path(work) / "graphs" / (f"{index}-long-range.npz" if long_range else f"{index}.npz")


# ------------------------------------------------------------------------------------------------


def segment_volume(
    affinities,
    affinities_dataset: str,
    out,
    *,
    thresholds: Sequence[float],
    merge_function: str = DEFAULT_MERGE_FUNCTION,
    fragments: Optional[tuple] = None,
    block_shape=None,
    context=DEFAULT_CONTEXT,
    watershed_options: Optional[Mapping] = None,
    scheduler: str = "threads",
    workers: Optional[int] = None,
    retries: int = 2,
    fragments_only: bool = False,
    write_thresholds: Optional[Sequence[float]] = None,
    progress: Optional[Callable] = None,
    inside_threshold: Optional[float] = DEFAULT_INSIDE_THRESHOLD,
    offsets: Optional[Sequence[Sequence[int]]] = None,
    restart: bool = False,
) -> SegmentResult:
    """Segment an affinity volume block-wise: fragments, one global agglomeration, relabelling.

    Parameters
    ----------
    affinities : str or Path
        HDF5 or zarr container holding ``affinities_dataset``: ``(C, Z, Y, X)`` float32 in [0, 1]
        or uint8, ``C >= 3`` (channels 0-2: ``v`` to ``v - e_z, - e_y, - e_x``).
    out : str or Path
        A zarr container (``.zarr``) for the results and the run's records.
    thresholds : sequence of float
        Strictly increasing in [0, 1] (waterz semantics); one ``segmentation_<t>`` each.
    merge_function : str
        See :data:`xpress_fast.MERGE_FUNCTIONS`.
    fragments : (path, dataset), optional
        Use these fragments (same spatial shape) instead of computing them.
    block_shape : 3 ints, optional
        Default 128³ (clipped to the volume).
    context : 3 ints
        Margin (voxels) read around each block for the watershed.
    offsets : C integer triples, optional
        The offset of every affinity channel (the first three the nearest neighbours, every
        component <= 0, as the U-Net lays them out): the long-range channels add evidence to
        touching fragments, as ``xpress_fast.agglomerate(..., offsets=offsets)``.
    inside_threshold : float or None
        The region graph counts only voxel pairs whose voxels are both inside (see
        :func:`xpress_fast.agglomerate`, whose default it shares); None counts every pair.
    watershed_options : mapping, optional
        Keyword arguments for :func:`xpress_fast.watershed` (not ``id_offset``, ``seeds``,
        ``mask``). The fragments equal ``xpress_fast.fragments.blockwise_watershed(affs,
        block_shape=block_shape, context=context, **watershed_options)`` exactly.
    scheduler, workers, retries, progress
        How the blocks run, as for :func:`~xpress_fast.pipeline.run_blocks` (default: dask's
        local threads, 2 retries of a failed block).
    fragments_only : bool
        Stop after the fragments.
    write_thresholds : sequence of float, optional
        The thresholds whose segmentation volumes are written (each one of ``thresholds``);
        default all. ``[]`` writes none: the agglomeration (merge history and every threshold's
        lookup table) is still saved, and :func:`load_agglomeration` + :func:`xpress_fast.sweep`
        score every threshold from the fragments without any volume per threshold.
    restart : bool
        When ``out`` holds a run with other settings or made from inputs that have changed
        since, discard that run's outputs (never the inputs) and start afresh, instead of
        refusing.

    A run records its settings and a fingerprint of each input
    (:func:`xpress_fast.io.dataset_fingerprint`: shape, dtype, chunks, the store's
    modification data), and checks the inputs again before it publishes each output: a rerun or
    a resumed run never mixes blocks of an old input with a new one.

    Returns
    -------
    SegmentResult

    Raises
    ------
    ValueError
        Bad input (geometry, thresholds, merge function).
    RunChanged
        (a ValueError) ``out`` holds a run with other settings or from inputs that changed
        since it began, or an input changed during this run (nothing was published).
    BlockFailure
        Blocks still failed after their retries; rerun to resume.
    """
    zarr = require("zarr", "the block-wise pipeline")

    from ..agglomeration import agglomerate_graph, check_merge_function, needs_histograms
    from ..io import check_same_geometry, container_kind, create_zarr_array, publish_zarr_array
    from ..region_graphs import RegionGraph
    from ..saved import load_agglomeration, load_region_graph, save_agglomeration
    from .._validate import check_thresholds
    from ..fragments import check_affinities, check_affinity_shape, check_block_options, watershed_blocks

    t_start = time.perf_counter()
    check_run_options(scheduler=scheduler, workers=workers, retries=retries)
    ts = check_thresholds("thresholds", thresholds)
    check_merge_function(merge_function)
    out = Path(out)
    if container_kind(out) != "zarr":
        raise ValueError(f"out must be a zarr container (a path ending in .zarr); got {str(out)!r}")
    affs_vol = _open(affinities, affinities_dataset)
    check_affinity_shape("affinities", tuple(affs_vol.shape), offsets_given=offsets is not None)
    check_affinities(np.asarray(affs_vol.data[:3, :1, :1, :1]))  # dtype check on a tiny corner
    shape = affs_vol.spatial_shape
    if fragments is not None:
        frag_vol = _open(*fragments)
        if len(frag_vol.shape) != 3:
            raise ValueError(f"fragments must be (Z, Y, X); got shape {frag_vol.shape}")
        check_same_geometry([("affinities", affs_vol), ("fragments", frag_vol)])
    # the block grid, context and id stride of blockwise_watershed: one definition for both
    blocks = watershed_blocks(shape, DEFAULT_BLOCK_SHAPE if block_shape is None else block_shape, context)
    layout, bs, ctx = blocks.layout, blocks.layout.block_shape, blocks.context
    all_names = [segmentation_dataset(t) for t in ts]
    write_names = set(all_names)
    if write_thresholds is not None:
        write_names = {segmentation_dataset(t) for t in check_thresholds(
            "write_thresholds", write_thresholds, increasing=False, nonempty=False)}
        unknown = sorted(write_names - set(all_names))
        if unknown:
            raise ValueError(f"write_thresholds must be among thresholds {[float(t) for t in ts]}; "
                             f"got {', '.join(unknown)}")
    wopts = check_block_options(watershed_options)

    from ..region_graphs import check_inside_threshold

    inside_threshold = check_inside_threshold(inside_threshold)  # a plain float or None, checked before any work
    offs = None
    if offsets is not None:
        from ..region_graphs import check_offsets

        offs = check_offsets(offsets, int(_open(affinities, affinities_dataset).data.shape[0])).tolist()
        if any(c > 0 for o in offs for c in o):
            raise ValueError(f"offsets must have no positive component in a block-wise run (each long-range pair "
                             f"is read from the planes below a block); got {offs}")
    work = out / WORK
    settings = {
        "affinities": [str(Path(affinities).resolve()), affinities_dataset],
        "fragments": None if fragments is None else [str(Path(fragments[0]).resolve()), fragments[1]],
        "shape": list(shape), "block_shape": list(bs), "context": list(ctx),
        "merge_function": merge_function, "thresholds": [float(t) for t in ts],
        "inside_threshold": inside_threshold,
        "offsets": None if offs is None else offs,
        "watershed_options": {k: v for k, v in sorted(wopts.items())},
    }
    from ..io import dataset_fingerprint

    if not isinstance(restart, (bool, np.bool_)):
        raise TypeError(f"restart must be True or False; got {restart!r}")
    input_datasets = {"affinities": (affinities, affinities_dataset)}
    if fragments is not None:
        input_datasets["fragments"] = tuple(fragments)

    def fingerprint(name):
        return dataset_fingerprint(*input_datasets[name])

    inputs = {name: fingerprint(name) for name in input_datasets}
    holder = f"{str(out)!r} holds a run"
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    zarr.open_group(str(out), mode="a")
    try:
        check_run_settings(work / "run.json", settings, holder, _RESTART_ADVICE, inputs=inputs)
    except RunChanged as exc:
        if not restart:
            raise
        log.info("restarting the run in %s: %s", out, exc)
        _clear_segment_run(out, own_fragments=fragments is None)
        check_run_settings(work / "run.json", settings, holder, _RESTART_ADVICE, inputs=inputs)

    def check_inputs():
        check_inputs_unchanged(inputs, fingerprint, f"{str(out)!r}")
    records = CompletionRecords(work / "records")
    kw: dict[str, Any] = dict(records=records, scheduler=scheduler, workers=workers, retries=retries, progress=progress)
    reports: list = []
    geo: dict[str, Any] = dict(voxel_size=affs_vol.voxel_size, offset=affs_vol.offset)

    # ids are uint32 on disk when every possible id fits (half the I/O of uint64), else uint64
    if fragments is None:
        label_dtype = np.dtype(np.uint32) if len(layout) * blocks.id_stride < 2 ** 32 else np.dtype(np.uint64)
    else:
        label_dtype = np.dtype(np.uint64)

    # 1. fragments
    if fragments is None:
        frag_src = (out, "fragments")
        if not (out / "fragments").is_dir():
            create_zarr_array(out, "fragments.partial", shape=shape, dtype=label_dtype, chunks=bs, **geo)
            fn: Callable[..., object] = _FragmentsBlock(affinities, affinities_dataset, out, blocks, wopts)
            reports.append(run_blocks("fragments", layout, fn, **kw))
            check_inputs()
            publish_zarr_array(out, "fragments.partial", "fragments")
        n_fragments = sum(records.load("fragments", b.index)["n_fragments"] for b in layout)
    else:
        frag_src = fragments
        n_fragments = -1
    if fragments_only:
        remove_stale_temporaries(work, started)
        return SegmentResult(out, ts, (), n_fragments, len(layout), tuple(reports),
                             time.perf_counter() - t_start, up_to_date=not reports)

    # 2. region graph per block, merged; 3. one global agglomeration
    (work / "graphs").mkdir(parents=True, exist_ok=True)
    agglomerated_now = not (work / "agglomeration.npz").is_file()
    if agglomerated_now:
        histograms = needs_histograms(merge_function)
        fn = _GraphBlock(affinities, affinities_dataset, frag_src[0], frag_src[1], work, histograms,
                         inside_threshold, offs)
        reports.append(run_blocks("graph", layout, fn, **kw))
        graph = RegionGraph.concatenate([load_region_graph(_graph_path(work, b.index)) for b in layout])
        if offs is not None:  # the long-range evidence of pairs that touch anywhere in the volume
            graph = graph.add_evidence(RegionGraph.concatenate(
                [load_region_graph(_graph_path(work, b.index, long_range=True)) for b in layout]))
        check_inputs()
        t0 = time.perf_counter()
        agg = agglomerate_graph(graph, ts, merge_function=merge_function)
        keys = agg.fragment_ids
        values = np.stack([agg.lut(t)[1] for t in ts]) if len(keys) else np.zeros((len(ts), 0), np.uint64)
        np.save(work / "lut_keys.npy", keys)
        np.save(work / "lut_values.npy", values)
        save_agglomeration(agg, work / "agglomeration.npz")  # last: it marks the stage complete
        log.info("global agglomeration: %d fragments, %d edges, %d merges in %.1f s", len(keys),
                 graph.n_edges, len(agg.scores), time.perf_counter() - t0)
    else:  # an earlier run's record, read back checked: a damaged one is refused
        agg = load_agglomeration(work / "agglomeration.npz")
        if agg.merge_function != merge_function or not np.array_equal(agg.thresholds, ts):
            raise RunChanged(f"{str(out)!r}: its saved agglomeration does not match the run's settings; "
                             f"{_RESTART_ADVICE}", ["agglomeration"])
        _check_luts(work, len(agg.fragment_ids), len(ts))
    if n_fragments < 0:
        n_fragments = len(agg.fragment_ids)

    # 4. relabel per block, every threshold asked for
    todo = [(row, n) for row, n in enumerate(all_names) if n in write_names and not (out / n).is_dir()]
    if todo:
        for row, n in todo:
            if not (out / f"{n}.partial").is_dir():
                create_zarr_array(out, f"{n}.partial", shape=shape, dtype=label_dtype, chunks=bs,
                                  attrs={"threshold": float(ts[row]), "merge_function": merge_function}, **geo)
        todo_names = [n for _, n in todo]
        fn = _RelabelBlock(frag_src[0], frag_src[1], out, work, todo_names, [row for row, _ in todo])
        # records per set of datasets, so a rerun asking for other thresholds starts that set afresh
        stage = "relabel-" + hashlib.sha1(",".join(todo_names).encode()).hexdigest()[:10]
        reports.append(run_blocks(stage, layout, fn, **kw))
        check_inputs()
        for n in todo_names:
            publish_zarr_array(out, f"{n}.partial", n)
    remove_stale_temporaries(work, started)
    return SegmentResult(out, ts, tuple(n for n in all_names if n in write_names), n_fragments, len(layout),
                         tuple(reports), time.perf_counter() - t_start,
                         up_to_date=not reports and not agglomerated_now)


_RESTART_ADVICE = ("pass restart=True (xpress-fast segment --restart) to discard it and start afresh, or use "
                   "another output")


def _clear_segment_run(out: Path, *, own_fragments: bool) -> None:
    """Delete what :func:`segment_volume` wrote into ``out`` (never anything else there: the
    container may also hold the affinities it reads)."""
    import shutil

    names = [p for p in out.iterdir() if p.is_dir() and p.name.startswith("segmentation_")]
    if own_fragments:
        names += [out / "fragments", out / "fragments.partial"]
    work = out / WORK
    names += [work / "graphs", work / "records" / "fragments", work / "records" / "graph"]
    if (work / "records").is_dir():
        names += [p for p in (work / "records").iterdir() if p.name.startswith("relabel-")]
    for p in names:
        if p.is_dir():
            shutil.rmtree(p)
    for name in ("run.json", "agglomeration.npz", "lut_keys.npy", "lut_values.npy"):
        if (work / name).is_file():
            (work / name).unlink()


def _check_luts(work: Path, n_fragments: int, n_thresholds: int) -> None:
    """The lookup tables the relabel blocks read must match the saved agglomeration."""
    try:
        keys = np.load(work / "lut_keys.npy", mmap_mode="r", allow_pickle=False)
        values = np.load(work / "lut_values.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise RunChanged(f"{str(work)!r}: the lookup tables are damaged ({exc}); {_RESTART_ADVICE}",
                         ["lookup tables"]) from None
    if (keys.dtype != np.uint64 or keys.shape != (n_fragments,) or values.dtype != np.uint64
            or values.shape != (n_thresholds, n_fragments)):
        raise RunChanged(f"{str(work)!r}: the lookup tables ({keys.shape}, {values.shape}) do not match the saved "
                         f"agglomeration ({n_fragments} fragments, {n_thresholds} thresholds); {_RESTART_ADVICE}",
                         ["lookup tables"])


def load_agglomeration(out, *, fragments: bool = False):
    """The global :class:`~xpress_fast.Agglomeration` of a block-wise run in ``out``.

    Its ``fragments`` is None unless ``fragments`` (then the whole fragment volume is read);
    pass the zarr dataset ``open_volume(out, "fragments").data`` to :func:`xpress_fast.sweep`
    as ``fragments=`` to read only the voxels under skeleton nodes. The saved merge history is
    checked (:func:`xpress_fast.load_agglomeration`): a damaged record gives a ValueError.
    """
    from ..io import read_volume
    from ..saved import load_agglomeration as load_saved

    path = Path(out) / WORK / "agglomeration.npz"
    if not path.is_file():
        raise ValueError(f"{str(out)!r} holds no finished agglomeration (run segment first)")
    agg = load_saved(path)
    if fragments:
        agg.fragments = read_volume(out, "fragments").data
    return agg
