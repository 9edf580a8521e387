"""Training targets: affinities from voxel labels or from rasterised skeletons.

Convention (the package's): channel ``c`` of an affinity volume links voxel ``v`` to
``v + offsets[c]``; pairs whose partner lies outside the volume are masked out.

* **Voxel labels** (``ignore_zero=False``): label 0 is background (myelin / extracellular space);
  the affinity is 1 iff both voxels carry the same non-zero label. Every in-volume pair is
  supervised unless an optional voxel ``labelled`` mask excludes one of its voxels.
* **Skeleton labels** (``ignore_zero=True``): label 0 means *unknown*; only pairs whose voxels are
  both labelled are supervised, with affinity 1 for the same id and 0 for different ids. The
  long-range offsets then supply the negatives between neighbouring axons.

Targets are computed with numpy (they are produced in the data loader, per crop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from .._validate import as_array, float_triple, int_triple, label_array

__all__ = [
    "AffinityTargets", "affinities_from_labels", "grow_boundary", "rasterize_skeletons",
    "check_skeletons_in_volume", "gap_negatives",
]


@dataclass(frozen=True)
class AffinityTargets:
    """``affinities`` (C, Z, Y, X) float32 in {0, 1} and ``mask`` (C, Z, Y, X) float32 in {0, 1}."""

    affinities: np.ndarray
    mask: np.ndarray


def _check_offsets(offsets) -> np.ndarray:
    arr = np.asarray(offsets)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] == 0 or arr.dtype.kind not in "iu":
        raise ValueError(f"offsets must be a non-empty (C, 3) integer array; got {offsets!r}")
    return arr.astype(np.int64)


def _pair_slices(shape: Sequence[int], off: Sequence[int]):
    """Slices ``(src, dst)`` so that ``a[src]`` holds voxels v and ``a[dst]`` their partners v + off."""
    src, dst = [], []
    for s, o in zip(shape, off):
        if abs(o) >= s:
            return None
        if o >= 0:
            src.append(slice(0, s - o))
            dst.append(slice(o, s))
        else:
            src.append(slice(-o, s))
            dst.append(slice(0, s + o))
    return tuple(src), tuple(dst)


def affinities_from_labels(
    labels,
    offsets: Sequence[Sequence[int]],
    *,
    ignore_zero: bool = False,
    labelled=None,
) -> AffinityTargets:
    """Affinity targets and their mask from a label volume.

    Parameters
    ----------
    labels : (Z, Y, X) integer array
    offsets : (C, 3) ints
    ignore_zero : bool
        False: 0 is background (affinity 0 to everything). True: 0 is unlabelled (pairs masked).
    labelled : (Z, Y, X) bool array, optional
        Voxels whose label is known; a pair is supervised only if both voxels are.

    Returns
    -------
    AffinityTargets
    """
    lab = label_array("labels", labels)
    offs = _check_offsets(offsets)
    known = None
    if labelled is not None:
        known = as_array("labelled", labelled)
        if known.shape != lab.shape:
            raise ValueError(f"labelled must have the shape of labels {lab.shape}; got {known.shape}")
        known = known.astype(bool)
    if ignore_zero:
        known = (lab != 0) if known is None else (known & (lab != 0))
    C = offs.shape[0]
    affs = np.zeros((C,) + lab.shape, dtype=np.float32)
    mask = np.zeros((C,) + lab.shape, dtype=np.float32)
    for c, off in enumerate(offs):
        sl = _pair_slices(lab.shape, off)
        if sl is None:
            continue
        src, dst = sl
        a, b = lab[src], lab[dst]
        affs[c][src] = (a == b) & (a != 0)
        if known is None:
            mask[c][src] = 1.0
        else:
            mask[c][src] = known[src] & known[dst]
    return AffinityTargets(affs, mask)


def grow_boundary(labels, steps: int = 1) -> np.ndarray:
    """Erode every object by ``steps`` voxels wherever it touches a different label (or 0).

    Returns a new uint64 array; voxels whose (2 steps + 1)^3 neighbourhood holds more than one label
    become 0 — thicker boundaries make the net err on the side of splits.
    """
    lab = label_array("labels", labels)
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    if steps == 0:
        return lab.copy()
    size = 2 * int(steps) + 1
    hi = ndimage.maximum_filter(lab, size=size, mode="nearest")
    lo = ndimage.minimum_filter(lab, size=size, mode="nearest")
    return np.where(hi == lo, lab, 0).astype(np.uint64)


def _skeleton_ids(skeletons) -> np.ndarray:
    if skeletons.ids is not None:
        ids = np.asarray(skeletons.ids, dtype=np.int64)
        if ids.size and ids.min() < 1:
            # keep 0 free for "unlabelled"
            ids = ids - ids.min() + 1
        return ids
    return np.asarray(skeletons.component_ids(), dtype=np.int64) + 1


def segment_distances(sk, shape, vs, off, margin: float, on_segment) -> None:
    """Call ``on_segment(node, q, d2)`` for every skeleton segment (edges, then isolated nodes as
    zero-length segments), ``node`` its first node, with the voxels ``q`` (M, 3) of its bounding
    box grown by ``margin`` and their squared distances ``d2`` (nm^2) from the segment, measured
    from voxel centres (voxel q's centre is ``offset + (q + 0.5) * voxel_size``)."""
    pos = (sk.positions - off) / vs - 0.5  # voxel coordinates: voxel q's centre is q
    rv = margin / vs
    degree = np.bincount(sk.edges.ravel(), minlength=sk.n_nodes) if sk.n_edges else np.zeros(sk.n_nodes, int)
    iso = np.flatnonzero(degree == 0)
    a_idx = np.concatenate([sk.edges[:, 0], iso]).astype(np.int64)
    b_idx = np.concatenate([sk.edges[:, 1], iso]).astype(np.int64)
    A, B = pos[a_idx], pos[b_idx]
    lo = np.maximum(np.floor(np.minimum(A, B) - rv).astype(np.int64), 0)
    hi = np.minimum(np.ceil(np.maximum(A, B) + rv).astype(np.int64) + 1, shape)
    for k in np.flatnonzero(np.all(hi > lo, axis=1)):
        grids = np.meshgrid(*[np.arange(l, h) for l, h in zip(lo[k], hi[k])], indexing="ij")
        p = np.stack([g.ravel() for g in grids], axis=1)
        a, b = A[k], B[k]
        d = (b - a) * vs
        pa = (p - a) * vs
        dd = float(d @ d)
        t = np.clip(pa @ d / dd, 0.0, 1.0) if dd > 0 else np.zeros(len(p))
        r = pa - t[:, None] * d[None, :]
        on_segment(int(a_idx[k]), p, np.einsum("ij,ij->i", r, r))


def rasterize_skeletons(
    skeletons,
    shape: Sequence[int],
    *,
    voxel_size,
    offset=(0.0, 0.0, 0.0),
    radius: float = 66.0,
    radii: Mapping[int, float] | None = None,
) -> np.ndarray:
    """Rasterise skeletons as tubes of their own id.

    A voxel (centre ``offset + (index + 0.5) * voxel_size``, nm: voxel ``q`` covers
    ``[offset + q * voxel_size, offset + (q + 1) * voxel_size)``, as in scoring) gets skeleton id ``s`` iff its distance to
    some edge segment (or isolated node) of ``s`` is at most ``radius`` nm. Voxels claimed by two
    different skeletons are set to 0 (ambiguous, unsupervised). Ids are ``skeletons.ids`` (shifted
    to start at 1 if they contain values < 1) or, without ids, connected component + 1.

    Parameters
    ----------
    skeletons : xpress_fast.Skeletons or networkx.Graph
    shape : (Z, Y, X) of the output
    voxel_size, offset : three floats (nm, z y x)
    radius : float, nm (default 66 nm = 2 voxels at 33 nm)
    radii : mapping {skeleton id: nm}, optional
        A radius of its own for some skeletons (ids as above), e.g. from
        :func:`~xpress_fast.unet.labels.skeleton_radii`; the others keep ``radius``.

    Returns
    -------
    (Z, Y, X) uint64, 0 = unlabelled
    """
    from ..skeletons import as_skeletons

    sk = as_skeletons(skeletons)
    shp = int_triple("shape", shape)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive number of nm; got {radius!r}")
    own = {}
    for sid, r in (radii or {}).items():
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"radii must map skeleton ids to positive numbers of nm; got {r!r} for id {sid!r}")
        own[int(sid)] = float(r)
    out = np.zeros(shp, dtype=np.uint64)
    if sk.n_nodes == 0:
        return out
    conflict = np.zeros(shp, dtype=bool)
    ids = _skeleton_ids(sk)
    node_r2 = np.array([own.get(int(i), float(radius)) for i in ids]) ** 2

    def paint(node, p, d2):
        q = p[d2 <= node_r2[node]]
        if not len(q):
            return
        sid = ids[node]
        z, y, x = q[:, 0], q[:, 1], q[:, 2]
        cur = out[z, y, x]
        clash = (cur != 0) & (cur != sid)
        conflict[z[clash], y[clash], x[clash]] = True
        out[z, y, x] = sid

    segment_distances(sk, shp, vs, off, float(np.sqrt(node_r2.max())), paint)
    out[conflict] = 0
    return out


def check_skeletons_in_volume(skeletons, shape, *, voxel_size, offset, name: str = "skeletons") -> None:
    """Raise if no skeleton node lies inside the volume ``shape`` at ``offset`` / ``voxel_size``."""
    from ..skeletons import as_skeletons

    sk = as_skeletons(skeletons, name)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if sk.n_nodes == 0:
        raise ValueError(f"{name} must hold at least one node; got an empty skeleton set")
    v = (sk.positions - off) / vs
    inside = np.all((v >= -0.5) & (v < np.asarray(shape) - 0.5), axis=1)
    if not inside.any():
        lo, hi = sk.positions.min(0), sk.positions.max(0)
        end = off + np.asarray(shape) * vs
        raise ValueError(
            f"{name} lie outside the volume: nodes span {lo.tolist()}..{hi.tolist()} nm, the volume "
            f"{off.tolist()}..{end.tolist()} nm (z, y, x); check voxel_size/offset and the axis order"
        )



def gap_negatives(labels, offsets) -> tuple[np.ndarray, np.ndarray]:
    """Links that must contain a boundary, from sparse (skeleton) labels.

    Along every axis-aligned line of ``labels`` (0 = unlabelled), two consecutive labelled voxels
    ``p < q`` with different ids are separated by at least one boundary, so at least one of the
    nearest-neighbour links between them has affinity 0. Each such gap becomes a group of links.

    Parameters
    ----------
    labels : (Z, Y, X) integer array, 0 = unlabelled
    offsets : (C, 3) ints; the nearest-neighbour channels ``±e_a`` among them are used (an axis
        without one contributes nothing)

    Returns
    -------
    links : (G,) int64
        Flat indices into a ``(C, Z, Y, X)`` affinity array of the links in the groups.
    groups : (G,) int64
        Group number of each link (0, 1, ...; sorted).
    """
    lab = label_array("labels", labels)
    offs = _check_offsets(offsets)
    shape = lab.shape
    links, groups = [], []
    n_groups = 0
    for a in range(3):
        chans = [c for c, o in enumerate(offs) if abs(o[a]) == 1 and np.count_nonzero(o) == 1]
        if not chans:
            continue
        c = chans[0]
        nsign = int(offs[c][a])
        moved = np.moveaxis(lab, a, -1)
        S = moved.shape[-1]
        flat = moved.reshape(-1)
        pos = np.flatnonzero(flat)
        if pos.size < 2:
            continue
        p, q = pos[:-1], pos[1:]
        same_line = (p // S) == (q // S)
        differ = flat[p] != flat[q]
        sel = same_line & differ
        p, q = p[sel], q[sel]
        if p.size == 0:
            continue
        # links joining (t, t + 1) for t in [p, q) are stored at t + 1 (backward nn) or t (forward)
        lengths = q - p
        gid = np.repeat(np.arange(p.size), lengths)
        start = np.repeat(p, lengths)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        t = start + within + (1 if nsign < 0 else 0)
        line, coord = np.divmod(t, S)
        other = np.unravel_index(line, moved.shape[:-1])
        idx = [coord, coord, coord]  # the two other axes' coordinates replace two of them
        rest = [ax for ax in range(3) if ax != a]
        idx[a] = coord
        idx[rest[0]], idx[rest[1]] = other
        links.append(np.ravel_multi_index((np.full(t.shape, c),) + tuple(idx), (len(offs),) + shape))
        groups.append(gid + n_groups)
        n_groups += p.size
    if not links:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(links).astype(np.int64), np.concatenate(groups).astype(np.int64)
