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


def test_one_name_for_thread_counts():
    """Every public function with a thread count calls it ``threads`` (rand_voi keeps the old
    ``n_threads`` only as a deprecated alias), and so does every binding."""
    from xpress_fast import _metrics, _segment, pipeline

    deprecated = {("rand_voi", "n_threads")}
    for owner in (xpress_fast, pipeline):
        for name in owner.__all__:
            value = getattr(owner, name)
            if not callable(value) or isinstance(value, type):
                continue
            for param in inspect.signature(value).parameters:
                if "thread" in param and (name, param) not in deprecated:
                    assert param == "threads", f"{name}({param}=...)"
    for module in (_segment, _metrics):
        for name in dir(module):
            doc = getattr(getattr(module, name), "__doc__", None) or ""
            if callable(getattr(module, name)) and not name.startswith("__"):
                assert "n_threads" not in doc.splitlines()[0], f"{module.__name__}.{name}"


def test_codes_shared_with_the_compiled_module():
    """The integer codes and limits the API passes to the kernels are read from the compiled
    module (named once, in C++), not spelled in Python."""
    from xpress_fast import _segment
    from xpress_fast.agglomeration import MERGE_FUNCTIONS, _parse_merge_function, needs_histograms

    codes = {name: getattr(_segment, f"STATISTIC_{name}") for name in ("MEAN", "MAX", "MIN", "QUANTILE")}
    assert len(set(codes.values())) == 4
    for name in MERGE_FUNCTIONS:
        want = codes["QUANTILE"] if needs_histograms(name) else codes[name.upper()]
        assert _parse_merge_function(name)[0] == want
    assert _segment.HISTOGRAM_BINS == 256  # waterz's bins: a uint8 affinity k is bin k (hist_bins are uint8)
    assert _segment.NO_FRAGMENT < 0
    assert _segment.MUTEX_MAX_EDGES == 2**32
