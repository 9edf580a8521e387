"""Scores of a segmentation against skeleton ground truth (the XPRESS evaluator), and dense Rand/VOI.

``mode="official"`` reproduces the leaderboard's evaluator (``eval/eval.py`` of
trivoldus28/xray-challenge-eval) including its quirks; ``mode="corrected"`` fixes them. See
``xpress_scores`` for the list, and METRICS.md in the project's shared material for the
definitions. Only the voxels under skeleton nodes are read: scoring costs O(nodes), not
O(volume), and :class:`SkeletonIndex` converts the skeletons once for a sweep over many
segmentations.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Mapping, Optional, TypedDict, cast

import numpy as np
import numpy.typing as npt

from . import _metrics
from ._validate import as_array, check_choice, check_ndim, check_nonempty, check_threads, float_triple, warn_user
from .skeletons import Skeletons, as_skeletons

if TYPE_CHECKING:
    from typing import final

    import networkx as nx

    from ._metrics import RandVoiSums, SkeletonLabelScores, SkeletonLabelScoresMany

    @final  # final: `"split_edges" in raw` then tells the two apart
    class _NodeLabels(TypedDict):
        """What a batched score keeps: the labels it scored (the details are recomputed from them)."""

        labels: npt.NDArray[np.uint64]

    class _Scored(SkeletonLabelScores):
        """The single score kernel's result with the labels it scored."""

        labels: npt.NDArray[np.uint64]
else:  # the two above exist for mypy only (their base is in _metrics.pyi): at run time they are
    _NodeLabels = _Scored = dict  # dicts, so that typing.get_type_hints(XpressScores) resolves

__all__ = ["SkeletonIndex", "erl", "ErlResult", "xpress_scores", "XpressScores", "rand_voi", "RandVoi"]

MODES = ("official", "corrected")
OUTSIDE_POLICIES = ("warn", "drop", "error", "split")
#: One of :data:`MODES` (see :func:`xpress_scores`).
Mode = Literal["official", "corrected"]
#: One of :data:`OUTSIDE_POLICIES` (see :class:`SkeletonIndex`).
Outside = Literal["warn", "drop", "error", "split"]


class SplitLocations(TypedDict):
    """:attr:`XpressScores.split_locations`: one entry per split edge."""

    node_ids: npt.NDArray[np.int64 | np.uint64]  # (K, 2) ids of the original graph
    positions: npt.NDArray[np.float64]  # (K, 2, 3) nm, z y x
    skeleton: npt.NDArray[np.int64]  # (K,) skeleton index of the edge


class MergeLocations(TypedDict):
    """:attr:`XpressScores.merge_locations`: one entry per merged segment and pair of skeletons on it."""

    node_ids: npt.NDArray[np.int64 | np.uint64]  # (K, 2)
    positions: npt.NDArray[np.float64]  # (K, 2, 3) nm, z y x
    skeletons: npt.NDArray[np.int64]  # (K, 2)
    label: npt.NDArray[np.uint64]  # (K,) the segment label (0 for a label-0 voxel)
    distance: npt.NDArray[np.float64]  # (K,) nm


@dataclass(frozen=True)
class ErlResult:
    """Expected run length. ``erl`` in nm; ``nerl`` = erl / mean skeleton length (can exceed 1).

    Per skeleton (indexed as in ``skeleton_ids``): ``skeleton_lengths`` L_s (nm) and
    ``skeleton_erl`` = sum over segments of C[s, g]^2 / L_s, the skeleton's own expected run
    length (0 for a skeleton without edges). NaN ``erl``/``nerl`` when the skeletons in the ROI
    have no edge length at all (nothing to measure).
    """

    erl: float
    nerl: float
    skeleton_ids: npt.NDArray[np.int64]
    skeleton_lengths: npt.NDArray[np.float64]
    skeleton_erl: npt.NDArray[np.float64]


@dataclass(frozen=True)
class XpressScores:
    """The XPRESS scores of one segmentation. See :func:`xpress_scores`."""

    n_neurons: int
    erl: float
    nerl: float
    split_count: int
    merge_count: int
    rand_split: float
    rand_merge: float
    voi_split: float
    voi_merge: float
    nvi_split: float
    nvi_merge: float
    xpress_voi: float
    xpress_rand: float
    xpress_erl_voi: float
    xpress_erl_rand: float
    mode: Mode
    erl_result: ErlResult = field(repr=False)
    _index: SkeletonIndex = field(repr=False, compare=False)
    _raw: _Scored | _NodeLabels = field(repr=False, compare=False)

    SCORE_NAMES = ("n_neurons", "erl", "nerl", "split_count", "merge_count", "rand_split", "rand_merge",
                   "voi_split", "voi_merge", "nvi_split", "nvi_merge", "xpress_voi", "xpress_rand",
                   "xpress_erl_voi", "xpress_erl_rand")

    def as_dict(self) -> dict[str, float]:
        """The scores as plain Python numbers (JSON-ready; NaN stays NaN)."""
        return {name: getattr(self, name) for name in self.SCORE_NAMES}

    @property
    def split_locations(self) -> SplitLocations:
        """Each split edge: ``node_ids`` (K, 2) of the original graph, ``positions`` (K, 2, 3) nm
        z y x, and ``skeleton`` (K,) the skeleton index of the edge."""
        return self._index._split_locations(self._index._full_raw(self._raw)["split_edges"])

    @cached_property
    def merge_locations(self) -> MergeLocations:
        """For each merged segment and each pair of skeletons on it, the closest pair of their
        nodes on that segment: ``node_ids`` (K, 2), ``positions`` (K, 2, 3) nm z y x,
        ``skeletons`` (K, 2), ``label`` (K,) the segment label (0 for a label-0 voxel),
        ``distance`` (K,) nm."""
        return self._index._merge_locations(self._index._full_raw(self._raw))


@dataclass(frozen=True)
class RandVoi:
    """Rand and VOI between a segmentation and a dense ground truth (VOI in bits).

    ``voi_split`` = H(segmentation | ground_truth) (over-segmentation), ``voi_merge`` =
    H(ground_truth | segmentation). ``rand_split`` = sum n_ij^2 / sum a_i^2 and ``rand_merge`` =
    sum n_ij^2 / sum b_j^2 (a: ground-truth sizes, b: segment sizes), the XPRESS definitions.
    ``adapted_rand_error``, ``adapted_rand_precision``, ``adapted_rand_recall`` follow
    ``skimage.metrics.adapted_rand_error`` (pairs of distinct voxels).
    """

    rand_split: float
    rand_merge: float
    voi_split: float
    voi_merge: float
    nvi_split: float
    nvi_merge: float
    adapted_rand_error: float
    adapted_rand_precision: float
    adapted_rand_recall: float
    n_voxels: int


def _div(a: float, b: float) -> float:
    return a / b if b != 0 else math.nan


def _div_many(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``_div`` element by element: ``a / b``, NaN where ``b == 0``."""
    out: npt.NDArray[np.float64] = np.divide(a, b, out=np.full(np.shape(a), math.nan), where=b != 0)
    return out


def _clip(x: float) -> float:
    """``x``, or 0 where rounding made it negative (a VOI)."""
    return max(x, 0.0)


def _clip_many(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.maximum(x, 0.0)


def _rand_voi_scores(sums: Mapping[str, Any], *, nerl: Any = None, corrected: bool = False) -> dict[str, Any]:
    """The Rand/VOI scores from a kernel's contingency sums: the one place they are computed,
    for a single skeleton score, a batch of them and :func:`rand_voi`.

    ``sums`` holds ``sum_n2, sum_a2, sum_b2, h_joint, h_truth, h_test`` (and ``n_voxels`` with
    ``corrected``) as Python numbers, or as arrays with one entry per row (a batch): the result
    is the same kind, Python floats (a single score costs no numpy call) or float64 arrays, by
    the same IEEE operations (the same bits). Returns ``rand_split, rand_merge`` (XPRESS's
    sum n_ij^2 / sum a_i^2, / sum b_j^2), ``voi_split, voi_merge`` (bits, rounding below 0
    clipped), ``nvi_split, nvi_merge`` (voi / H(joint); NaN where it is 0, except,
    ``corrected``, 0 for a single (truth, segment) pair) and, with ``nerl``, ``xpress_voi,
    xpress_rand, xpress_erl_voi, xpress_erl_rand``.
    """
    h_joint = sums["h_joint"]
    many = isinstance(h_joint, np.ndarray)
    div: Callable[[Any, Any], Any] = _div_many if many else _div
    clip: Callable[[Any], Any] = _clip_many if many else _clip
    out = {"rand_split": div(sums["sum_n2"], sums["sum_a2"]), "rand_merge": div(sums["sum_n2"], sums["sum_b2"]),
           "voi_split": clip(h_joint - sums["h_truth"]), "voi_merge": clip(h_joint - sums["h_test"])}
    out["nvi_split"], out["nvi_merge"] = div(out["voi_split"], h_joint), div(out["voi_merge"], h_joint)
    if corrected:  # one pair of labels: nothing split, nothing merged
        single_pair = (h_joint == 0) & (sums["n_voxels"] != 0)
        if many:
            out["nvi_split"][single_pair] = out["nvi_merge"][single_pair] = 0.0
        elif single_pair:
            out["nvi_split"] = out["nvi_merge"] = 0.0
    if nerl is not None:
        out["xpress_voi"] = 1 - (out["nvi_split"] + out["nvi_merge"]) / 2
        out["xpress_rand"] = (out["rand_split"] + out["rand_merge"]) / 2
        out["xpress_erl_voi"] = (nerl + out["xpress_voi"]) / 2
        out["xpress_erl_rand"] = (nerl + out["xpress_rand"]) / 2
    return out


class SkeletonIndex:
    """Skeletons converted once for scoring segmentations of one array geometry.

    Crops the skeletons to the ROI, maps each remaining node to its voxel and assigns skeleton
    identities, so that scoring a segmentation only reads one label per node. Use it for sweeps:
    ``index.score(seg)`` for each segmentation, or ``index.score_node_labels(labels)`` with the
    labels under ``index.node_voxels`` (e.g. fragment ids mapped through an agglomeration).

    Parameters
    ----------
    skeletons : Skeletons or networkx.Graph
    voxel_size : 3 floats, nm (z, y, x)
    offset : 3 floats, nm (z, y, x) — world position of voxel (0, 0, 0)'s corner.
    shape : 3 ints — the segmentation array's shape.
    roi_begin, roi_shape : 3 floats, nm (z, y, x), optional — the evaluation ROI; default the
        whole array. It must lie inside the array and be aligned to the voxel grid.
    mode : "official" or "corrected" — see :func:`xpress_scores`.
    outside : what to do with skeleton nodes outside the segmentation when no ROI is given (a
        segmentation smaller than the skeletons' bounding box): ``"warn"`` (default) drops them
        as the official evaluator does and warns with their count (:class:`XpressWarning`);
        ``"drop"`` drops them silently; ``"error"`` raises ValueError; ``"split"`` counts them as
        errors: each such node is scored as an unlabelled voxel of its own, so its edges are
        splits and its length counts in the total. With an explicit ROI, nodes outside it are
        always dropped (that is the ROI's definition). ``n_outside`` says how many there were.
    """

    def __init__(self, skeletons: Skeletons | nx.Graph, *, voxel_size: npt.ArrayLike, offset: npt.ArrayLike = (0, 0, 0),
                 shape: npt.ArrayLike, roi_begin: npt.ArrayLike | None = None, roi_shape: npt.ArrayLike | None = None,
                 mode: Mode = "official", outside: Outside = "warn") -> None:
        check_choice("mode", mode, MODES)
        check_choice("outside", outside, OUTSIDE_POLICIES)
        self.mode = mode
        self.skeletons = sk = as_skeletons(skeletons)
        if sk.n_nodes == 0:
            raise ValueError("skeletons must hold at least one node; got an empty skeleton graph")
        vs = float_triple("voxel_size", voxel_size, positive=True)
        off = float_triple("offset", offset)
        shp = np.asarray(shape)
        if shp.shape != (3,) or shp.dtype.kind not in "iu" or np.any(shp <= 0):
            raise ValueError(f"shape must be three positive ints (z, y, x); got {shape!r}")
        self.shape = (int(shp[0]), int(shp[1]), int(shp[2]))
        array_end = off + vs * shp
        begin = off.copy() if roi_begin is None else float_triple("roi_begin", roi_begin)
        extent = (array_end - begin) if roi_shape is None else float_triple("roi_shape", roi_shape, positive=True)
        end = begin + extent
        if np.any(begin < off) or np.any(end > array_end):
            raise ValueError(
                f"ROI [{begin.tolist()}, {end.tolist()}) nm must lie inside the segmentation's extent "
                f"[{off.tolist()}, {array_end.tolist()}) nm"
            )
        for name, value in (("roi_begin", begin - off), ("roi_shape", extent)):
            steps = value / vs
            if not np.allclose(steps, np.round(steps), rtol=0, atol=1e-9):
                raise ValueError(f"{name} must be aligned to voxel_size {vs.tolist()} (from offset {off.tolist()}); "
                                 f"got {(begin if name == 'roi_begin' else extent).tolist()}")
        self.voxel_size, self.offset, self.roi_begin, self.roi_end = vs, off, begin, end

        # 1. Node -> voxel: coordinates truncated toward zero, inside iff begin <= int(c) < end;
        #    edges with both ends inside; nodes sharing a voxel share one dense voxel id (their
        #    label, their fresh label-0 segment and their truth).
        whole_array = roi_begin is None and roi_shape is None
        split_outside = whole_array and outside == "split"
        crop_begin, crop_end = (np.full(3, -np.inf), np.full(3, np.inf)) if split_outside else (begin, end)
        cropped = _metrics.skeleton_node_voxels(sk.positions, sk.edges, tuple(crop_begin), tuple(crop_end),
                                                tuple(off), tuple(vs), self.shape)
        outside_mask = None
        if split_outside:  # every node kept; those outside the array get label 0 and a voxel of their own
            trunc = np.trunc(sk.positions)
            outside_mask = ~np.all((trunc >= begin) & (trunc < end), axis=1)
            self.n_outside = int(outside_mask.sum())
            if self.n_outside:
                groups = cropped["voxel_group"].copy()
                groups[outside_mask] = cropped["n_voxels"] + np.arange(self.n_outside)
                _, groups = np.unique(groups, return_inverse=True)  # dense again
                cropped["voxel_group"], cropped["n_voxels"] = groups.astype(np.int64), int(groups.max()) + 1
            else:
                outside_mask = None
        else:
            self.n_outside = int(sk.n_nodes - cropped["nodes"].size) if whole_array else 0
            if self.n_outside and outside == "error":
                raise ValueError(f"{self.n_outside} of {sk.n_nodes} skeleton nodes lie outside the segmentation's "
                                 f"extent [{begin.tolist()}, {end.tolist()}) nm (outside='error')")
            if self.n_outside and outside == "warn":
                warn_user(f"{self.n_outside} of {sk.n_nodes} skeleton nodes lie outside the segmentation's "
                          f"extent [{begin.tolist()}, {end.tolist()}) nm and are left out of the scores; "
                          "pass outside='split' to count them as split errors or outside='drop' to drop "
                          "them silently")
        self._outside = outside_mask  # nodes whose label is forced to 0, or None
        nodes = self.nodes = cropped["nodes"]  # indices into skeletons' nodes, in graph order
        self.edges = cropped["edges"]
        self.edge_ids = cropped["edge_ids"]
        self.edge_length = cropped["edge_length"]
        self.node_voxels = cropped["voxels"]
        self.voxel_index = cropped["voxel_index"]
        self.voxel_group = cropped["voxel_group"]
        self.n_voxels = int(cropped["n_voxels"])
        for arr in (self.nodes, self.edges, self.edge_ids, self.edge_length, self.node_voxels, self.voxel_index,
                    self.voxel_group):
            arr.flags.writeable = False

        # 2. Skeleton identities: components of the cropped graph (official) or of the whole
        #    graph (corrected: a neuron leaving and re-entering the ROI stays one neuron).
        if mode == "official":
            comp = _metrics.components(nodes.size, self.edges)
        else:
            # dense, in the order of the whole graph's components (by first node, as networkx
            # enumerates them): the order in which the truth raster writes them (a shared voxel
            # holds the later one)
            _, comp = np.unique(sk.component_ids()[nodes], return_inverse=True)
        self.node_skeleton = comp.astype(np.int64)
        self.n_neurons = int(self.node_skeleton.max()) + 1 if nodes.size else 0

    @property
    def n_nodes(self) -> int:
        """Nodes inside the ROI."""
        return int(self.nodes.size)

    # -- scoring -------------------------------------------------------------------------------
    def labels_under_nodes(self, segmentation: npt.ArrayLike) -> npt.NDArray[np.uint64]:
        """The label under each node inside the ROI, as uint64 (reads N voxels, copies nothing)."""
        seg = as_array("segmentation", segmentation)
        if seg.dtype == np.bool_ or seg.dtype.kind not in "iu":
            raise TypeError(
                "segmentation must have an integer label dtype (uint8..uint64 or non-negative int8..int64); "
                f"got {seg.dtype}"
            )
        check_ndim("segmentation", seg, 3, "z, y, x")
        if seg.shape != self.shape:
            raise ValueError(f"segmentation must have shape {self.shape} (as the index was built for); got {seg.shape}")
        if seg.flags.c_contiguous:
            labels = np.take(seg.reshape(-1), self.voxel_index)  # a view: reads N voxels only
        else:
            labels = seg[tuple(self.node_voxels.T)]
        if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
            raise ValueError(f"segmentation must not hold negative labels; found {labels.min()} under a skeleton node")
        labels = labels.astype(np.uint64)
        if self._outside is not None:
            labels[self._outside] = 0
        return labels

    def score(self, segmentation: npt.ArrayLike) -> XpressScores:
        """All XPRESS scores of ``segmentation`` (shape as given to the index)."""
        return self.score_node_labels(self.labels_under_nodes(segmentation))

    def score_node_labels(self, labels: npt.ArrayLike) -> XpressScores:
        """Scores from the segment label under each node (``(n_nodes,)``, aligned with ``node_voxels``)."""
        lab = self._node_labels("labels", labels, (self.n_nodes,))
        raw: _Scored = {**_metrics.score_skeleton_labels(lab, *self._kernel_args()), "labels": lab}
        return self._scores(raw)

    def score_node_labels_many(self, labels: npt.ArrayLike) -> list[XpressScores]:
        """Scores of many label vectors at once, ``labels`` of shape ``(T, n_nodes)`` (e.g. one
        row per threshold of a sweep): one kernel call, the same results as calling
        :meth:`score_node_labels` on each row (locations are computed when asked for)."""
        lab = self._node_labels("labels", labels, (None, self.n_nodes))
        many = _metrics.score_skeleton_labels_many(lab, *self._kernel_args())
        return self._scores_many(many, lab)

    def _scores_many(self, many: SkeletonLabelScoresMany, lab: npt.NDArray[np.uint64]) -> list[XpressScores]:
        """:meth:`_scores` of every row of a batched kernel result, computed column by column.

        The arithmetic is :meth:`_scores`' (:func:`_rand_voi_scores`, on arrays: the same IEEE
        operations, so the same bits); only building the T result objects is left per row, as a
        sweep would otherwise spend more time in Python than in the kernel.
        """
        official = self.mode == "official"
        lengths = many["skeleton_length"][: self.n_neurons]
        lengths.flags.writeable = False  # shared by every row's ErlResult
        positive = lengths[lengths > 0]
        erl_value = many["erl"]
        nerl = erl_value / positive.mean() if positive.size else np.full(erl_value.shape, math.nan)
        columns = {"erl": erl_value, "nerl": nerl, "split_count": many["split_count"],
                   "merge_count": many["merge_count"], **_rand_voi_scores(many, nerl=nerl, corrected=not official)}
        names = list(columns)
        rows = zip(*(columns[name].tolist() for name in names))  # plain Python numbers, as _scores gives
        skeleton_ids = np.arange(self.n_neurons)
        skeleton_ids.flags.writeable = False
        skeleton_erl = many["skeleton_erl"][:, : self.n_neurons]
        out = []
        for t, values in enumerate(rows):
            row = dict(zip(names, values))
            erl_result = ErlResult(erl=row["erl"], nerl=row["nerl"], skeleton_ids=skeleton_ids,
                                   skeleton_lengths=lengths, skeleton_erl=skeleton_erl[t])
            # the per-edge / per-node outputs behind the locations are recomputed from the labels
            out.append(XpressScores(n_neurons=self.n_neurons, **row, mode=self.mode, erl_result=erl_result,
                                    _index=self, _raw={"labels": lab[t]}))
        return out

    def _node_labels(self, name: str, labels: npt.ArrayLike, shape: tuple[int | None, ...]) -> npt.NDArray[np.uint64]:
        lab = as_array(name, labels)
        if lab.dtype == np.bool_ or lab.dtype.kind not in "iu":
            raise TypeError(f"{name} must be integers; got dtype {lab.dtype}")
        if lab.ndim != len(shape) or any(want is not None and got != want for got, want in zip(lab.shape, shape)):
            what = "(n_nodes,)" if len(shape) == 1 else "(T, n_nodes)"
            raise ValueError(f"{name} must have shape {what} = {tuple('T' if s is None else s for s in shape)}, "
                             f"one per node in the ROI; got {lab.shape}")
        if lab.dtype.kind == "i" and lab.size and lab.min() < 0:
            raise ValueError(f"{name} must not be negative; got {lab.min()}")
        if self._outside is not None:  # nodes outside the array (outside="split"): unlabelled
            lab = np.array(lab, dtype=np.uint64)
            lab[..., self._outside] = 0
            return lab
        return np.ascontiguousarray(lab, dtype=np.uint64)

    def _kernel_args(self) -> tuple[npt.NDArray[np.int64], int, npt.NDArray[np.int64], int, npt.NDArray[np.int64],
                                    npt.NDArray[np.float64], bool, bool]:
        official = self.mode == "official"
        return (self.voxel_group, self.n_voxels, self.node_skeleton, max(self.n_neurons, 1), self.edges,
                self.edge_length, official, not official)

    def _full_raw(self, raw: _Scored | _NodeLabels) -> _Scored:
        """The per-edge / per-node outputs of a batched score, recomputed for its labels."""
        if "split_edges" in raw:
            return raw
        full = cast("_Scored", raw)  # it is, once the kernel's outputs are in it (kept with the scores)
        full.update({**_metrics.score_skeleton_labels(raw["labels"], *self._kernel_args()), "labels": raw["labels"]})
        return full

    def _scores(self, raw: _Scored) -> XpressScores:
        lengths = raw["skeleton_length"][: self.n_neurons]
        positive = lengths[lengths > 0]
        erl_value = raw["erl"]
        nerl = float(erl_value / positive.mean()) if positive.size else math.nan  # a Python float, as every score
        erl_result = ErlResult(erl=float(erl_value), nerl=nerl, skeleton_ids=np.arange(self.n_neurons),
                               skeleton_lengths=lengths, skeleton_erl=raw["skeleton_erl"][: self.n_neurons])
        # with no counted voxel the entropies are all 0, as in the official code (VOI 0, nvi NaN)
        scores = _rand_voi_scores(raw, nerl=nerl, corrected=self.mode != "official")
        return XpressScores(
            n_neurons=self.n_neurons, erl=float(erl_value), nerl=nerl, split_count=int(raw["split_count"]),
            merge_count=int(raw["merge_count"]), **scores, mode=self.mode, erl_result=erl_result, _index=self,
            _raw=raw,
        )

    # -- locations -----------------------------------------------------------------------------
    def _split_locations(self, split_edges: npt.NDArray[np.int64]) -> SplitLocations:
        pairs = self.nodes[self.edges[split_edges]].reshape(-1, 2)
        return {
            "node_ids": self.skeletons.node_ids[pairs],
            "positions": self.skeletons.positions[pairs],
            "skeleton": self.node_skeleton[self.edges[split_edges, 0]] if split_edges.size else
            np.zeros(0, dtype=np.int64),
        }

    def _merge_locations(self, raw: _Scored) -> MergeLocations:
        positions = np.ascontiguousarray(self.skeletons.positions[self.nodes])
        loc = _metrics.merge_locations(raw["node_segment"], self.node_skeleton, positions, raw["segment_merged"])
        pairs = np.stack([loc["node_a"], loc["node_b"]], axis=1).reshape(-1, 2)
        labels = np.asarray(raw["labels"], dtype=np.uint64)
        return {
            "node_ids": self.skeletons.node_ids[self.nodes[pairs]],
            "positions": positions[pairs],
            "skeletons": np.stack([loc["skeleton_a"], loc["skeleton_b"]], axis=1).reshape(-1, 2),
            "label": labels[pairs[:, 0]] if pairs.size else np.zeros(0, dtype=np.uint64),
            "distance": loc["distance"],
        }


def xpress_scores(segmentation: npt.ArrayLike, skeletons: Skeletons | nx.Graph, *, voxel_size: npt.ArrayLike,
                  offset: npt.ArrayLike = (0, 0, 0), roi_begin: npt.ArrayLike | None = None,
                  roi_shape: npt.ArrayLike | None = None, mode: Mode = "official", outside: Outside = "warn"
                  ) -> XpressScores:
    """Score a segmentation against skeletons as the XPRESS challenge does.

    Parameters
    ----------
    segmentation : (Z, Y, X) integer array
        Any unsigned, or non-negative signed, integer dtype; labels up to 2**64 - 1 are exact.
        Only the voxels under skeleton nodes are read; the array is never modified.
    skeletons : Skeletons or networkx.Graph
        Ground truth; a graph's nodes carry ``position = (x, y, z)`` nm (the challenge format).
    voxel_size, offset : 3 floats, nm (z, y, x)
        The segmentation's voxel size and world offset (HDF5 attrs ``resolution``/``offset``).
    roi_begin, roi_shape : 3 floats, nm (z, y, x), optional
        The evaluation ROI (e.g. ``xpress_fast.VALIDATION_ROI``); default the whole array.
    mode : {"official", "corrected"}
        ``"official"`` reproduces the leaderboard's numbers, quirks included:
        (1) the first skeleton component is left out of Rand/VOI (its raster index is 0, i.e.
        background); (2) skeleton identities are the connected components of the *cropped*
        graph, so a neuron that leaves and re-enters the ROI becomes several neurons, and one
        label across its pieces scores as a merge; (3) a node on label 0 gets a fresh label per
        voxel, shared by all nodes in that voxel (also across skeletons, which is then a merge).
        ``"corrected"`` fixes them: (1) every skeleton counts in Rand/VOI; (2) identities are the
        components of the whole graph; (3) an edge touching a label-0 node is never correct (a
        split) and label-0 voxels never count as merges (each is still its own segment in
        Rand/VOI); and a Rand/VOI over a single (truth, segment) pair gives nvi = 0 instead of NaN.
        In both modes Rand/VOI count each voxel under a node once, and a voxel holding nodes of
        several skeletons belongs to the *last* of them in component order (components numbered
        by first node in graph order; of the cropped graph in official mode, of the whole graph
        in corrected mode): the official code writes its truth raster skeleton by skeleton.
    outside : {"warn", "drop", "error", "split"}
        Skeleton nodes outside a segmentation smaller than the skeletons (no ROI given): dropped
        with a warning (default), dropped silently, an error, or scored as split errors. See
        :class:`SkeletonIndex`.

    Returns
    -------
    XpressScores
        ``n_neurons, erl (nm), nerl, split_count, merge_count, rand_split, rand_merge, voi_split,
        voi_merge (bits), nvi_split, nvi_merge, xpress_voi, xpress_rand, xpress_erl_voi,
        xpress_erl_rand`` (the ranking score), ``split_locations`` and ``merge_locations``.
        ``merge_count`` is the intended count, sum over segments of C(k, 2) with k the skeletons
        on the segment (the official code inflates it through a bug; we do not reproduce that).
        Undefined quantities are NaN, never an error: ERL/nERL when the skeletons in the ROI have
        no edge length; Rand/VOI when no voxel is counted; nvi (official mode) when the joint
        entropy is 0.
    """
    seg = as_array("segmentation", segmentation)
    check_ndim("segmentation", seg, 3, "z, y, x")
    check_nonempty("segmentation", seg)
    index = SkeletonIndex(skeletons, voxel_size=voxel_size, offset=offset, shape=seg.shape, roi_begin=roi_begin,
                          roi_shape=roi_shape, mode=mode, outside=outside)
    return index.score(seg)


def erl(segmentation: npt.ArrayLike, skeletons: Skeletons | nx.Graph, *, voxel_size: npt.ArrayLike,
        offset: npt.ArrayLike = (0, 0, 0), roi_begin: npt.ArrayLike | None = None,
        roi_shape: npt.ArrayLike | None = None, mode: Mode = "official", outside: Outside = "warn") -> ErlResult:
    """Expected run length of ``segmentation`` along ``skeletons`` (see :func:`xpress_scores`)."""
    return xpress_scores(segmentation, skeletons, voxel_size=voxel_size, offset=offset, roi_begin=roi_begin,
                         roi_shape=roi_shape, mode=mode, outside=outside).erl_result


_UNSIGNED: dict[int, type[np.unsignedinteger[Any]]] = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def rand_voi(segmentation: npt.ArrayLike, ground_truth: npt.ArrayLike, *, ignore_labels: Iterable[int] | None = (0,),
             threads: Optional[int] = None,
             n_threads: Optional[int] = None) -> RandVoi:
    """Rand and VOI (bits) between two dense label volumes of the same shape.

    Voxels whose *ground-truth* label is in ``ignore_labels`` are not counted (scikit-image's
    convention); label 0 of the segmentation is an ordinary segment. ``voi_split, voi_merge``
    equal ``skimage.metrics.variation_of_information(ground_truth, segmentation,
    ignore_labels=...)``, in that order. Any integer dtypes (non-negative); runs on
    ``threads`` threads (default: the CPU count, at most 8, as every ``threads=`` of the
    package); the result does not depend on it.

    .. deprecated:: 0.2
        ``n_threads`` is the old name of ``threads`` (its 0 meant the default, now ``None``);
        it still works, with a FutureWarning, and goes in 0.3.
    """
    if n_threads is not None:
        if threads is not None:
            raise TypeError("rand_voi got both threads and n_threads (its old name); give threads only")
        warnings.warn("rand_voi(n_threads=...) is deprecated and goes in 0.3; use threads=... (None for the default)",
                      FutureWarning, stacklevel=2)
        threads = None if n_threads == 0 else n_threads
    threads = check_threads(threads)
    seg = _dense_labels("segmentation", segmentation)
    gt = _dense_labels("ground_truth", ground_truth)
    if seg.shape != gt.shape:
        raise ValueError(f"segmentation and ground_truth must have the same shape; got {seg.shape} and {gt.shape}")
    ignore_values = _ignore_list(ignore_labels)
    # One dtype for both volumes: views where their widths agree, otherwise the wider one.
    target = _UNSIGNED[max(seg.dtype.itemsize, gt.dtype.itemsize)]
    if seg.dtype.itemsize == gt.dtype.itemsize:
        seg_u, gt_u = seg.view(target), gt.view(target)
    else:
        seg_u, gt_u = seg.astype(target), gt.astype(target)
    info = np.iinfo(target)
    ignore = np.array([x for x in ignore_values if 0 <= x <= info.max], dtype=target)
    kernel = getattr(_metrics, f"rand_voi_sums_{np.dtype(target).name}")
    s: RandVoiSums = kernel(np.ascontiguousarray(seg_u).ravel(), np.ascontiguousarray(gt_u).ravel(), ignore, threads)
    n = s["n"]
    scores = _rand_voi_scores(s)
    if not n:  # nothing counted: no VOI (skimage's convention), hence no nvi either
        scores.update(voi_split=math.nan, voi_merge=math.nan, nvi_split=math.nan, nvi_merge=math.nan)
    # skimage's naming: "precision" normalises by ground-truth pairs, "recall" by segment pairs
    precision = _div(s["sum_n2"] - n, s["sum_a2"] - n)
    recall = _div(s["sum_n2"] - n, s["sum_b2"] - n)
    # the F-score of precision and recall, written so that it is defined (0) when no pair of
    # distinct voxels shares both labels: 2PR/(P+R) = 2 sum_n2' / (sum_a2' + sum_b2')
    are = 1.0 - _div(2 * (s["sum_n2"] - n), (s["sum_a2"] - n) + (s["sum_b2"] - n))
    return RandVoi(**scores, adapted_rand_error=are, adapted_rand_precision=precision, adapted_rand_recall=recall,
                   n_voxels=int(n))


def _ignore_list(ignore_labels: Iterable[int] | None) -> list[int]:
    if ignore_labels is None:
        return []
    try:
        values = list(ignore_labels)
    except TypeError:
        raise TypeError(f"ignore_labels must be a sequence of integer labels; got {ignore_labels!r}") from None
    out = []
    for x in values:
        if np.ndim(x) != 0:
            raise ValueError(f"ignore_labels must be a flat sequence of labels; got {ignore_labels!r}")
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, np.integer)):
            raise TypeError(f"ignore_labels must hold integer labels; got {x!r} in {ignore_labels!r}")
        out.append(int(x))
    return out


def _dense_labels(name: str, value: npt.ArrayLike) -> npt.NDArray[Any]:
    arr = as_array(name, value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must have an integer label dtype (uint8..uint64 or non-negative int8..int64); got {arr.dtype}"
        )
    check_nonempty(name, arr)
    if arr.dtype.kind == "i" and arr.min() < 0:
        raise ValueError(f"{name} must not contain negative labels; got minimum {arr.min()}")
    return arr
