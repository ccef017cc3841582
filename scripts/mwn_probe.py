"""Does ssl-pipeline's Meta-Weight-Net down-weight wrong labels on real images?  A mechanism probe.

The real code path of stage 5 (`weighted_contrastive` -> `meta_weighted_loss`: SupCon per sample, the weight
net, a functional virtual SGD step of the encoder, SupCon on a clean balanced meta set) on synthfaces images with
the ImageNet MobileNetV2, but with *planted* label noise instead of pseudo-labels: a share of the training labels
flipped at random, so "wrong" is known and independent of how hard an image is.  Prints, per setting, the mean
weight the wrong and the right labels received (ŵ·B, 1 = uniform) and their ratio, and the learned loss -> weight
map.  A ratio well below 1 means the mechanism works in this regime.

    python scripts/mwn_probe.py --steps 150 300 --scope tail all --flip 0.3
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import make_task_data
from fairfacebench.methods.ssl_pipeline import SSLPipeline, balanced_meta_set, weighted_contrastive
from fairfacebench.plugins import registry
from fairfacebench.settings import default_cache_dir


def probe(data, steps: int, scope: str, flip: float, seed: int, batch: int, meta: bool = True, **extra) -> dict:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    wrong = rng.random(len(data.train)) < flip
    labels = np.where(wrong, 1 - data.train.y, data.train.y)
    budget = Budget("probe", steps=steps, batch_size=batch, views=8)
    settings = FitSettings({**SSLPipeline.default_hparams(), "meta_scope": scope, **extra}, seed, budget)
    ctx = FitContext(data, settings, BudgetMeter(budget))
    rows = balanced_meta_set(data.val.y, data.val.a, ctx.hparams["meta_per_cell"], ctx.rng("meta-set"))
    start = time.perf_counter()
    weights = weighted_contrastive(
        ctx, ctx.new_classifier(), data.train.images, labels, data.val.images[rows], data.val.y[rows], steps, meta
    )
    stage = ctx.log.stages["5-meta-weighted-supcon" if meta else "5-supcon"]
    if not meta:
        return {
            "steps": steps,
            "meta": False,
            "loss first/last": f"{stage['first_loss']}/{stage['last_loss']}",
            "seconds": round(time.perf_counter() - start),
        }
    seen = ~np.isnan(weights)
    w_wrong, w_right = weights[seen & wrong].mean(), weights[seen & ~wrong].mean()
    return {
        "steps": steps,
        "scope": scope,
        "wrong": round(float(w_wrong), 3),
        "right": round(float(w_right), 3),
        "ratio": round(float(w_wrong / w_right), 3),
        "loss first/last": f"{stage['first_loss']}/{stage['last_loss']}",
        "weight map": stage["weight_function"],
        "seconds": round(time.perf_counter() - start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[150, 300])
    parser.add_argument("--scope", nargs="+", default=["tail", "all"], choices=["tail", "all"])
    parser.add_argument("--flip", type=float, default=0.3, help="share of training labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--no-meta", action="store_true", help="plain SupCon (the ablation), for its loss")
    parser.add_argument("--encoder-lr", type=float, default=None, help="override ssl-pipeline's encoder_lr")
    args = parser.parse_args()
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    ds = registry().dataset("synthfaces")
    cache = Path(os.environ.get("FAIRBENCH_CACHE", default_cache_dir()))
    loaded = ds.load(None, args.resolution, cache, n_train=args.n_train, n_val=480, n_test=96)
    data = make_task_data(loaded, ds.task("smiling/skin_tone"))
    extra = {} if args.encoder_lr is None else {"encoder_lr": args.encoder_lr}
    for steps, scope in itertools.product(args.steps, args.scope):
        print(probe(data, steps, scope, args.flip, args.seed, args.batch, not args.no_meta, **extra), flush=True)


if __name__ == "__main__":
    main()
