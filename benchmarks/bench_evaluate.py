"""Scoring a submission-sized segmentation against skeletons: xpress-fast vs a plain-Python evaluator.

Builds, deterministically, a case shaped like the XPRESS test submission (334^3 uint64 at 99 nm,
~240 axon skeletons of ~19 um with nodes every 200-400 nm, a mix of splits and merges) and a
second one in which 120 axons share one label (a large merger), then prints, in one run:
our scoring time with the skeletons indexed once (a sweep's inner loop), the time to build that
index, our cold one-shot time (from a Skeletons object, and from the networkx graph, whose
conversion dominates),
the plain-Python reference's time (tests/reference_metrics.py, the definitions of METRICS.md
written as obviously as possible), the ratio, and the peak memory each adds beyond the input.
Each method runs in its own child process so that peaks do not mix.

    python benchmarks/bench_evaluate.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the reference evaluator lives with the tests

VOXEL = 99.0
SHAPE = 334


def make_case(n_axons: int, merger: int, seed: int, shape: int = SHAPE):
    """Axon-like random walks inside the ROI; a segmentation painting each node's voxel and
    its 6-neighbours with the label of its piece (pieces: splits; shared labels: merges)."""
    import networkx as nx

    rng = np.random.default_rng(seed)
    extent = shape * VOXEL
    graph = nx.Graph()
    seg = np.zeros((shape,) * 3, dtype=np.uint64)
    next_label = 1
    node = 0
    merged_label = None
    for axon in range(n_axons):
        n_steps = int(19000 / 300)
        pos = rng.uniform(0.1 * extent, 0.9 * extent, 3)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        n_pieces = 1 + rng.poisson(1.2)  # splits along the axon
        cuts = np.sort(rng.choice(np.arange(1, n_steps), size=n_pieces - 1, replace=False))
        labels = []
        for _ in range(n_pieces):
            if axon < merger:
                merged_label = merged_label or next_label
                labels.append(merged_label)
                if merged_label == next_label:
                    next_label += 1
            elif rng.random() < 0.08 and next_label > 1:
                labels.append(int(rng.integers(1, next_label)))  # merge with an earlier piece
            else:
                labels.append(next_label)
                next_label += 1
        piece = 0
        prev = None
        for step in range(n_steps):
            if piece < len(cuts) and step >= cuts[piece]:
                piece += 1
            direction += rng.normal(scale=0.15, size=3)
            direction /= np.linalg.norm(direction)
            pos = np.clip(pos + direction * rng.uniform(200, 400), 0, extent - 1)
            graph.add_node(node, position=(pos[2], pos[1], pos[0]))  # x, y, z nm
            if prev is not None:
                graph.add_edge(prev, node)
            z, y, x = (pos // VOXEL).astype(int)
            for dz, dy, dx in ((0, 0, 0), (1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
                seg[np.clip(z + dz, 0, shape - 1), np.clip(y + dy, 0, shape - 1), np.clip(x + dx, 0, shape - 1)] = \
                    labels[piece]
            prev = node
            node += 1
    return seg, graph


def _peak_rss_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _run(method: str, n_axons: int, merger: int, seed: int, shape: int, repeats: int, queue) -> None:
    import xpress_fast as xf

    seg, graph = make_case(n_axons, merger, seed, shape)
    kwargs = dict(voxel_size=(VOXEL,) * 3)
    if method == "ours_indexed":
        index = xf.SkeletonIndex(graph, shape=seg.shape, **kwargs)
    skeletons = xf.Skeletons.from_networkx(graph)  # the challenge file, read once
    base = _rss_mb()
    _peak_rss_reset()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        if method == "ours_indexed":
            scores = index.score(seg).as_dict()
        elif method == "ours_oneshot":
            scores = xf.xpress_scores(seg, graph, **kwargs).as_dict()
        elif method == "ours_oneshot_skeletons":
            scores = xf.xpress_scores(seg, skeletons, **kwargs).as_dict()
        elif method == "index_build":
            index = xf.SkeletonIndex(skeletons, shape=seg.shape, **kwargs)
            scores = {"nerl": math.nan, "xpress_erl_rand": math.nan, "merge_count": -1}
        else:
            from reference_metrics import reference_scores

            scores = reference_scores(seg, graph, offset=(0, 0, 0), roi_begin=None, roi_shape=None, **kwargs)
        times.append(time.perf_counter() - t0)
    queue.put({"time": min(times), "peak_extra_mb": max(_peak_rss_mb() - base, 0.0),
               "nerl": scores["nerl"], "xpress_erl_rand": scores["xpress_erl_rand"],
               "merge_count": scores["merge_count"], "nodes": graph.number_of_nodes()})


def run(method, n_axons, merger, seed, shape, repeats):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_run, args=(method, n_axons, merger, seed, shape, repeats, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 128^3 case with 60 axons (seconds)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    shape, n_axons, merger = (128, 60, 30) if args.quick else (SHAPE, 240, 120)
    import xpress_fast

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"numpy {np.__version__}, xpress_fast {xpress_fast.__version__}")
    print(f"# segmentation {shape}^3 uint64 at {VOXEL:g} nm")
    rows = []
    for case, n_merged in (("splits+merges", 0), (f"{merger}-axon merger", merger)):
        res = {m: run(m, n_axons, n_merged, 1, shape, 50 if m != "reference" else 1)
               for m in ("ours_indexed", "ours_oneshot_skeletons", "ours_oneshot", "index_build", "reference")}
        for m in ("ours_oneshot_skeletons", "ours_oneshot", "reference"):
            assert abs(res[m]["xpress_erl_rand"] - res["ours_indexed"]["xpress_erl_rand"]) < 1e-6 or \
                np.isnan(res[m]["xpress_erl_rand"])
        ratio = res["reference"]["time"] / res["ours_indexed"]["time"]
        rows.append((case, res, ratio))
        print(f"\n{case}: {res['ours_indexed']['nodes']} nodes, nERL {res['ours_indexed']['nerl']:.4f}, "
              f"merge_count {res['ours_indexed']['merge_count']}")
        print(f"{'method':<36}{'time (ms)':>10}{'peak extra (MB)':>18}")
        for m, label in (("ours_indexed", "xpress-fast, index reused"),
                         ("index_build", "xpress-fast, building the index"),
                         ("ours_oneshot_skeletons", "xpress-fast, cold call (Skeletons)"),
                         ("ours_oneshot", "xpress-fast, cold call (nx graph)"),
                         ("reference", "plain-Python reference")):
            print(f"{label:<36}{res[m]['time'] * 1e3:>10.2f}{res[m]['peak_extra_mb']:>18.1f}")
        print(f"speed-up (reference / indexed): {ratio:.0f}x; "
              f"(reference / one-shot): {res['reference']['time'] / res['ours_oneshot']['time']:.0f}x")
    if args.json:
        Path(args.json).write_text(json.dumps([{"case": c, "ratio": r, **{m: v for m, v in res.items()}}
                                               for c, res, r in rows], indent=2))


if __name__ == "__main__":
    main()
