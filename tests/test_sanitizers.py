"""The C++ core built with -Werror and AddressSanitizer + UndefinedBehaviorSanitizer, running a slice
of the suite (the kernels' property tests against their references): any out-of-bounds access,
use after free, signed overflow or misaligned read aborts the child and fails this test.

The build takes about a minute on two cores; the slice about 15 s. Leak detection is off (the
Python interpreter itself keeps memory until exit), and the thread-start test is left out
(ASan reserves terabytes of shadow address space, so an RLIMIT_AS cannot be set under it).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLICE = ["test_watershed.py", "test_region_graph.py", "test_xpress_scores.py", "test_agglomerate.py",
         "test_mutex_watershed.py", "test_rand_voi.py", "test_relabel.py", "test_shared_voxels.py",
         "test_saved.py"]


def _runtime(name: str) -> str:
    cxx = shutil.which("g++") or pytest.skip("the sanitizer build needs g++")
    path = subprocess.run([cxx, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(path) or not os.path.exists(path):
        pytest.skip(f"g++ has no {name} here")
    return path


def test_sanitized_core_passes_the_kernel_tests(tmp_path):
    import pybind11

    runtimes = [_runtime("libasan.so"), _runtime("libubsan.so")]
    build, pkg = tmp_path / "build", tmp_path / "pkg"
    cmake = shutil.which("cmake") or pytest.fail("cmake is needed (it is in the test extra)")
    configure = [cmake, "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                 "-DSKBUILD_PROJECT_NAME=xpress_fast", "-DSKBUILD_PROJECT_VERSION=0.1.0",
                 f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", f"-DPython_EXECUTABLE={sys.executable}",
                 "-DXPRESS_WERROR=ON", "-DXPRESS_SANITIZE=address,undefined",
                 f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={build / 'out'}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, [cmake, "--build", str(build), "--parallel", "2"]):
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]  # -Werror: a warning fails here

    # the Python sources with the sanitized modules beside them, first on the path
    shutil.copytree(ROOT / "python" / "xpress_fast", pkg / "xpress_fast",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    for so in (build / "out").glob("*.so"):
        shutil.copy(so, pkg / "xpress_fast")
    env = {**os.environ, "PYTHONPATH": str(pkg), "LD_PRELOAD": ":".join(runtimes),
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}
    check = subprocess.run([sys.executable, "-c", "import xpress_fast._segment as s, xpress_fast._metrics as m; "
                            "print(s.__file__); print(m.__file__)"], env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert all(line.startswith(str(pkg)) for line in check.stdout.split()), check.stdout
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          *[str(ROOT / "tests" / f) for f in SLICE]],
                         env=env, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-6000:]
