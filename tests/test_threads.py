"""Kernels asked for more threads than can start (here: address space for their stacks runs out
under RLIMIT_AS) do the parts left over on the calling thread, with the results of one thread."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

resource = pytest.importorskip("resource")  # POSIX only
if not sys.platform.startswith("linux") or not hasattr(resource, "RLIMIT_AS"):
    pytest.skip("RLIMIT_AS and /proc/self/status are Linux's", allow_module_level=True)

import xpress_fast  # noqa: E402

PYTHON_DIR = Path(xpress_fast.__file__).resolve().parents[1]
# z = 128 so that 64 threads each get two planes (fewer planes per thread and the kernels use one)
SHAPE = (3, 128, 16, 16)
THREADS = 64
# Address space left above the process's size: room for the work and a few thread stacks (8 MiB
# each by default), far from the 64 asked for; once the work is allocated, too little for a
# thread's 64 MiB malloc arena (threads without one map their allocations one by one, as under a
# real memory limit). 40 and 56 MiB failed some runs with bad_alloc in the watershed itself.
MARGIN = 64 << 20

COMMON = """
import hashlib
import numpy as np
import xpress_fast

def affinities():
    return np.random.default_rng(7).random({shape}, dtype=np.float32)

def digest(threads):
    affs = affinities()
    out = {{}}
    frag = xpress_fast.watershed(affs, min_seed_distance=3, threads=threads)
    out["watershed"] = hashlib.sha256(frag.tobytes()).hexdigest()
    g = xpress_fast.region_graph(frag, affs, threads=threads)
    h = hashlib.sha256()
    for a in (g.edges, g.counts, g.sums, g.mins, g.maxs, g.hist_offsets, g.hist_bins, g.hist_counts):
        h.update(np.ascontiguousarray(a).tobytes())
    out["region_graph"] = h.hexdigest()
    seg = xpress_fast.merge_history(affs, [0.5], watershed_options=dict(min_seed_distance=3, threads=threads))
    out["agglomerate"] = hashlib.sha256(seg.segmentation(0.5).tobytes()).hexdigest()
    return out
""".format(shape=SHAPE)

CHILD = COMMON + """
import json, resource, sys, threading

digest(1)  # warm-up: everything imported and allocated once before the limit
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
resource.setrlimit(resource.RLIMIT_AS, (vm + {margin}, hard))

# the limit must really stop threads from starting (else this test would test nothing)
probe, started = [], 0
release = threading.Event()
for _ in range({threads}):
    t = threading.Thread(target=release.wait)
    try:
        t.start()
    except RuntimeError:
        break
    probe.append(t)
release.set()
for t in probe:
    t.join()

out = digest({threads})
out["probe_started"] = len(probe)
print(json.dumps(out))
sys.stdout.flush()
""".format(margin=MARGIN, threads=THREADS)


def test_thread_start_failure_falls_back_to_fewer_threads():
    scope: dict = {}
    exec(COMMON, scope)  # noqa: S102 - the same code as the child's, with one thread
    expected = scope["digest"](1)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"child exited with {proc.returncode}:\n{proc.stderr[-3000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out.pop("probe_started") < THREADS - 1, "the address-space limit let every thread start"
    assert out == expected
