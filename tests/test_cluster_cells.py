"""scripts/cluster_cells.py: the (class, group) cells of clip-cluster's clusters, rebuilt and checked."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SCRIPT = Path(__file__).parents[1] / "scripts" / "cluster_cells.py"
spec = importlib.util.spec_from_file_location("cluster_cells", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)


def planted():
    """Two tight clusters far apart: cluster A holds 6 Male/G0 and 2 Female/G1, cluster B 4 Female/G0."""
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(0, 0.01, (8, 4)) + 5, rng.normal(0, 0.01, (4, 4)) - 5]).astype(np.float32)
    y = np.array([0] * 6 + [1] * 2 + [1] * 4)
    a = np.array([0] * 6 + [1] * 2 + [0] * 4)
    data = SimpleNamespace(train=SimpleNamespace(y=y, a=a), target_classes=("Male", "Female"), group_names=("G0", "G1"))
    return data, emb


def record(sizes, weak):
    return {
        "run_id": "r0",
        "spec": {"task": "gender/g", "seed": 0},
        "stages": {
            "clusters": {"k": 2, "train_sizes": sizes, "underperforming": weak, "val_acc": [0.9, 0.5], "upsample": 3.0}
        },
    }


def test_cells_and_draw_shares_of_a_planted_partition(capsys):
    data, emb = planted()
    labels = script.fit_clusters(emb, 2, 0).labels_
    sizes = np.bincount(labels, minlength=2).tolist()
    big = int(np.argmax(sizes))  # the 8-image cluster
    script.report(record(sizes, [big]), data, emb)
    out = capsys.readouterr().out
    assert "| Male/G0 | Male/G1 | Female/G0 | Female/G1 |" in out
    acc = [0.9, 0.5]
    assert f"| {big} | 6 | 0 | 0 | 2 | {acc[big]:.3f} | yes |" in out
    assert f"| {1 - big} | 0 | 0 | 4 | 0 | {acc[1 - big]:.3f} |  |" in out
    # weights: 8 images x3, 4 images x1 -> total 28; Male/G0 18/28, Female/G1 6/28, Female/G0 4/28
    assert "| share of the draws | 0.643 | 0.000 | 0.143 | 0.214" in out
    assert "| without re-sampling | 0.500 | 0.000 | 0.333 | 0.167" in out


def test_a_rebuild_that_is_not_the_runs_partition_stops():
    data, emb = planted()
    with pytest.raises(SystemExit, match="differ from the logged"):
        script.report(record([6, 6], [0]), data, emb)
