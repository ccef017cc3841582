"""synthfaces: determinism, native sizes, the bias knobs, the pools and the captions."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest

from fairfacebench.data import DataError, make_task_data
from fairfacebench.datasets.synthfaces import SynthFaces, fairfacebench_datasets, render, world
from fairfacebench.datasets.synthfaces.captions import captioned_pool

SMALL = {"n_train": 400, "n_val": 96, "n_test": 96}


def fingerprint(ds) -> str:
    """sha256 over every split's images, labels and ids."""
    h = hashlib.sha256()
    for name in sorted(ds.splits):
        split = ds.splits[name]
        h.update(split.images.tobytes())
        for attr in sorted(split.labels):
            h.update(split.labels[attr].tobytes())
        h.update("".join(split.ids).encode())
    return h.hexdigest()


def cell_counts(labels: dict[str, np.ndarray]) -> np.ndarray:
    """Counts over all skin x hair x smiling x eyeglasses cells."""
    index = np.ravel_multi_index([labels[a] for a in world.LABEL_ORDER], (3, 2, 2, 2))
    return np.bincount(index, minlength=24)


def cue_pair_difference(attr: str, cue_strength: tuple[float, ...]) -> np.ndarray:
    """Mean |on - off| per skin tone between renderings that differ only in `attr`."""
    rng = np.random.default_rng(0)
    labels = world.sample_labels(rng, 600, world.joint_probabilities(world.DEFAULT_OPTIONS, balanced=True))
    params = render.sample_params(rng, {**labels, attr: np.zeros(600, np.int64)}, cue_strength)
    off = render.render_faces(params, 64, seed=1).astype(np.float32)
    on = render.render_faces({**params, attr: np.ones(600, np.int64)}, 64, seed=1).astype(np.float32)
    per_image = np.abs(on - off).mean(axis=(1, 2, 3))
    return np.array([per_image[labels["skin_tone"] == g].mean() for g in range(3)])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    plugin = SynthFaces()
    a = plugin.load(None, 32, tmp_path, seed=3, **SMALL)
    b = plugin.load(None, 32, tmp_path, seed=3, **SMALL)
    c = plugin.load(None, 32, tmp_path, seed=4, **SMALL)
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(c)


@pytest.mark.parametrize("size", [32, 64])
def test_splits_are_uint8_nhwc_at_the_requested_size(tmp_path, size):
    ds = SynthFaces().load(None, size, tmp_path, **SMALL)
    for name, n in (("train", 400), ("val", 96), ("test", 96)):
        split = ds.splits[name]
        assert split.images.dtype == np.uint8
        assert split.images.shape == (n, size, size, 3)
        assert set(split.labels) == set(world.ATTRIBUTES)
        assert split.ids[0] == f"synth-{name}-000000"
    assert ds.info["size"] == size and ds.info["sizes"] == {"train": 400, "val": 96, "test": 96}


def test_faces_are_rendered_natively_not_upscaled():
    rng = np.random.default_rng(0)
    labels = world.sample_labels(rng, 32, world.joint_probabilities(world.DEFAULT_OPTIONS, balanced=True))
    params = {**render.sample_params(rng, labels, (1.0, 1.0, 1.0)), "noise_sigma": np.zeros(32)}
    small = render.render_faces(params, 32, seed=0).astype(np.float32)
    large = render.render_faces(params, 64, seed=0).astype(np.float32)
    pooled = large.reshape(32, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    # Same scene at both sizes ...
    assert np.abs(pooled - small).mean() < 3.0
    # ... but the large one has detail inside 2x2 blocks that an upscale would not have.
    assert np.abs(large - pooled.repeat(2, axis=1).repeat(2, axis=2)).mean() > 1.0


def test_val_and_test_are_balanced_over_all_cells(tmp_path):
    ds = SynthFaces().load(None, 32, tmp_path, n_train=100, n_val=500, n_test=1000)
    for name in ("val", "test"):
        counts = cell_counts(ds.splits[name].labels)
        assert counts.max() - counts.min() <= 1, (name, counts)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "group_props": (0.2, 0.3, 0.5),
            "smiling_rate": (0.2, 0.5, 0.9),
            "eyeglasses_rate": (0.1, 0.5, 0.6),
            "long_hair_prop": 0.4,
            "smiling_shift_long_hair": 0.0,
        },
    ],
)
def test_train_realises_configured_imbalance_and_correlation(tmp_path, options):
    ds = SynthFaces().load(None, 32, tmp_path, n_train=6000, n_val=24, n_test=24, **options)
    opts = world.resolve_options(options)
    realised = ds.info["realised"]["train"]
    assert np.allclose(realised["skin_tone_props"], opts["group_props"], atol=0.005)
    assert realised["long_hair_prop"] == pytest.approx(opts["long_hair_prop"], abs=0.005)
    assert np.allclose(realised["p_eyeglasses_given_skin_tone"], opts["eyeglasses_rate"], atol=0.02)
    # Smiling rates per skin tone are shifted up for long hair and down for short hair.
    p_long = opts["long_hair_prop"]
    shift = opts["smiling_shift_long_hair"] * (2 * p_long - 1)
    assert np.allclose(realised["p_smiling_given_skin_tone"], np.asarray(opts["smiling_rate"]) + shift, atol=0.02)
    short, long = realised["p_smiling_given_hair_length"]
    assert long - short == pytest.approx(2 * opts["smiling_shift_long_hair"], abs=0.04)


def test_label_noise_flips_only_the_configured_group(tmp_path):
    ds = SynthFaces().load(None, 32, tmp_path, n_train=1200, n_val=24, n_test=24, label_noise=(0.0, 0.0, 0.5))
    clean = SynthFaces().load(None, 32, tmp_path, n_train=1200, n_val=24, n_test=24)
    noisy, truth = ds.splits["train"].labels, clean.splits["train"].labels
    assert np.array_equal(ds.splits["train"].images, clean.splits["train"].images)
    flipped = noisy["smiling"] != truth["smiling"]
    assert not flipped[truth["skin_tone"] != 2].any()
    assert flipped[truth["skin_tone"] == 2].mean() == pytest.approx(0.5, abs=0.1)
    assert ds.info["train_labels_flipped"]["smiling"] == flipped.sum()
    assert np.array_equal(ds.splits["test"].labels["smiling"], clean.splits["test"].labels["smiling"])


@pytest.mark.parametrize("attr", ["smiling", "eyeglasses"])
def test_target_cue_is_fainter_for_darker_skin(attr):
    default = cue_pair_difference(attr, world.DEFAULT_OPTIONS["cue_strength"])
    assert default[0] > default[1] > default[2] > 0
    # The knob, not only the skin colour, makes the cue faint: full strength restores most of it.
    assert cue_pair_difference(attr, (1.0, 1.0, 1.0))[2] > 1.5 * default[2]


def test_pool_plants_near_duplicates_and_off_domain_images(tmp_path):
    pool = SynthFaces().pool(None, 32, tmp_path, n_pool=600)
    report, hidden = pool.report, pool.hidden
    assert pool.images.shape == (600, 32, 32, 3) and pool.images.dtype == np.uint8
    assert (report["n"], report["near_duplicates"], report["off_domain"]) == (600, 60, 90)
    assert report["originals"] + report["near_duplicates"] + report["off_domain"] == 600
    assert (~hidden["is_face"]).sum() == 90
    assert all((hidden[a][~hidden["is_face"]] == -1).all() for a in world.LABEL_ORDER)

    dups = np.flatnonzero(hidden["duplicate_of"] >= 0)
    sources = hidden["duplicate_of"][dups]
    assert len(dups) == 60 and hidden["is_face"][sources].all() and (hidden["duplicate_of"][sources] == -1).all()
    flat = pool.images.reshape(600, -1).astype(np.float64)
    dist = (flat[dups] ** 2).sum(1)[:, None] + (flat**2).sum(1)[None, :] - 2 * flat[dups] @ flat.T
    dist[np.arange(60), dups] = np.inf
    assert np.array_equal(dist.argmin(axis=1), sources)
    for a in world.LABEL_ORDER:
        assert np.array_equal(hidden[a][dups], hidden[a][sources])


def test_pool_draws_from_its_own_seed_stream(tmp_path):
    ds = SynthFaces().load(None, 32, tmp_path, n_train=200, n_val=24, n_test=24)
    pool = SynthFaces().pool(None, 32, tmp_path, n_pool=200)
    train = ds.splits["train"].images.reshape(200, -1)
    faces = pool.images[pool.hidden["is_face"]].reshape(-1, train.shape[1])
    assert not (train[:, None, :] == faces[None, :, :]).all(-1).any()


SKIN_WORDS = ("light", "medium", "dark")
HAIR_WORDS = ("short", "long")


def mentioned(caption: str, negative: tuple[str, ...], positive: tuple[str, ...]) -> set[int]:
    """Which class (0 = negative, 1 = positive) a caption names, negations read first."""
    found = {0} if any(p in caption for p in negative) else set()
    for p in negative:
        caption = caption.replace(p, "")
    return found | ({1} if any(p in caption for p in positive) else set())


def test_captions_describe_the_rendered_attributes():
    pool = captioned_pool(400, size=32, seed=5)
    again = captioned_pool(400, size=32, seed=5)
    assert pool.captions == again.captions and np.array_equal(pool.images, again.images)
    assert len(pool.captions) == 400 and pool.images.shape == (400, 32, 32, 3)
    hidden, face = pool.hidden, pool.hidden["is_face"]
    assert (~face).sum() == 40 and (hidden["smiling"][~face] == -1).all()
    counts = dict.fromkeys(world.LABEL_ORDER, 0)
    for i, text in enumerate(pool.captions):
        if not face[i]:
            assert "person" not in text and "face" not in text
            continue
        said = {
            "smiling": mentioned(text, ("not smiling", "neutral expression", "straight face"), ("smil", "grinning")),
            "eyeglasses": mentioned(text, ("without glasses", "not wearing glasses"), ("glasses",)),
            "skin_tone": {k for k, w in enumerate(SKIN_WORDS) if re.search(rf"\b{w}\b", text)},
            "hair_length": {k for k, w in enumerate(HAIR_WORDS) if re.search(rf"\b{w}\b", text)},
        }
        for attr, classes in said.items():
            assert classes <= {int(hidden[attr][i])}, (text, attr, int(hidden[attr][i]))
            counts[attr] += bool(classes)
    n_faces = int(face.sum())
    assert counts["smiling"] == n_faces
    assert all(c > n_faces / 2 for c in counts.values()), counts
    # Several phrasings: far more distinct captions than attribute combinations.
    assert len(set(pool.captions)) > 100


def test_captioned_pool_is_disjoint_from_other_streams(tmp_path):
    pool = SynthFaces().pool(None, 32, tmp_path, n_pool=100)
    captioned = captioned_pool(100, size=32, seed=0)
    assert not np.array_equal(pool.images, captioned.images)
    assert not (captioned.images[:, None] == pool.images[None]).all(axis=(2, 3, 4)).any()


def test_options_are_validated_with_clear_messages(tmp_path):
    with pytest.raises(DataError, match="unknown option.*'n_trian'.*valid options"):
        SynthFaces().load(None, 32, tmp_path, n_trian=10)
    with pytest.raises(DataError, match="'group_props' must be 3 numbers"):
        SynthFaces().load(None, 32, tmp_path, group_props=(0.5, 0.5))
    with pytest.raises(DataError, match="'group_props' must sum to 1"):
        SynthFaces().load(None, 32, tmp_path, group_props=(0.5, 0.5, 0.5))


def test_quota_counts_sum_to_n_and_follow_p():
    assert world.quota_counts(np.array([0.6, 0.3, 0.1]), 10).tolist() == [6, 3, 1]
    assert world.quota_counts(np.full(3, 1 / 3), 10).tolist() == [4, 3, 3]
    assert world.quota_counts(np.full(24, 1 / 24), 1500).sum() == 1500


def test_plugin_is_registered_and_every_task_builds(tmp_path):
    (plugin,) = fairfacebench_datasets()
    assert plugin.name == "synthfaces" and not plugin.needs_root
    assert plugin.task(None).name == "smiling/skin_tone"
    ds = plugin.load(None, 32, tmp_path, **SMALL)
    for task in plugin.tasks:
        data = make_task_data(ds, task)
        assert data.n_classes == 2
        assert np.bincount(data.test.a).min() > 0
    intersectional = make_task_data(ds, plugin.task("smiling/skin_tone+hair_length"))
    assert intersectional.group_names == (
        "light|short",
        "light|long",
        "medium|short",
        "medium|long",
        "dark|short",
        "dark|long",
    )
