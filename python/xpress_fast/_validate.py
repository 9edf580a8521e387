"""Small validation helpers shared by the API modules.

Every public function validates its inputs here, in Python, before any kernel runs: the error
names the argument, what was expected and what came.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Iterable, Literal, SupportsFloat, SupportsInt, cast, overload

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


#: ``threads=None`` means the CPU count, but at most this many: the kernels are memory-bound, and
#: a library that takes every core of a large shared machine by default is a bad neighbour.
MAX_DEFAULT_THREADS = 8


def check_threads(threads: object, name: str = "threads") -> int:
    """Worker threads of a kernel: a positive integer, or ``None`` for the CPU count (at most
    :data:`MAX_DEFAULT_THREADS`). The one meaning of ``threads=`` in every API function; no
    result depends on it."""
    import os

    if threads is None:
        return min(os.cpu_count() or 1, MAX_DEFAULT_THREADS)
    if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"{name} must be a positive integer or None; got {threads!r}")
    return int(threads)


# ---------------------------------------------------------------------------------------------
# Thresholds: one validator for every threshold-like argument (agglomeration thresholds, the
# watershed's and the region graph's inside thresholds, mutex biases, the thresholds an
# Agglomeration is queried at), so that each says the same thing the same way:
#   TypeError   "<name> must be <what>; got <value>"  (not a number: a string, a bool, None)
#   ValueError  "<name> must be finite; got <value>"  (NaN, inf)
#               "<name> must be <what>; got <value>"  (outside the bounds)
#               "<name> must hold at least one threshold" / "... must be strictly increasing"


def _bounds(low: float | None, high: float | None, high_reason: str) -> str:
    if low is not None and high is not None:
        return f" in [{low:g}, {high:g}]"
    if high is not None:
        return f" <= {high:g}" + (f", {high_reason}" if high_reason else "")
    return f" >= {low:g}" if low is not None else ""


def _is_number(value: object) -> bool:
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_bounds(name: str, arr: npt.NDArray[np.float64], shown: Callable[[int], object], what: str,
                  low: float | None, high: float | None, high_reason: str) -> None:
    """Finite, and within [low, high] (either may be None: unbounded on that side)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        raise ValueError(f"{name} must be finite; got {shown(int(np.argmax(bad)))!r}")
    out = np.zeros(arr.shape, dtype=bool)
    if low is not None:
        out |= arr < low
    if high is not None:
        out |= arr > high
    if out.any():
        raise ValueError(f"{name} must be {what}{_bounds(low, high, high_reason)}; got {shown(int(np.argmax(out)))!r}")


@overload
def check_threshold(name: str, value: object, *, low: float | None = ..., high: float | None = ...,
                    optional: Literal[False] = ..., high_reason: str = ...) -> float: ...
@overload
def check_threshold(name: str, value: object, *, low: float | None = ..., high: float | None = ...,
                    optional: bool, high_reason: str = ...) -> float | None: ...
def check_threshold(name: str, value: object, *, low: float | None = 0.0, high: float | None = 1.0,
                    optional: bool = False, high_reason: str = "") -> float | None:
    """One threshold as a plain float: a real number (not a bool), finite, in ``[low, high]``
    (``None``: unbounded on that side; ``high_reason`` says where ``high`` comes from). With
    ``optional``, ``None`` is allowed and returned."""
    if value is None and optional:
        return None
    what = "None or a number" if optional else "a number"
    if not _is_number(value) and not (isinstance(value, np.ndarray) and value.ndim == 0
                                      and value.dtype.kind in "iuf"):
        raise TypeError(f"{name} must be {what}{_bounds(low, high, high_reason)}; got {value!r}")
    number = float(cast(SupportsFloat, value))
    _check_bounds(name, np.array([number]), lambda i: value, what, low, high, high_reason)
    return number


def check_thresholds(name: str, values: object, *, low: float | None = 0.0, high: float | None = 1.0,
                     increasing: bool = True, scalar: bool = True, nonempty: bool = True,
                     high_reason: str = "") -> npt.NDArray[np.float64]:
    """Thresholds as a flat float64 array: real numbers (no strings, no bools), finite, in
    ``[low, high]``; with ``increasing`` strictly increasing, with ``nonempty`` at least one.
    ``scalar``: a single number (or a 0-d array) is taken as one threshold; otherwise it is a
    TypeError (``values`` must be a sequence). The caller's object is not modified."""
    what = "a number or a sequence of numbers" if scalar else "a sequence of numbers"
    single = _is_number(values) or (isinstance(values, np.ndarray) and values.ndim == 0)
    if isinstance(values, (str, bytes)) or values is None or (single and not scalar) or (
            not single and not hasattr(values, "__len__")):
        raise TypeError(f"{name} must be {what}; got {values!r}")
    if isinstance(values, (list, tuple)) and not all(_is_number(v) or np.ndim(v) > 0 for v in values):
        raise TypeError(f"{name} must be {what}; got {values!r}")
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be {what}; got {values!r}")
    arr = arr.astype(np.float64).ravel()
    if arr.size == 0 and nonempty:
        raise ValueError(f"{name} must hold at least one threshold")
    _check_bounds(name, arr, lambda i: arr[i].item(), "numbers", low, high, high_reason)
    if increasing and np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing; got {arr.tolist()!r}")
    return arr
