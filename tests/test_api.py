"""The public surface: every exported name resolves, functions stay functions after their
modules are imported, and ``import xpress_fast`` pulls in neither torch nor dask nor zarr."""
from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import xpress_fast


def test_every_export_resolves_and_functions_stay_callable():
    for module in ("fragments", "region_graphs", "agglomeration", "sweeps", "metrics", "skeletons"):
        importlib.import_module(f"xpress_fast.{module}")  # importing a submodule must not shadow an export
    for name in xpress_fast.__all__:
        value = getattr(xpress_fast, name)
        assert value is not None
        if name in ("watershed", "blockwise_watershed", "region_graph", "agglomerate", "sweep", "erl", "xpress_scores", "rand_voi",
                    "load_skeletons", "save_skeletons", "skeletons_from_labels"):
            assert inspect.isfunction(value), f"xpress_fast.{name} is {type(value).__name__}, not a function"


def test_import_is_light():
    code = ("import sys, xpress_fast; xpress_fast.xpress_scores; xpress_fast.agglomerate; "
            "heavy = [m for m in ('torch', 'dask', 'zarr', 'matplotlib') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
