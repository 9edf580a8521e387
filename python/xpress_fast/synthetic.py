"""Synthetic XNH-like volumes: packed, gently curving axons with voxel labels and skeletons.

The generator imitates white matter imaged by X-ray holographic nano-tomography at ~33 nm:

* axons run roughly along one main axis (``main_axis``), bend together with a smooth shared
  displacement and wobble a little individually; outer radii are log-normal around ~250 nm
  (7-8 voxels at 33 nm) and the sheaths of neighbours are 0-3 voxels apart;
* most axons are myelinated (a dark rim of thickness ``(1 - g) * r`` with g-ratio ``g``), the others
  have only a thin membrane;
* the raw is rendered with per-axon intensities, a smooth multiplicative bias field, a Gaussian
  point-spread blur and Gaussian noise, then quantised to uint8 — thin myelin between touching
  axons, unmyelinated neighbours and noise make naive thresholding merge and split objects.

Labels are the axoplasm of each axon (ids 1..N, in order of the axons); myelin and extracellular
space are 0. Skeletons are the axons' centre lines in nm (z, y, x), one node every
``node_spacing`` voxels, kept where the centre line lies inside the axon's own label.

``noisy_affinities`` turns labels into affinities with a noise model (what an imperfect network
might predict), for trying the segmentation without training a network.

Only numpy and scipy are used (no torch), so the demo and any test can import this module.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence, SupportsInt

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ._validate import float_triple, int_triple
from .skeletons import Skeletons

__all__ = ["SyntheticVolume", "make_volume", "noisy_affinities"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticVolume:
    """A synthetic volume: raw, voxel labels and skeletons sharing one geometry.

    Attributes
    ----------
    raw : (Z, Y, X) uint8
    labels : (Z, Y, X) uint64; 0 = myelin / extracellular space, ``1..n_axons`` the axons.
    skeletons : xpress_fast.Skeletons
        Centre lines, positions in nm (z, y, x) including ``offset``; ``ids`` is the axon's label.
    voxel_size : (3,) float64, nm (z, y, x)
    offset : (3,) float64, nm (z, y, x), the world position of voxel (0, 0, 0)
    radii : (n_axons,) float64, outer (myelin) radius of each axon in nm
    myelinated : (n_axons,) bool
    """

    raw: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.uint64]
    skeletons: Skeletons
    voxel_size: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64]
    radii: npt.NDArray[np.float64]
    myelinated: npt.NDArray[np.bool_]

    @property
    def n_axons(self) -> int:
        return int(self.radii.shape[0])


def _smooth_curve(rng: np.random.Generator, t: np.ndarray, amplitude: float, wavelength: float) -> np.ndarray:
    """A smooth random 1-D function of ``t``: a sum of three sinusoids of long wavelength."""
    out = np.zeros_like(t)
    for k in range(3):
        lam = wavelength * rng.uniform(0.7, 1.6) / (k + 1)
        out += amplitude / (k + 1) * np.sin(2 * np.pi * t / lam + rng.uniform(0, 2 * np.pi))
    return out


def _pack_discs(rng: np.random.Generator, extent: tuple[float, float], radius_mean: float,
                radius_sigma: float, gap: tuple[float, float], max_tries: int) -> tuple[np.ndarray, np.ndarray]:
    """Random sequential packing of discs (radii in voxels) in a rectangle ``extent`` (y, x).

    Candidates are drawn until ``max_tries`` consecutive ones failed to fit.
    """
    cap = int(4 * extent[0] * extent[1] / (np.pi * (0.45 * radius_mean) ** 2)) + 16
    centres = np.empty((cap, 2))
    radii = np.empty(cap)
    n = 0
    fails = 0
    r_max = radius_mean * np.exp(2.5 * radius_sigma)
    while fails < max_tries and n < cap:
        r = float(np.clip(radius_mean * np.exp(rng.normal(0.0, radius_sigma)), 0.45 * radius_mean, r_max))
        c = rng.uniform((0.0, 0.0), extent)
        g = rng.uniform(*gap)
        if n:
            d = np.hypot(centres[:n, 0] - c[0], centres[:n, 1] - c[1])
            if np.any(d < radii[:n] + (r + g)):
                fails += 1
                continue
        fails = 0
        centres[n] = c
        radii[n] = r
        n += 1
    return centres[:n].copy(), radii[:n].copy()


def make_volume(
    shape: Iterable[SupportsInt] = (96, 96, 96),
    *,
    voxel_size: npt.ArrayLike = (33.0, 33.0, 33.0),
    offset: npt.ArrayLike = (0.0, 0.0, 0.0),
    seed: int = 0,
    radius_nm: float = 250.0,
    radius_sigma: float = 0.3,
    gap_voxels: tuple[float, float] = (0.0, 1.5),
    g_ratio: float = 0.75,
    myelinated_fraction: float = 0.75,
    main_axis: int = 0,
    bend_voxels: float = 6.0,
    wobble_voxels: float = 1.0,
    blur_sigma: float = 1.0,
    noise: float = 0.09,
    node_spacing: float = 4.0,
) -> SyntheticVolume:
    """Generate a synthetic XNH-like white-matter volume.

    Parameters
    ----------
    shape : three ints (z, y, x), each >= 8
    voxel_size : three positive floats, nm (z, y, x)
    offset : three floats, nm; world position of voxel (0, 0, 0)
    seed : int
        Everything is a deterministic function of the arguments.
    radius_nm, radius_sigma : float
        Outer axon radius: log-normal with median ``radius_nm`` and log-sd ``radius_sigma``.
    gap_voxels : (low, high)
        Distance between neighbouring sheaths at packing time, uniform in voxels.
    g_ratio : float in (0, 1)
        Inner (axoplasm) over outer (myelin) radius of myelinated axons.
    myelinated_fraction : float in [0, 1]
    main_axis : 0, 1 or 2
        The axis the axons run along.
    bend_voxels, wobble_voxels : float
        Amplitude of the shared bending of the bundle and of each axon's own wobble (voxels).
    blur_sigma, noise : float
        Point-spread blur (voxels) and Gaussian noise (in units of the 0..1 intensity range).
    node_spacing : float
        Skeleton node spacing along the main axis, voxels.

    Returns
    -------
    SyntheticVolume

    Examples
    --------
    >>> vol = make_volume((32, 32, 32), seed=1)
    >>> vol.raw.dtype, vol.labels.dtype, vol.raw.shape
    (dtype('uint8'), dtype('uint64'), (32, 32, 32))
    """
    shp = int_triple("shape", shape, minimum=8)
    vs = float_triple("voxel_size", voxel_size, positive=True)
    off = float_triple("offset", offset)
    if main_axis not in (0, 1, 2):
        raise ValueError(f"main_axis must be 0, 1 or 2; got {main_axis!r}")
    if not 0.0 < g_ratio < 1.0:
        raise ValueError(f"g_ratio must lie in (0, 1); got {g_ratio!r}")
    if not 0.0 <= myelinated_fraction <= 1.0:
        raise ValueError(f"myelinated_fraction must lie in [0, 1]; got {myelinated_fraction!r}")
    if not radius_nm > 0 or not radius_sigma >= 0:
        raise ValueError(f"radius_nm must be > 0 and radius_sigma >= 0; got {radius_nm!r}, {radius_sigma!r}")
    if len(gap_voxels) != 2 or not 0 <= gap_voxels[0] <= gap_voxels[1]:
        raise ValueError(f"gap_voxels must be (low, high) with 0 <= low <= high; got {gap_voxels!r}")
    if blur_sigma < 0 or noise < 0:
        raise ValueError(f"blur_sigma and noise must be >= 0; got {blur_sigma!r}, {noise!r}")
    if not node_spacing > 0:
        raise ValueError(f"node_spacing must be > 0; got {node_spacing!r}")

    rng = np.random.default_rng(seed)
    # Generate with the main axis first ("t"), then move it into place.
    perm = [main_axis] + [a for a in range(3) if a != main_axis]
    gshape = tuple(shp[a] for a in perm)  # (T, U, V)
    gvs = vs[perm]
    T, U, V = gshape
    r_vox_mean = radius_nm / float(np.mean(gvs[1:]))

    # Pack cross-sections in the (u, v) plane with a margin for the bending.
    margin = bend_voxels * 2 + wobble_voxels * 2 + 3 * r_vox_mean
    extent = (U + 2 * margin, V + 2 * margin)
    centres, radii_vox = _pack_discs(rng, extent, r_vox_mean, radius_sigma, gap_voxels, max_tries=3000)
    centres -= margin
    n = len(radii_vox)

    # Centre lines: shared bend + own wobble + a small own slope.
    t = np.arange(T, dtype=np.float64)
    shared_u = _smooth_curve(rng, t, bend_voxels, 3.0 * T)
    shared_v = _smooth_curve(rng, t, bend_voxels, 3.0 * T)
    cu = np.empty((n, T))
    cv = np.empty((n, T))
    for i in range(n):
        cu[i] = centres[i, 0] + shared_u + _smooth_curve(rng, t, wobble_voxels, 1.5 * T)
        cv[i] = centres[i, 1] + shared_v + _smooth_curve(rng, t, wobble_voxels, 1.5 * T)
    # Tangents (per unit t) for the tilt-corrected perpendicular distance.
    du = np.gradient(cu, axis=1)
    dv = np.gradient(cv, axis=1)

    # Rasterise: every voxel goes to the axon with the smallest normalised distance d / r.
    best = np.full(gshape, np.inf, dtype=np.float32)
    owner = np.zeros(gshape, dtype=np.int32)  # 1-based axon index, 0 = none
    for i in range(n):
        r = radii_vox[i]
        R = int(np.ceil(r * 1.6)) + 1
        ou = np.arange(-R, R + 1)
        uu = np.rint(cu[i]).astype(np.int64)[:, None, None] + ou[None, :, None]   # (T, B, 1)
        vv = np.rint(cv[i]).astype(np.int64)[:, None, None] + ou[None, None, :]   # (T, 1, B)
        pu = uu - cu[i][:, None, None]
        pv = vv - cv[i][:, None, None]
        # distance from (0, pu, pv) to the line through the centre with direction (1, du, dv)
        tu = du[i][:, None, None]
        tv = dv[i][:, None, None]
        norm2 = 1.0 + tu * tu + tv * tv
        proj = (pu * tu + pv * tv) / norm2
        d2 = proj * proj + (pu - proj * tu) ** 2 + (pv - proj * tv) ** 2
        d = (np.sqrt(d2) / r).astype(np.float32)
        tt = np.broadcast_to(np.arange(T)[:, None, None], d.shape)
        uu = np.broadcast_to(uu, d.shape)
        vv = np.broadcast_to(vv, d.shape)
        keep = (d < 1.6) & (uu >= 0) & (uu < U) & (vv >= 0) & (vv < V)
        ti, ui, vi, di = tt[keep], uu[keep], vv[keep], d[keep]
        better = di < best[ti, ui, vi]
        ti, ui, vi = ti[better], ui[better], vi[better]
        best[ti, ui, vi] = di[better]
        owner[ti, ui, vi] = i + 1

    myelinated = rng.random(n) < myelinated_fraction
    inner = np.where(myelinated, g_ratio, 0.9)  # unmyelinated: a thin membrane at 0.9..1.0 r
    inner_of = np.concatenate([[0.0], inner]).astype(np.float32)[owner]
    myel_of = np.concatenate([[False], myelinated])[owner]
    inside = (owner > 0) & (best < 1.0)
    axo = inside & (best < inner_of)
    rim = inside & ~axo

    labels_g = np.where(axo, owner, 0).astype(np.uint64)

    # Render. Intensities in 0..1 before quantisation.
    extracellular = 0.48
    axo_int = np.clip(rng.normal(0.6, 0.07, n), 0.4, 0.8)
    img = np.full(gshape, extracellular, dtype=np.float32)
    img[axo] = np.concatenate([[0.0], axo_int]).astype(np.float32)[owner[axo]]
    img[rim & myel_of] = 0.18
    img[rim & ~myel_of] = 0.38
    # fine texture inside axons (neurofilaments / organelles), then PSF blur
    tex = ndimage.gaussian_filter(rng.normal(0.0, 1.0, gshape).astype(np.float32), 1.5)
    img += 0.12 * tex / max(float(tex.std()), 1e-6) * axo
    if blur_sigma > 0:
        img = ndimage.gaussian_filter(img, blur_sigma)
    # smooth multiplicative bias field (uneven illumination / reconstruction artefacts)
    coarse = rng.normal(0.0, 1.0, tuple(max(2, s // 24) for s in gshape))
    bias = ndimage.zoom(coarse, [s / c for s, c in zip(gshape, coarse.shape)], order=1)
    bias = bias[:T, :U, :V]
    img *= (1.0 + 0.12 * bias / max(float(bias.std()), 1e-6)).astype(np.float32)
    img += rng.normal(0.0, noise, gshape).astype(np.float32)
    raw_g = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)

    inv = np.argsort(perm)
    raw = np.ascontiguousarray(raw_g.transpose(inv))
    labels = np.ascontiguousarray(labels_g.transpose(inv))

    # Skeletons: centre-line nodes inside the axon's own label, chained along t.
    step = max(1, int(round(node_spacing)))
    ts = np.arange(0, T, step)
    if ts[-1] != T - 1:
        ts = np.append(ts, T - 1)
    positions: list[np.ndarray] = []
    edges: list[tuple[int, int]] = []
    ids: list[int] = []
    for i in range(n):
        prev = -1
        for tk in ts:
            p = np.array([tk, cu[i, tk], cv[i, tk]])
            q = np.floor(p + 0.5).astype(np.int64)  # the voxel whose centre is nearest
            if not (0 <= q[1] < U and 0 <= q[2] < V) or labels_g[q[0], q[1], q[2]] != i + 1:
                prev = -1
                continue
            idx = len(positions)
            positions.append(p)
            ids.append(i + 1)
            if prev >= 0:
                edges.append((prev, idx))
            prev = idx
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    pos_zyx = np.empty_like(pos)
    pos_zyx[:, perm] = pos  # generator axes (t, u, v) back to (z, y, x)
    # voxel q covers [q, q + 1) * vs + off (the scoring grid), so the centre-line point p, in
    # voxel-centre coordinates, lies at (p + 0.5) * vs + off, inside voxel floor(p + 0.5)
    pos_nm = (pos_zyx + 0.5) * vs + off

    skeletons = Skeletons(
        pos_nm,
        np.asarray(edges, dtype=np.int64).reshape(-1, 2),
        ids=np.asarray(ids, dtype=np.int64),
    )
    logger.debug("synthetic volume %s: %d axons, %d skeleton nodes", shp, n, len(pos_nm))
    return SyntheticVolume(
        raw=raw, labels=labels, skeletons=skeletons, voxel_size=vs, offset=off,
        radii=radii_vox * float(np.mean(gvs[1:])), myelinated=myelinated,
    )


def noisy_affinities(
    labels: npt.ArrayLike,
    offsets: Sequence[Sequence[int]] | npt.NDArray[np.integer[Any]] = ((-1, 0, 0), (0, -1, 0), (0, 0, -1)),
    *,
    noise: float = 0.6,
    gaps: int = 0,
    seed: int = 0,
) -> npt.NDArray[np.float32]:
    """Affinities of a label volume for every offset, with smooth noise and false "gaps".

    The true affinity of channel ``c`` at voxel ``v`` is 1 iff ``v`` and ``v + offsets[c]`` carry
    the same non-zero label (0 at the volume's faces). It is scaled to [0.1, 0.9]; a Gaussian
    noise field smoothed with sigma 1 voxel and multiplied by ``noise`` is added (its standard
    deviation is about 0.18 * ``noise``); ``gaps`` boxes of 5^3 voxels at random places get
    affinities of at least 0.85 (boundaries that look open, which tempt false merges); the
    result is clipped to [0, 1]. This is the model of ``benchmarks/bench_quality.py``.

    Parameters
    ----------
    labels : (Z, Y, X) integer array, 0 = background
    offsets : sequence of (dz, dy, dx) integer triples (default: the nearest neighbours)
    noise : float >= 0
    gaps : int >= 0
    seed : int; the result is a deterministic function of the arguments

    Returns
    -------
    (len(offsets), Z, Y, X) float32
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be a 3-D integer array; got {labels.ndim}-D {labels.dtype}")
    from .region_graphs import check_offsets

    try:
        n = len(offsets)
    except TypeError:
        raise TypeError(f"offsets must be a sequence of (z, y, x) integer triples; got {offsets!r}") from None
    if n == 0:
        raise ValueError("offsets must name at least one (z, y, x) offset; got none")
    offs = check_offsets(offsets, n, nearest_first=False).tolist()
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0; got {noise!r}")
    if int(gaps) != gaps or gaps < 0:
        raise ValueError(f"gaps must be an integer >= 0; got {gaps!r}")
    rng = np.random.default_rng(seed)
    affs = np.zeros((len(offs),) + labels.shape, np.float32)
    for c, off in enumerate(offs):
        here, there = [], []
        for o, n in zip(off, labels.shape):
            here.append(slice(max(-o, 0), n - max(o, 0)))
            there.append(slice(max(o, 0), n - max(-o, 0)))
        a, b = labels[tuple(here)], labels[tuple(there)]
        affs[c][tuple(here)] = (a == b) & (a != 0)
    boxes = [tuple(int(rng.integers(0, s)) for s in labels.shape) for _ in range(int(gaps))]
    for z, y, x in boxes:
        box = (slice(None), slice(max(z - 2, 0), z + 3), slice(max(y - 2, 0), y + 3), slice(max(x - 2, 0), x + 3))
        affs[box] = np.maximum(affs[box], 0.85)
    for c in range(len(offs)):
        field = ndimage.gaussian_filter(rng.standard_normal(labels.shape).astype(np.float32), 1.0) * noise
        affs[c] = np.clip(affs[c] * 0.8 + 0.1 + field, 0.0, 1.0)
    return affs
