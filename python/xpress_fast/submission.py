"""The XPRESS challenge's submission file: write it, and check its format.

A submission is an HDF5 file ``submission.h5`` holding one dataset ``submission``: uint64 labels
(z, y, x) at 99 nm covering the test ROI (begin 3267 nm, shape 33066 nm per axis: 334³ voxels),
with attrs ``resolution = (99, 99, 99)`` and ``offset = (3267, 3267, 3267)``.

Segmentations are usually made at the raw data's 33 nm; they are 3× downsampled by *striding*
(keeping every third voxel, no majority vote) -- what the challenge's ``--downsampling`` option
does. The official script strides the whole dataset before cropping (quirk 4 of METRICS.md),
which shifts the data unless the ROI begins on a multiple of the stride. We crop the ROI first
and stride the crop, so the sample of each 99 nm voxel is the first 33 nm voxel inside it. For
the challenge's geometry (ROI begin 3267 nm = 99 voxels of 33 nm, a multiple of 3) both give the
same array.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, cast

import numpy as np
import numpy.typing as npt

from ._typing import ArraySource, FloatTriple, StrPath
from ._validate import float_triple
from .rois import SUBMISSION_VOXEL_SIZE, TEST_ROI, Roi

log = logging.getLogger(__name__)

#: The dataset name the challenge expects.
SUBMISSION_DATASET = "submission"


def _strides(voxel_size: FloatTriple, target_voxel_size: FloatTriple) -> tuple[int, ...]:
    vs = float_triple("voxel_size", voxel_size, positive=True)
    tvs = float_triple("target_voxel_size", target_voxel_size, positive=True)
    ratio = tvs / vs
    factors = np.round(ratio).astype(np.int64)
    if np.any(factors < 1) or np.any(np.abs(ratio - factors) > 1e-6):
        raise ValueError(
            f"voxel_size must divide the submission voxel size {tuple(tvs)} nm by whole factors; "
            f"got {tuple(vs)} nm (ratios {tuple(ratio)})"
        )
    return tuple(int(f) for f in factors)


def make_submission(
    segmentation: npt.ArrayLike | ArraySource,
    *,
    voxel_size: FloatTriple,
    offset: FloatTriple = (0, 0, 0),
    roi: Roi = TEST_ROI,
    target_voxel_size: FloatTriple = SUBMISSION_VOXEL_SIZE,
) -> npt.NDArray[np.uint64]:
    """Crop ``roi`` from a segmentation and downsample it by striding to ``target_voxel_size``.

    Parameters
    ----------
    segmentation : array-like, (Z, Y, X) integer labels
        A numpy array or an open h5py/zarr dataset; only the strided voxels inside ``roi`` are
        read, so a 1200³ uint64 segmentation need not fit in memory.
    voxel_size, offset : 3 numbers
        nm, (z, y, x). ``target_voxel_size / voxel_size`` must be whole numbers (e.g. 33 → 99).
    roi : Roi
        The world box to cover (default: the challenge's test ROI).

    Returns
    -------
    numpy.ndarray
        uint64 ``(roi.shape / target_voxel_size)`` labels.
    """
    from .io import roi_slices

    if not hasattr(segmentation, "shape") or not hasattr(segmentation, "__getitem__"):
        segmentation = np.asarray(segmentation)
    seg = cast(ArraySource, segmentation)  # numpy, or an array that slices into numpy (h5py, zarr)
    shape = tuple(seg.shape)
    if len(shape) != 3:
        raise ValueError(f"segmentation must be 3-dimensional (z, y, x); got shape {shape}")
    dtype = np.dtype(seg.dtype)
    if dtype == np.bool_ or dtype.kind not in "iu":
        raise TypeError(f"segmentation must have an integer label dtype; got {dtype}")
    factors = _strides(voxel_size, target_voxel_size)
    slices = roi_slices(roi, shape, voxel_size, float_triple("offset", offset), name="roi")
    target_shape = roi.voxels(target_voxel_size)
    strided = tuple(slice(s.start, s.stop, f) for s, f in zip(slices, factors))
    out = np.asarray(seg[strided])
    if out.shape != tuple(target_shape):
        raise ValueError(
            f"roi {tuple(roi.shape)} nm is not a whole number of {tuple(target_voxel_size)} nm "
            f"voxels (got a {out.shape} crop)"
        )
    if dtype.kind == "i" and out.size and out.min() < 0:
        raise ValueError(f"segmentation must not contain negative labels; got minimum {out.min()}")
    return np.ascontiguousarray(out, dtype=np.uint64)


def write_submission(
    path: StrPath,
    segmentation: npt.ArrayLike | ArraySource,
    *,
    voxel_size: FloatTriple,
    offset: FloatTriple = (0, 0, 0),
    roi: Roi = TEST_ROI,
    target_voxel_size: FloatTriple = SUBMISSION_VOXEL_SIZE,
) -> Path:
    """Write ``submission.h5`` (dataset ``submission``) from a segmentation, atomically.

    See :func:`make_submission` for the parameters. The file is written under a temporary name
    and renamed into place, and then checked with :func:`check_submission` (ValueError if that
    finds a problem, which would be a bug).
    """
    from .io import write_volume

    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5", ".hdf"):
        raise ValueError(f"path must be an HDF5 file name ending in .h5; got {str(path)!r}")
    sub = make_submission(
        segmentation, voxel_size=voxel_size, offset=offset, roi=roi,
        target_voxel_size=target_voxel_size,
    )
    if path.exists():
        path.unlink()  # a submission file holds exactly one dataset
    write_volume(
        path, SUBMISSION_DATASET, sub, voxel_size=target_voxel_size, offset=roi.begin,
    )
    check = check_submission(path, roi=roi, voxel_size=target_voxel_size, count_labels=False)
    if not check.ok:
        raise ValueError(f"the written submission fails its check: {'; '.join(check.problems)}")
    log.info("wrote submission %s %s", path, sub.shape)
    return path


@dataclass(frozen=True)
class SubmissionCheck:
    """The result of :func:`check_submission`.

    ``ok`` is True when ``problems`` is empty; ``problems`` are human-readable sentences.
    """

    path: str
    problems: tuple[str, ...]
    shape: Optional[tuple[int, ...]] = None
    dtype: Optional[str] = None
    voxel_size: Optional[tuple[float, ...]] = None
    offset: Optional[tuple[float, ...]] = None
    n_labels: Optional[int] = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {
            "path": self.path, "ok": self.ok, "problems": list(self.problems),
            "shape": self.shape, "dtype": self.dtype, "voxel_size": self.voxel_size,
            "offset": self.offset, "n_labels": self.n_labels, "notes": list(self.notes),
        }


def check_submission(
    path: StrPath, *, roi: Roi = TEST_ROI, voxel_size: FloatTriple = SUBMISSION_VOXEL_SIZE, count_labels: bool = True,
) -> SubmissionCheck:
    """Check a submission file's format against what the challenge's evaluator needs.

    Checks: an HDF5 file with a dataset ``submission``; 3-D uint64 (the official evaluator
    accepts nothing else); shape ``roi.shape / voxel_size`` (334³); attrs ``resolution`` equal to
    ``voxel_size`` and ``offset`` equal to ``roi.begin``; not all background (label 0).

    Never raises for a bad file: every finding is a sentence in ``problems``.
    """
    import h5py

    path = Path(path)
    problems: list[str] = []
    notes: list[str] = []
    if not path.is_file():
        return SubmissionCheck(str(path), (f"no such file: {str(path)!r}",))
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        return SubmissionCheck(str(path), (f"not a readable HDF5 file ({exc})",))
    with f:
        if SUBMISSION_DATASET not in f or not isinstance(f[SUBMISSION_DATASET], h5py.Dataset):
            return SubmissionCheck(
                str(path), (f"no dataset {SUBMISSION_DATASET!r} (found {sorted(f.keys())})",)
            )
        ds = f[SUBMISSION_DATASET]
        shape = tuple(ds.shape)
        dtype = str(ds.dtype)
        expected_shape = tuple(roi.voxels(voxel_size))
        if ds.dtype != np.uint64:
            problems.append(f"dtype must be uint64 (the official evaluator needs it); got {dtype}")
        if len(shape) != 3:
            problems.append(f"must be 3-dimensional (z, y, x); got shape {shape}")
        elif shape != expected_shape:
            problems.append(f"shape must be {expected_shape} (the test ROI at 99 nm); got {shape}")
        vs_attr = _attr_triple(ds.attrs, "resolution", problems)
        off_attr = _attr_triple(ds.attrs, "offset", problems)
        if vs_attr is not None and not np.allclose(vs_attr, voxel_size):
            problems.append(f"attr 'resolution' must be {tuple(voxel_size)}; got {vs_attr}")
        if off_attr is not None and not np.allclose(off_attr, roi.begin):
            problems.append(f"attr 'offset' must be {tuple(roi.begin)}; got {off_attr}")
        extra = sorted(set(f.keys()) - {SUBMISSION_DATASET})
        if extra:
            notes.append(f"other top-level entries are ignored by the evaluator: {extra}")
        n_labels = None
        if len(shape) == 3 and ds.dtype.kind in "iu" and ds.size:
            labels: set[int] = set()
            any_foreground = has_zero = False
            for z in range(0, shape[0], 32):
                slab = ds[z:z + 32]
                if count_labels:
                    labels.update(np.unique(slab).tolist())
                else:
                    any_foreground = any_foreground or bool(slab.any())
                    has_zero = has_zero or not bool(slab.all())
            if count_labels:
                n_labels = len(labels - {0})
                any_foreground, has_zero = n_labels > 0, 0 in labels
            if not any_foreground:
                problems.append("holds only background (label 0)")
            elif has_zero:
                notes.append("label 0 voxels under skeleton nodes are scored as splits")
    return SubmissionCheck(
        str(path), tuple(problems), shape, dtype, vs_attr, off_attr, n_labels, tuple(notes)
    )


def _attr_triple(attrs: Mapping[str, Any], key: str, problems: list[str]) -> Optional[tuple[float, ...]]:
    if key not in attrs:
        problems.append(f"attr {key!r} is missing")
        return None
    value = np.asarray(attrs[key])
    if value.shape != (3,) or value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
        problems.append(f"attr {key!r} must be three numbers (z, y, x); got {attrs[key]!r}")
        return None
    return tuple(float(v) for v in value)
