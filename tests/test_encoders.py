"""VLM encoders: open_clip loading and its errors, the embedding cache, prompt ensembles, the mini-CLIP."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fairfacebench.data import Attribute
from fairfacebench.encoders.openclip import OpenClipPlugin
from fairfacebench.errors import VLMUnavailable
from fairfacebench.plan import resolve_vlm
from fairfacebench.plugins import registry
from fairfacebench.vlm import VisionLanguageEncoder, load_vlm
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier, zero_shot_probabilities

# A tiny open_clip config in open_clip's own export layout (open_clip_config.json + weights).
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


class FakeText:
    """encode_text of a fixed lookup table, to check the prompt-ensemble arithmetic by hand."""

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def encode_text(self, texts):
        return np.stack([self.table[t] / np.linalg.norm(self.table[t]) for t in texts]).astype(np.float32)


def test_zero_shot_classifier_averages_normalised_prompt_embeddings():
    vec = {
        "a photo of a": np.array([1.0, 0, 0]),
        "a photo of b": np.array([0, 2.0, 0]),
        "a": np.array([1.0, 1.0, 0]),
        "b": np.array([0, 0, 3.0]),
        "a photo of c": np.array([0, 0, 1.0]),
        "c": np.array([0, 0, 1.0]),
    }
    w = zero_shot_classifier(FakeText(vec), [("a", "b"), ("c",)], templates=("a photo of {}", "{}"))
    expected0 = np.array([1, 0, 0]) + np.array([0, 1, 0]) + np.array([1, 1, 0]) / np.sqrt(2) + np.array([0, 0, 1])
    np.testing.assert_allclose(w[0], expected0 / np.linalg.norm(expected0), rtol=1e-6)
    np.testing.assert_allclose(w[1], [0, 0, 1], atol=1e-7)
    p = zero_shot_probabilities(np.array([[0, 0, 1.0]], np.float32), w, logit_scale=100.0)
    assert p.shape == (1, 2) and p[0, 1] > 0.99 and abs(p.sum() - 1) < 1e-6


def test_class_phrases_known_and_generic_attributes():
    assert class_phrases(Attribute("smiling", ("no", "yes"), (("a person not smiling",), ("a person smiling",)))) == [
        ("a person not smiling",),
        ("a person smiling",),
    ]
    assert class_phrases(registry().dataset("synthfaces").attributes["smiling"])[1][0] == "a person smiling"
    assert class_phrases(Attribute("Blond_Hair", ("not_Blond_Hair", "Blond_Hair"))) == [
        ("a person without blond hair",),
        ("a person with blond hair",),
    ]
    assert class_phrases(Attribute("race", ("White", "Black")))[1] == ("a black person",)


def test_open_clip_errors_say_what_to_pass(tmp_path, monkeypatch):
    plugin = OpenClipPlugin()
    with pytest.raises(VLMUnavailable, match="open_clip:ARCH:TAG"):
        plugin.load("ViT-B-32", tmp_path)
    with pytest.raises(VLMUnavailable, match="unknown open_clip architecture 'NoSuchNet'"):
        plugin.load("NoSuchNet:openai", tmp_path)
    with pytest.raises(VLMUnavailable, match=r"checkpoint file does not exist.*laion2b_s34b_b79k"):
        plugin.load(f"ViT-B-32:{tmp_path}/missing.pt", tmp_path)
    with pytest.raises(VLMUnavailable, match="is not a pretrained tag"):
        plugin.load("ViT-B-32:no_such_tag", tmp_path)
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")
    with pytest.raises(
        VLMUnavailable, match=r"FAIRBENCH_OFFLINE=1.*--vlm open_clip:ViT-B-32:/path/to.*--vlm none.*mini-CLIP"
    ):
        plugin.load("ViT-B-32:laion2b_s34b_b79k", tmp_path)
    with pytest.raises(VLMUnavailable, match="must hold open_clip_config.json"):
        plugin.load(f"local-dir:{tmp_path}", tmp_path)


@pytest.fixture
def tiny_open_clip_dir(tmp_path) -> Path:
    import open_clip

    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    torch.manual_seed(0)
    model = open_clip.model.CLIP(
        TINY_CFG["embed_dim"],
        open_clip.model.CLIPVisionCfg(**TINY_CFG["vision_cfg"]),
        open_clip.model.CLIPTextCfg(**TINY_CFG["text_cfg"]),
    )
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder


def test_local_open_clip_checkpoint_embeds_offline_with_a_disk_cache(tiny_open_clip_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")
    cache = tmp_path / "cache"
    enc = load_vlm(f"open_clip:local-dir:{tiny_open_clip_dir}", registry().encoders, cache)
    assert (
        isinstance(enc, VisionLanguageEncoder) and enc.info["source"] == "local-dir" and len(enc.info["sha256"]) == 64
    )
    # a run's content digest names the weights as the record's `vlm.sha256` does (grid.content_changes)
    assert registry().encoders["open_clip"].weights_digest(f"local-dir:{tiny_open_clip_dir}") == enc.info["sha256"]
    images = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    emb = enc.encode_images(images)
    assert emb.shape == (5, 16) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    (cached,) = list((cache / "embeddings").rglob("*.npy"))
    np.save(cached, np.full_like(emb, 7.0))  # a second call must read the cache, not recompute
    assert (enc.encode_images(images) == 7.0).all()
    assert not (enc.encode_images(images[:4]) == 7.0).any()  # other images, other key
    text = enc.encode_text(["a photo of a person smiling", "a face"])
    assert text.shape == (2, 16) and np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)


def test_vlm_auto_resolves_to_the_datasets_embedded_encoder():
    encoders = registry().encoders
    assert {"open_clip", "mini-clip"} <= set(encoders)
    assert resolve_vlm("auto", "synthfaces", encoders) == "mini-clip"
    assert resolve_vlm("auto", "utkface", encoders) == "none"
    assert resolve_vlm("open_clip:ViT-B-32:openai", "utkface", encoders) == "open_clip:ViT-B-32:openai"
    with pytest.raises(VLMUnavailable, match="unknown encoder 'clip'"):
        resolve_vlm("clip:x", "synthfaces", encoders)


def test_run_with_an_unloadable_vlm_is_refused_before_training_with_the_message(tmp_path, monkeypatch, capsys):
    """Preflight refuses an open_clip tag that is neither cached nor downloadable (issue 28): no run starts."""
    from fairfacebench.cli import main
    from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH

    monkeypatch.setenv("FAIRBENCH_OFFLINE", "1")
    out = tmp_path / "runs"
    options = [f"--dataset-option={k}={v}" for k, v in {**TINY_SYNTH, "n_pool": 200}.items()]
    argv = ["run", "--methods", "ssl-pipeline", "--budget", "smoke", "--bootstrap", "0", "--out", str(out)]
    assert main([*argv, "--vlm", "open_clip:ViT-B-32:laion2b_s34b_b79k", *options]) == 2
    error = capsys.readouterr().err
    assert "could not load open_clip ViT-B-32 weights 'laion2b_s34b_b79k'" in error and "--vlm none" in error
    assert not list(out.glob("*/record.json"))


@pytest.fixture(scope="session")
def mini_clip():
    """The default mini-CLIP, trained once per session into the test cache (or read from it)."""
    from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, load_or_train

    return load_or_train(MiniClipConfig(), Path(os.environ["FAIRBENCH_CACHE"]))


def test_mini_clip_zero_shot_smiling_far_above_chance(mini_clip):
    """Zero-shot smiling on synthfaces validation images from prompts alone (never a benchmark image in training)."""
    from fairfacebench.datasets.synthfaces import ATTRIBUTES, make_split, resolve_options

    split, _ = make_split(resolve_options({"n_val": 600}), "val", 48)  # the default budget's resolution
    classifier = zero_shot_classifier(mini_clip, class_phrases(ATTRIBUTES["smiling"]))
    pred = zero_shot_probabilities(mini_clip.encode_images(split.images), classifier, mini_clip.logit_scale).argmax(1)
    assert (pred == split.labels["smiling"]).mean() > 0.65
    report = mini_clip.info["report"]
    assert report["zero_shot"]["smiling@64px"]["acc"] > 0.65 and report["zero_shot"]["smiling@64px"]["n"] == 1000
    assert report["zero_shot"]["split"].startswith("synthfaces val") and "smiling" in report["captions_name"]
    assert mini_clip.info["id"] == f"mini-clip-{report['key']}" and report["config"]["n_captioned"] > 0
