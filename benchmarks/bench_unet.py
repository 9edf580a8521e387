"""U-Net throughput: inference voxels/s and training step time, CPU (and CUDA with AMP if present).

Usage::

    PYTHONPATH=python python benchmarks/bench_unet.py [--size 96] [--threads 2] [--steps 5]

Prints a markdown table (machine, torch version, threads) for three networks: the ``tiny`` preset,
the default ``UNet3D()`` and an XPRESS-baseline-sized net (24 fmaps, x3, three 2x2x2 levels).
"""
from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from xpress_fast.synthetic import make_volume
from xpress_fast.unet import TrainConfig, UNet3D, predict, train

NETS = {
    "tiny preset (6 fm, x2, 2 levels)": TrainConfig.tiny(),
    "default UNet3D (12 fm, x3, 2 levels)": TrainConfig(),
    "baseline-sized (24 fm, x3, 3 levels)": TrainConfig(num_fmaps=24, downsample_factors=((2, 2, 2),) * 3,
                                                          crop_shape=(64, 64, 64)),
}


def bench_inference(cfg: TrainConfig, raw: np.ndarray, device: str, amp: bool, block: int, batch: int) -> float:
    model = UNet3D(**cfg.model_kwargs())
    predict(raw[:block, :block, :block], model, block_shape=block, device=device, amp=amp)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    predict(raw, model, block_shape=block, batch_size=batch, device=device, amp=amp)
    if device == "cuda":
        torch.cuda.synchronize()
    return raw.size / (time.perf_counter() - t)


def bench_train(cfg: TrainConfig, vol, device: str, steps: int) -> float:
    cfg = TrainConfig.from_dict({**cfg.to_dict(), "steps": 1, "log_every": 0})
    train(vol.raw, labels=vol.labels, config=cfg, device=device)  # warm-up (allocations, cudnn)
    cfg.steps = steps
    t = time.perf_counter()
    train(vol.raw, labels=vol.labels, config=cfg, device=device)
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=96, help="edge of the cubic synthetic volume")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per net")
    ap.add_argument("--skip-baseline-cpu", action="store_true", help="skip the big net on the CPU")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vol = make_volume((args.size,) * 3, seed=0)
    devices = [("cpu", False)] + ([("cuda", True)] if torch.cuda.is_available() else [])
    print(f"machine: {platform.processor() or platform.machine()}, {args.threads} torch threads, "
          f"torch {torch.__version__}" + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    print(f"volume {args.size}^3 uint8, inference blocks 64^3 (same padding, default overlap)\n")
    print("| network | device | inference (Mvoxel/s) | training step (s) | crop |")
    print("|---|---|---|---|---|")
    for name, cfg in NETS.items():
        for dev, amp in devices:
            if dev == "cpu" and args.skip_baseline_cpu and name.startswith("baseline"):
                continue
            vps = bench_inference(cfg, vol.raw, dev, amp, 64, 4 if dev == "cuda" else 1)
            step = bench_train(cfg, vol, dev, args.steps)
            label = "cuda (AMP, channels_last_3d)" if dev == "cuda" else "cpu"
            print(f"| {name} | {label} | {vps / 1e6:.3f} | {step:.3f} | {cfg.batch_size} x "
                  f"{'x'.join(map(str, cfg.crop_shape))} |", flush=True)


if __name__ == "__main__":
    main()
