"""Type aliases and protocols of the package's signatures (annotations only: nothing here checks
anything at run time)."""
from __future__ import annotations

import os
from typing import Any, Protocol, Sequence, Union

import numpy as np
import numpy.typing as npt

#: A file system path: ``str`` or any ``os.PathLike`` (``pathlib.Path``).
StrPath = Union[str, "os.PathLike[str]"]
#: Three numbers (z, y, x): a sequence or a (3,) array.
FloatTriple = Union[Sequence[float], npt.NDArray[Any]]


class ArraySource(Protocol):
    """An array that is read by slicing into numpy: numpy, zarr, h5py, dask."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def __getitem__(self, key: Any, /) -> npt.ArrayLike: ...
