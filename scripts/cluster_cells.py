"""What clip-cluster up-samples: the (class, group) cells of its clusters, rebuilt from a store's records.

    python scripts/cluster_cells.py STORE --data-root /path/to/UTKFace [--method M] [--encoder E]

A run record logs the clusters clip-cluster kept (k, their training sizes, validation accuracy, the under-performing
ones) and the harness stores each cluster's sensitive-group make-up, but not its class make-up, which decides whether
up-sampling a cluster up-samples a minority cell or the shortcut's own majority cell.  This rebuilds the training
clusters of each stored run from the same inputs the method used (the task's training images, the encoder's image
embeddings, read from its cache when present, k-means with the run's k and seed, as `methods/clip_cluster.py`'s
image-embeddings variant fits them), checks that the cluster sizes equal the logged ones (so the rebuild is the run's
own partition, else it stops), and prints per run each cluster's (class, group) counts, its validation accuracy,
whether it was up-sampled, and each training cell's share of the draws with and without re-sampling.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from fairfacebench.data import make_task_data
from fairfacebench.methods.clip_cluster import fit_clusters, resampling_probabilities
from fairfacebench.plugins import registry
from fairfacebench.settings import default_cache_dir
from fairfacebench.sharding import embed_in_shards
from fairfacebench.vlm import load_vlm


def records(store: Path, method: str, encoder: str) -> list[dict]:
    found = []
    for path in sorted(store.glob("*/record.json")):
        record = json.loads(path.read_text())
        spec = record["spec"]
        if spec["method"] == method and spec["vlm"] == encoder and record.get("status") == "ok":
            found.append(record)
    return sorted(found, key=lambda r: (r["spec"]["task"], r["spec"]["seed"]))


def cell_names(data) -> list[tuple[int, int, str]]:
    """(class code, group code, 'class/group') for every training cell."""
    classes, groups = data.target_classes, data.group_names
    return [(y, a, f"{cls}/{group}") for y, cls in enumerate(classes) for a, group in enumerate(groups)]


def report(record: dict, data, embeddings: np.ndarray) -> None:
    spec, logged = record["spec"], record["stages"]["clusters"]
    k = int(logged["k"])
    parts = fit_clusters(embeddings, k, int(spec["seed"])).labels_
    sizes = np.bincount(parts, minlength=k).tolist()
    if sizes != logged["train_sizes"]:
        raise SystemExit(
            f"run {record['run_id']}: rebuilt cluster sizes {sizes} differ from the logged {logged['train_sizes']}; "
            "the rebuild is not the run's partition (other images, encoder or scikit-learn version)"
        )
    weak = np.zeros(k, bool)
    weak[logged["underperforming"]] = True
    y, a = data.train.y, data.train.a
    cells = cell_names(data)
    in_cell = [(y == cy) & (a == ca) for cy, ca, _ in cells]
    print(
        f"\n## {spec['task']} seed {spec['seed']} (run {record['run_id']}; k = {k}, up-sampled x{logged['upsample']})"
    )
    print("| cluster | " + " | ".join(name for *_, name in cells) + " | val acc | up-sampled |")
    print("|---" * (len(cells) + 3) + "|")
    for c in range(k):
        counts = [int((mask & (parts == c)).sum()) for mask in in_cell]
        mark = "yes" if weak[c] else ""
        print(f"| {c} | " + " | ".join(map(str, counts)) + f" | {logged['val_acc'][c]:.3f} | {mark} |")
    drawn = resampling_probabilities(parts, weak, float(logged["upsample"]), None)
    print("| share of the draws | " + " | ".join(f"{drawn[mask].sum():.3f}" for mask in in_cell))
    print("| without re-sampling | " + " | ".join(f"{mask.mean():.3f}" for mask in in_cell))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--method", default="clip-cluster")
    parser.add_argument("--encoder", default="face-descriptor")
    args = parser.parse_args()
    reg, cache = registry(), Path(os.environ.get("FAIRBENCH_CACHE", default_cache_dir()))
    encoder = load_vlm(args.encoder, reg.encoders, cache)
    loaded: dict[str, tuple] = {}
    for record in records(args.store, args.method, args.encoder):
        spec = record["spec"]
        key = f"{spec['task']}|{spec['resolution']}|{sorted(spec['dataset_options'].items())}"
        if key not in loaded:
            plugin = reg.dataset(spec["dataset"])
            ds = plugin.load(args.data_root, spec["resolution"], cache, task=spec["task"], **spec["dataset_options"])
            data = make_task_data(ds, plugin.task(spec["task"]))
            loaded[key] = (
                data,
                embed_in_shards(encoder.encode_images, data.train.images),
            )  # the run's shards: cache hits
        report(record, *loaded[key])


if __name__ == "__main__":
    main()
