"""XPRESS scores for every threshold of one agglomeration, without a volume per threshold.

A sweep reads the fragment id under each skeleton node **once** (``SkeletonIndex.node_voxels``),
maps those few ids through the agglomeration's merge history for every threshold in one pass
(``Agglomeration.map_many``) and scores all thresholds' labels in one kernel call
(``SkeletonIndex.score_node_labels_many``). No segmentation volume is relabelled or written per
threshold, so 19 thresholds cost less than twice the scoring of one in-memory segmentation. Use it to pick a threshold, or a checkpoint inside a training loop.

Example
-------
>>> agg = xpress_fast.merge_history(affs, [0.3, 0.5, 0.7], fragments=fragments)   # doctest: +SKIP
>>> result = xpress_fast.sweep(agg, skeletons, voxel_size=(33, 33, 33))         # doctest: +SKIP
>>> result.best()["threshold"]                                                  # doctest: +SKIP
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Protocol, Sequence, Union

import numpy as np
import numpy.typing as npt

from ._typing import ArraySource
from ._validate import check_thresholds
from .metrics import XpressScores

if TYPE_CHECKING:
    import networkx as nx

    from .metrics import Mode, SkeletonIndex
    from .skeletons import Skeletons

log = logging.getLogger(__name__)

__all__ = ["sweep", "SweepResult", "node_fragment_ids", "sweep_methods", "MethodSweepResult",
           "DEFAULT_SWEEP_MERGE_FUNCTIONS", "DEFAULT_THRESHOLDS"]

#: The thresholds a sweep scores by default: 0.05, 0.10, ..., 0.95, the XPRESS baseline's.
DEFAULT_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 20))

#: The merge functions :func:`sweep_methods` tries by default (the baseline's three and two more).
DEFAULT_SWEEP_MERGE_FUNCTIONS = ("hist_quant_50", "hist_quant_75", "hist_quant_90", "mean", "max")

#: One row of :class:`MethodSweepResult` (JSON-ready: names, numbers, None).
MethodRow = dict[str, Union[str, float, None]]


class AgglomerationLike(Protocol):
    """What :func:`sweep` needs of an agglomeration (:class:`~xpress_fast.Agglomeration` has it):
    ``map``, and optionally ``map_many``, ``fragments`` and ``thresholds``."""

    def map(self, fragment_ids: npt.NDArray[np.uint64], threshold: float, /) -> npt.ArrayLike: ...


class ProgressBar(Protocol):
    """The part of a tqdm bar that :func:`sweep` uses."""

    def update(self, n: int, /) -> object: ...

    def close(self) -> object: ...


@dataclass(frozen=True)
class SweepResult:
    """Scores per threshold.

    Attributes
    ----------
    thresholds : (T,) float64
    scores : tuple of XpressScores, one per threshold
    """

    thresholds: npt.NDArray[np.float64]
    scores: tuple[XpressScores, ...]

    def rows(self) -> list[dict[str, float]]:
        """One dict per threshold: ``threshold`` and every score of ``XpressScores.as_dict``."""
        return [{"threshold": float(t), **s.as_dict()} for t, s in zip(self.thresholds, self.scores)]

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """One score over the thresholds, e.g. ``column("nerl")``."""
        return np.array([getattr(s, name) for s in self.scores], dtype=np.float64)

    def best(self, key: str = "xpress_erl_rand") -> dict[str, float]:
        """The row with the highest ``key`` (NaN never wins)."""
        values = self.column(key)
        finite = np.where(np.isnan(values), -np.inf, values)
        return self.rows()[int(np.argmax(finite))]


def node_fragment_ids(fragments: ArraySource, node_voxels: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """The fragment id under each node voxel ``(M, 3)``, uint64.

    ``fragments`` is a numpy array or an open h5py/zarr dataset; for the latter only the chunks
    that hold nodes are read (sorted coordinate reads, one per node-holding z-slab).
    """
    vox = np.asarray(node_voxels, dtype=np.int64).reshape(-1, 3)
    if isinstance(fragments, np.ndarray):
        under: npt.NDArray[np.uint64] = fragments[tuple(vox.T)].astype(np.uint64)
        return under
    out = np.zeros(vox.shape[0], dtype=np.uint64)
    if vox.shape[0] == 0:
        return out
    # read z-slabs of the chunk height, only those that hold nodes
    chunks = getattr(fragments, "chunks", None) or (64,)
    step = int(chunks[0]) if chunks else 64
    slab = vox[:, 0] // step
    order = np.argsort(slab, kind="stable")
    bounds = np.flatnonzero(np.diff(slab[order])) + 1
    for group in np.split(order, bounds):
        z0 = int(slab[group[0]]) * step
        z1 = min(z0 + step, fragments.shape[0])
        v = vox[group]
        y0, y1 = int(v[:, 1].min()), int(v[:, 1].max()) + 1
        x0, x1 = int(v[:, 2].min()), int(v[:, 2].max()) + 1
        block = np.asarray(fragments[z0:z1, y0:y1, x0:x1])
        out[group] = block[v[:, 0] - z0, v[:, 1] - y0, v[:, 2] - x0]
    return out


def _node_labels(agglomeration: AgglomerationLike, ids: npt.NDArray[np.uint64], thresholds: npt.NDArray[np.float64]
                 ) -> npt.NDArray[np.uint64]:
    """``(T, M)`` uint64: the segment of each node's fragment ``ids`` at each threshold.

    An :class:`~xpress_fast.Agglomeration` answers every threshold from one pass over its merge
    history (``map_many``); other objects are asked threshold by threshold through ``map``.
    Fragment 0 (background) stays 0.
    """
    ts = [float(t) for t in thresholds]
    map_many = getattr(agglomeration, "map_many", None)
    if callable(map_many):
        rows = np.asarray(map_many(ids, ts), dtype=np.uint64).reshape(len(ts), ids.size)
    else:
        rows = np.stack([np.asarray(agglomeration.map(ids, t), dtype=np.uint64) for t in ts]).reshape(
            len(ts), ids.size)
    background = ids == 0
    if background.any():  # only a region graph that holds fragment 0 could map it elsewhere
        rows = np.where(background, np.uint64(0), rows)
    return rows


def _skeleton_index(skeletons: SkeletonIndex | Skeletons | nx.Graph, shape: tuple[int, ...], whose: str, *,
                    voxel_size: npt.ArrayLike | None, offset: npt.ArrayLike, roi_begin: npt.ArrayLike | None,
                    roi_shape: npt.ArrayLike | None, mode: Mode) -> SkeletonIndex:
    """``skeletons`` as a SkeletonIndex for a volume of ``shape`` (``whose``: how an error names it)."""
    from .metrics import SkeletonIndex

    if isinstance(skeletons, SkeletonIndex):
        if voxel_size is not None or roi_begin is not None or roi_shape is not None:
            raise ValueError("voxel_size/roi_begin/roi_shape must not be given with a SkeletonIndex")
        if skeletons.shape != shape:
            raise ValueError(f"skeletons (a SkeletonIndex) was built for shape {skeletons.shape}; {whose} {shape}")
        return skeletons
    if voxel_size is None:
        raise ValueError("voxel_size is required unless skeletons is a SkeletonIndex")
    return SkeletonIndex(skeletons, voxel_size=voxel_size, offset=offset, shape=shape,
                         roi_begin=roi_begin, roi_shape=roi_shape, mode=mode)


def sweep(
    agglomeration: AgglomerationLike,
    skeletons: SkeletonIndex | Skeletons | nx.Graph,
    thresholds: Optional[npt.ArrayLike] = None,
    *,
    voxel_size: npt.ArrayLike | None = None,
    offset: npt.ArrayLike = (0, 0, 0),
    roi_begin: npt.ArrayLike | None = None,
    roi_shape: npt.ArrayLike | None = None,
    mode: Mode = "official",
    fragments: ArraySource | None = None,
    progress: Callable[..., ProgressBar] | None = None,
) -> SweepResult:
    """Score every threshold of one agglomeration against skeletons.

    Parameters
    ----------
    agglomeration : Agglomeration
        From :func:`xpress_fast.merge_history` (anything with
        ``.fragments`` and ``.map(fragment_ids, threshold)`` works).
    skeletons : SkeletonIndex, Skeletons or networkx.Graph
        A :class:`~xpress_fast.SkeletonIndex` built for the fragments' shape (then
        ``voxel_size``/``offset``/ROI must not be given), or skeletons plus ``voxel_size``.
    thresholds : sequence of float, optional
        Strictly increasing, in [0, 1]; default: the agglomeration's own thresholds.
    voxel_size, offset : 3 numbers, nm (z, y, x)
    roi_begin, roi_shape : 3 numbers, nm, optional — the evaluation ROI (default: whole array).
    mode : "official" or "corrected" — see :func:`xpress_fast.xpress_scores`.
    fragments : array-like, optional
        Where to read the fragment ids from instead of ``agglomeration.fragments`` (e.g. the
        zarr dataset of a block-wise run); only the voxels under nodes are read.
    progress : callable, optional
        ``progress(total=T)`` returning a tqdm-like bar (the CLI passes one).

    Returns
    -------
    SweepResult
        ``scores[i]`` equals ``xpress_scores(agglomeration.segmentation(thresholds[i]), ...)``.
    """
    if not callable(getattr(agglomeration, "map", None)):
        raise TypeError(f"agglomeration must be an Agglomeration; got {type(agglomeration).__name__}")
    frag: ArraySource | None = getattr(agglomeration, "fragments", None) if fragments is None else fragments
    if frag is None or not hasattr(frag, "shape"):
        raise TypeError("agglomeration must carry its fragments (or pass fragments=); got none")
    shape = tuple(int(s) for s in frag.shape)
    if len(shape) != 3:
        raise ValueError(f"fragments must be 3-dimensional (z, y, x); got shape {shape}")
    index = _skeleton_index(skeletons, shape, "the fragments have shape", voxel_size=voxel_size, offset=offset,
                            roi_begin=roi_begin, roi_shape=roi_shape, mode=mode)
    if thresholds is None:
        thresholds = getattr(agglomeration, "thresholds", None)
        if thresholds is None:
            raise ValueError("thresholds are required (the agglomeration names none)")
    ts = check_thresholds("thresholds", thresholds)

    ids = node_fragment_ids(frag, index.node_voxels)  # the one read of the volume
    bar = progress(total=len(ts)) if progress is not None else None
    labels = _node_labels(agglomeration, ids, ts)
    if bar is not None:
        bar.update(len(ts))
        bar.close()
    scores = index.score_node_labels_many(labels)  # one kernel call for every threshold
    log.info("sweep: %d thresholds scored from %d node labels", len(ts), index.n_nodes)
    return SweepResult(ts, tuple(scores))


@dataclass(frozen=True)
class MethodSweepResult:
    """Scores for every method x threshold of :func:`sweep_methods`.

    Attributes
    ----------
    rows : tuple of dict
        One per (method, threshold): ``method`` (``"agglomerate"``, ``"agglomerate-longrange"``
        or ``"mutex"``), ``merge_function`` (None for mutex), ``threshold`` (the mutex's bias),
        and every score of ``XpressScores.as_dict``.
    """

    rows: tuple[MethodRow, ...]

    def best(self, key: str = "xpress_erl_rand") -> MethodRow:
        """The row with the highest ``key`` (NaN never wins; the first of equal rows)."""
        values = np.array([r[key] for r in self.rows], dtype=np.float64)
        return dict(self.rows[int(np.argmax(np.where(np.isnan(values), -np.inf, values)))])

    def choice(self, key: str = "xpress_erl_rand") -> MethodRow:
        """The best row's settings, as ``segment`` takes them: method, merge_function, threshold,
        uses_offsets, and the score it reached."""
        b = self.best(key)
        return {"method": b["method"], "merge_function": b["merge_function"], "threshold": b["threshold"],
                "uses_offsets": b["method"] in ("agglomerate-longrange", "mutex"), key: b[key]}


def sweep_methods(
    affs: npt.ArrayLike,
    skeletons: SkeletonIndex | Skeletons | nx.Graph,
    thresholds: Optional[npt.ArrayLike] = None,
    *,
    merge_functions: Sequence[str] = DEFAULT_SWEEP_MERGE_FUNCTIONS,
    offsets: npt.ArrayLike | None = None,
    mutex_biases: Optional[npt.ArrayLike] = None,
    fragments: npt.ArrayLike | None = None,
    watershed_options: Mapping[str, Any] | None = None,
    inside_threshold: float | None = 0.5,
    voxel_size: npt.ArrayLike | None = None,
    offset: npt.ArrayLike = (0, 0, 0),
    roi_begin: npt.ArrayLike | None = None,
    roi_shape: npt.ArrayLike | None = None,
    mode: Mode = "official",
) -> MethodSweepResult:
    """Score every merge function x threshold (and the long-range methods) against skeletons.

    The fragments are made once (or given); for each merge function one merge run serves every
    threshold (:func:`sweep`). With ``offsets`` (one per channel of ``affs``) each merge function
    is also run with the long-range evidence (``agglomerate(..., offsets=offsets)``), and with
    ``mutex_biases`` the mutex watershed runs once per bias (its rows' ``threshold`` is the bias).

    Parameters
    ----------
    affs : (C, Z, Y, X) float32 in [0, 1] or uint8
    skeletons : Skeletons, networkx.Graph or SkeletonIndex (built for the volume's shape)
    thresholds : strictly increasing floats in [0, 1]; default 0.05, 0.10, ..., 0.95
    merge_functions : names from :data:`xpress_fast.MERGE_FUNCTIONS`
    offsets : C integer triples, optional
    mutex_biases : floats in [0, 1], optional (needs ``offsets``)
    fragments, watershed_options, inside_threshold : as for :func:`xpress_fast.agglomerate`
    voxel_size, offset, roi_begin, roi_shape, mode : as for :func:`sweep`

    Returns
    -------
    MethodSweepResult
        ``.best()`` is the row of the highest XPRESS ERL+Rand; ``.choice()`` its settings.
    """
    from ._validate import label_array
    from .agglomeration import _make_fragments, agglomerate_graph, check_merge_function, needs_histograms
    from .fragments import check_affinities
    from .mutex import mutex_watershed
    from .region_graphs import _region_graph, check_offsets

    affs = check_affinities(affs, offsets_given=offsets is not None)
    names = [merge_functions] if isinstance(merge_functions, str) else list(merge_functions)
    if not names:
        raise ValueError("merge_functions must name at least one merge function")
    for name in names:
        check_merge_function(name)
    ts = check_thresholds("thresholds", DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    if offsets is not None:
        check_offsets(offsets, affs.shape[0])
    biases = [] if mutex_biases is None else list(check_thresholds("mutex_biases", mutex_biases))
    if biases and offsets is None:
        raise ValueError("mutex_biases needs offsets (one per channel of affs)")
    index = _skeleton_index(skeletons, tuple(affs.shape[1:]), "affs has spatial shape", voxel_size=voxel_size,
                            offset=offset, roi_begin=roi_begin, roi_shape=roi_shape, mode=mode)
    fragments = _make_fragments(affs, watershed_options) if fragments is None else label_array("fragments", fragments)
    needs_hist = any(needs_histograms(name) for name in names)
    rows: list[MethodRow] = []
    variants: list[tuple[str, npt.ArrayLike | None]] = [("agglomerate", None)]
    variants += [("agglomerate-longrange", offsets)] if offsets is not None else []
    for method, offs in variants:
        # one region graph per variant serves every merge function (what agglomerate would build)
        graph = _region_graph(fragments, affs, histograms=needs_hist, offsets=offs, inside_threshold=inside_threshold)
        for name in names:
            agg = agglomerate_graph(graph, ts, merge_function=name, fragments=fragments)
            for row in sweep(agg, index).rows():
                rows.append({"method": method, "merge_function": name, **row})
    for bias in biases:
        assert offsets is not None  # mutex_biases without offsets was refused above
        seg = mutex_watershed(affs, offsets, bias=float(bias))
        rows.append({"method": "mutex", "merge_function": None, "threshold": float(bias),
                     **index.score(seg).as_dict()})
    log.info("sweep_methods: %d rows", len(rows))
    return MethodSweepResult(tuple(rows))
