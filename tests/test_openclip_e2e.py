"""The CLIP path a GPU user takes, end to end on the CPU: a real open_clip architecture from a local checkpoint.

open_clip builds ViT-S-32-alt (a registered architecture, 43 M parameters) with random weights, without any
download; the test saves it as a checkpoint file and `fairbench run --vlm open_clip:ViT-S-32-alt:PATH` loads it
back through the encoder plugin for clip-cluster and ssl-pipeline on tiny synthfaces. Random weights make the
numbers meaningless; what is checked is the path: loading, embedding, prompts, the record naming the encoder.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from fairfacebench.backbones import sha256
from fairfacebench.cli import main
from fairfacebench.results import load_runs

ARCH = "ViT-S-32-alt"
TINY = {"n_train": 128, "n_val": 64, "n_test": 48, "n_pool": 64}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = open_clip.create_model(ARCH, pretrained=None)
    path = tmp_path_factory.mktemp("open_clip") / f"{ARCH}-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
def test_clip_methods_run_end_to_end_on_a_local_open_clip_checkpoint(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")  # nothing may download
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))  # embeddings computed here, not read
    out = tmp_path / "runs"
    options = [f"--dataset-option={k}={v}" for k, v in TINY.items()]
    vlm = f"open_clip:{ARCH}:{checkpoint}"
    argv = ["run", "--methods", "clip-cluster,ssl-pipeline", "--budget", "smoke", "--bootstrap", "0"]
    assert main([*argv, "--workers", "1", "--vlm", vlm, "--out", str(out), *options]) == 0
    records = {r["spec"]["method"]: r for r in (json.loads(p.read_text()) for p in out.glob("*/record.json"))}
    assert set(records) == {"clip-cluster", "ssl-pipeline"}
    expected_id = f"open_clip-{ARCH}-{sha256(checkpoint)[:16]}"
    for rec in records.values():
        assert rec["status"] == "ok", rec.get("error")
        assert rec["variant"] is None  # the VLM path itself, not a fallback
        assert rec["spec"]["vlm"] == vlm and rec["vlm"]["id"] == expected_id and rec["vlm"]["source"] == "local-file"
    vlm_samples = {
        m: sum(s.get("vlm", 0) for s in r["budget_report"]["forward_samples_per_stage"].values())
        for m, r in records.items()
    }
    assert vlm_samples == {"clip-cluster": 128 + 32, "ssl-pipeline": 64 + 128}  # train + val half; pool + train
    clusters, ssl = records["clip-cluster"], records["ssl-pipeline"]
    assert clusters["stages"]["features"]["source"] == f"vlm:{vlm}" and clusters["stages"]["features"]["prompts"]
    dim = open_clip.get_model_config(ARCH)["embed_dim"]
    assert ssl["stages"]["1-embed"]["encoder"] == vlm and ssl["stages"]["1-embed"]["dim"] == dim
    assert ssl["stages"]["4-pseudo-labels"]["rule"] == "zero-shot"
    assert set(load_runs(out)["vlm"]) == {vlm}  # the result rows name the encoder
    embedded = list((tmp_path / "cache" / "embeddings" / expected_id).glob("*.npy"))
    assert len(embedded) == 3  # train (shared by both methods), clip-cluster's validation half, the pool
