"""The per-step cost of each backbone in each memory layout and precision on this CPU: the evidence behind
`speed.CPU_LAYOUT` (`python scripts/calibrate_speed.py`; docs/PERFORMANCE.md).

Plain PyTorch training steps (AdamW, random weights, batch 64 at 64 px, one thread by default), every
configuration measured once per round and the rounds repeated, so a burst of load hits every configuration; the
table is the median over rounds.  Run it on an idle machine: it prints the 1-minute load before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from fairfacebench.estimate import measure_step
from fairfacebench.speed import CPU_LAYOUT, bf16_native

LAYOUTS = {"default": torch.contiguous_format, "channels_last": torch.channels_last}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backbones", default="mobilenet_v2,resnet18")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    precisions = ["fp32", "bf16"] if bf16_native() else ["fp32"]
    configs = [(b, layout, prec) for b in args.backbones.split(",") for prec in precisions for layout in LAYOUTS]
    print(f"load before: {os.getloadavg()[0]:.2f}; bf16 native: {bf16_native()}; threads {args.threads}")
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(args.rounds):
        for backbone, layout, prec in configs:
            cost = measure_step(backbone, args.resolution, args.batch_size, prec, args.threads, LAYOUTS[layout])
            times[(backbone, layout, prec)].append(cost.train_step_s)
    print(f"load after: {os.getloadavg()[0]:.2f}\n")
    header = "| backbone | " + " | ".join(f"{layout} {prec}" for prec in precisions for layout in LAYOUTS) + " |"
    print(header + "\n|" + "---|" * (header.count("|") - 1))
    for backbone in args.backbones.split(","):
        cells = [statistics.median(times[(backbone, layout, prec)]) * 1000 for prec in precisions for layout in LAYOUTS]
        print(f"| {backbone} | " + " | ".join(f"{ms:.0f} ms" for ms in cells) + " |")
    print()
    for backbone in args.backbones.split(","):
        for prec in precisions:
            best = min(LAYOUTS, key=lambda layout: statistics.median(times[(backbone, layout, prec)]))
            table = CPU_LAYOUT.get((backbone, prec), "channels_last")
            agrees = "agrees" if (best == "channels_last") == (table == "channels_last") else "DIFFERS"
            print(f"{backbone} {prec}: fastest {best}; speed.CPU_LAYOUT says {table} ({agrees})")


if __name__ == "__main__":
    main()
