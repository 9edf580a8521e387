"""Optional dependencies: importing one that is missing names the extra to install.

The core (scoring, segmentation, HDF5 I/O) needs only numpy, scipy, networkx, h5py and tqdm;
zarr, dask, matplotlib and scikit-image come with ``[pipeline]``, torch with ``[torch]``,
neuroglancer (the viewer) with ``[view]``. A
missing one gives :class:`MissingExtra` (an ImportError) with the one line a user needs, which
the CLI prints as its error (exit code 2) instead of a traceback.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: importable module -> (distribution, extra that brings it)
EXTRAS = {
    "torch": ("PyTorch", "torch"),
    "zarr": ("zarr", "pipeline"),
    "dask": ("dask", "pipeline"),
    "matplotlib": ("matplotlib", "pipeline"),
    "skimage": ("scikit-image", "pipeline"),
    "distributed": ("dask.distributed", "distributed"),
    "neuroglancer": ("neuroglancer", "view"),
}


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def missing_message(module: str, what: str) -> str:
    package, extra = EXTRAS[module]
    hint = 'pip install torch==2.13.0 first for the CPU build, then ' if extra == "torch" else ""
    return f"{what} needs {package}: {hint}pip install \"xpress-fast[{extra}]\""


def require(module: str, what: str) -> ModuleType:
    """``import module`` (a key of :data:`EXTRAS`), or MissingExtra naming the extra for ``what``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but something it imports is broken: show that
        raise MissingExtra(missing_message(module, what)) from None
