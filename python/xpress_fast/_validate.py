"""Small validation helpers shared by the API modules.

Every public function validates its inputs here, in Python, before any kernel runs: the error
names the argument, what was expected and what came.
"""
from __future__ import annotations

from typing import Any, Iterable, SupportsInt

import numpy as np
import numpy.typing as npt


class XpressWarning(UserWarning):
    """Something the user would want to know: data dropped from scoring, contradicting metadata."""


def warn_user(message: str) -> None:
    """Warn with :class:`XpressWarning`, attributed to the first caller outside this package
    (however deep in the package the warning is raised)."""
    import os
    import sys
    import types
    import warnings

    package = os.path.dirname(os.path.abspath(__file__))
    level = 2  # stacklevel 2 names the frame that called warn_user
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, XpressWarning, stacklevel=level)


LABEL_DTYPES = (np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64)


def as_array(name: str, value: object) -> npt.NDArray[Any]:
    """``np.asarray`` that refuses objects which are not array-like numbers."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a numpy array; got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.dtype == object:
        raise TypeError(f"{name} must be a numeric numpy array; got dtype object")
    return arr


def check_ndim(name: str, arr: np.ndarray, ndim: int, axes: str = "") -> None:
    if arr.ndim != ndim:
        what = f" ({axes})" if axes else ""
        raise ValueError(f"{name} must be {ndim}-dimensional{what}; got shape {arr.shape}")


def check_nonempty(name: str, arr: np.ndarray) -> None:
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty; got shape {arr.shape}")


def label_array(name: str, value: object, ndim: int = 3) -> npt.NDArray[np.uint64]:
    """Validate a label volume: integer dtype (any unsigned, or signed without negatives).

    Returns a C-contiguous uint64 view or copy; the caller's array is never modified.
    """
    arr = as_array(name, value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(
            f"{name} must have an integer label dtype (uint8..uint64 or non-negative int8..int64); "
            f"got {arr.dtype}"
        )
    check_ndim(name, arr, ndim, "z, y, x" if ndim == 3 else "")
    check_nonempty(name, arr)
    if arr.dtype.kind == "i":
        if arr.min() < 0:
            raise ValueError(f"{name} must not contain negative labels; got minimum {arr.min()}")
    return np.ascontiguousarray(arr, dtype=np.uint64)


def float_triple(name: str, value: object, positive: bool = False) -> npt.NDArray[np.float64]:
    """A 3-vector (z, y, x) of finite floats."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be three numbers (z, y, x); got {value!r}") from None
    if arr.shape != (3,):
        raise ValueError(f"{name} must be three numbers (z, y, x); got {value!r}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {value!r}")
    if positive and np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got {value!r}")
    return arr


def int_triple(name: str, value: Iterable[SupportsInt], minimum: int = 1) -> tuple[int, int, int]:
    """A 3-tuple (z, y, x) of integers >= ``minimum`` (non-integral numbers are refused)."""
    what = "three positive integers" if minimum == 1 else f"three integers >= {minimum}"
    try:
        items = list(value)
        t = tuple(int(v) for v in items)
        integral = all(int(v) == v for v in items)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what} (z, y, x); got {value!r}") from None
    if len(t) != 3 or not integral or any(v < minimum for v in t):
        raise ValueError(f"{name} must be {what} (z, y, x); got {value!r}")
    return t[0], t[1], t[2]


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def sorted_thresholds(name: str, values: npt.ArrayLike, low: float = 0.0, high: float = 1.0
                      ) -> npt.NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one threshold")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite; got {arr.tolist()!r}")
    if np.any(arr < low) or np.any(arr > high):
        raise ValueError(f"{name} must lie in [{low}, {high}]; got {arr.tolist()!r}")
    if np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing; got {arr.tolist()!r}")
    return arr
