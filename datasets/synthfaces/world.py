"""synthfaces' world: options, the joint label distribution, the benchmark splits and the unlabeled pool."""

from __future__ import annotations

from typing import Any

import numpy as np

from fairfacebench.data import Attribute, DataError, Split, TaskSpec, UnlabeledPool
from fairfacebench.datasets.synthfaces.render import (
    OFFDOMAIN_KINDS,
    near_duplicates,
    render_faces,
    render_offdomain,
    sample_params,
)

# Bump whenever the renderer or sampling changes, so cached or recorded runs are not mixed up.
VERSION = 2  # 2: smile bend doubled, so the default budget learns the cue (v1 stayed near chance under group balancing)

# The world's one vocabulary: the mini-CLIP's captions and every prompt name attributes with these words.
SMILE_WORDS = (
    ("not smiling", "with a neutral expression", "with a straight face"),
    ("smiling", "with a smile", "grinning"),
)
GLASSES_WORDS = (("without glasses", "not wearing glasses"), ("wearing glasses", "with eyeglasses"))
SKIN_TONES = ("light", "medium", "dark")
HAIR_LENGTHS = ("short", "long")

ATTRIBUTES = {
    "smiling": Attribute(
        "smiling", ("no", "yes"), tuple(tuple(f"a person {w}" for w in words) for words in SMILE_WORDS)
    ),
    "eyeglasses": Attribute(
        "eyeglasses", ("no", "yes"), tuple(tuple(f"a person {w}" for w in words) for words in GLASSES_WORDS)
    ),
    "skin_tone": Attribute(
        "skin_tone", SKIN_TONES, tuple((f"a person with {t} skin", f"a {t}-skinned person") for t in SKIN_TONES)
    ),
    "hair_length": Attribute(
        "hair_length", HAIR_LENGTHS, tuple((f"a person with {h} hair", f"a {h}-haired person") for h in HAIR_LENGTHS)
    ),
}

# Axis order of the joint label distribution.
LABEL_ORDER = ("skin_tone", "hair_length", "smiling", "eyeglasses")

TASKS = [
    TaskSpec("smiling/skin_tone", "smiling", ("skin_tone",), "smiling vs not, fairness across three skin tones"),
    TaskSpec("eyeglasses/skin_tone", "eyeglasses", ("skin_tone",), "glasses vs none, fairness across three skin tones"),
    TaskSpec("smiling/hair_length", "smiling", ("hair_length",), "smiling vs not, fairness across short / long hair"),
    TaskSpec(
        "smiling/skin_tone+hair_length",
        "smiling",
        ("skin_tone", "hair_length"),
        "smiling vs not, fairness across the six skin tone x hair length groups",
    ),
]

DEFAULT_OPTIONS: dict[str, Any] = {
    "seed": 0,
    "n_train": 4000,
    "n_val": 1000,
    "n_test": 2000,
    # P(skin_tone) in train: dark skin is a 10% minority.
    "group_props": (0.6, 0.3, 0.1),
    # P(hair_length = long) in train.
    "long_hair_prop": 0.7,
    # P(smiling | skin_tone) in train before the hair shift below: smiling is rare among the minority.
    "smiling_rate": (0.65, 0.5, 0.3),
    # Added to P(smiling) for long hair, subtracted for short hair (train only).
    "smiling_shift_long_hair": 0.1,
    # P(eyeglasses | skin_tone) in train.
    "eyeglasses_rate": (0.4, 0.3, 0.2),
    # Amplitude and contrast of the target cues per skin tone, in every split.
    "cue_strength": (1.0, 0.7, 0.5),
    # Probability of flipping each target label per skin tone (train only).
    "label_noise": (0.0, 0.0, 0.0),
    # Balance val and test over all attribute cells (False: they follow the train distribution).
    "balanced_eval": True,
    # Unlabeled pool (`pool`): size and the shares of planted near-duplicates and non-faces.
    "n_pool": 3000,
    "pool_duplicate_frac": 0.10,
    "pool_offdomain_frac": 0.15,
}

# Seed-sequence streams: each split and each pool draws from its own stream of the same seed.
STREAMS = {"train": 1, "val": 2, "test": 3, "pool": 11, "captioned": 21}

# ---------------------------------------------------------------- options


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with `options`, validated; unknown names are an error."""
    unknown = sorted(set(options) - set(DEFAULT_OPTIONS))
    if unknown:
        raise DataError(f"synthfaces: unknown option(s) {unknown}; valid options are {sorted(DEFAULT_OPTIONS)}")
    opts = {**DEFAULT_OPTIONS, **options}
    n_skin = ATTRIBUTES["skin_tone"].n
    for key in ("group_props", "smiling_rate", "eyeglasses_rate", "cue_strength", "label_noise"):
        values = tuple(float(v) for v in opts[key])
        if len(values) != n_skin or not all(0.0 <= v <= 1.0 for v in values):
            raise DataError(
                f"synthfaces: option '{key}' must be {n_skin} numbers in [0, 1] (light, medium, dark), got {opts[key]}"
            )
        opts[key] = values
    if abs(sum(opts["group_props"]) - 1.0) > 1e-6:
        raise DataError(f"synthfaces: option 'group_props' must sum to 1, got {opts['group_props']}")
    for key in ("long_hair_prop", "pool_duplicate_frac", "pool_offdomain_frac"):
        if not 0.0 <= float(opts[key]) <= 1.0:
            raise DataError(f"synthfaces: option '{key}' must be in [0, 1], got {opts[key]}")
    if opts["pool_duplicate_frac"] > (1.0 - opts["pool_offdomain_frac"]) / 2:
        raise DataError("synthfaces: 'pool_duplicate_frac' may be at most half the face share of the pool")
    for key in ("seed", "n_train", "n_val", "n_test", "n_pool"):
        if int(opts[key]) < 0:
            raise DataError(f"synthfaces: option '{key}' must be a non-negative integer, got {opts[key]}")
        opts[key] = int(opts[key])
    return opts


# ---------------------------------------------------------------- labels


def joint_probabilities(opts: dict[str, Any], balanced: bool) -> np.ndarray:
    """P(skin_tone, hair_length, smiling, eyeglasses) as an array indexed in LABEL_ORDER."""
    shape = tuple(ATTRIBUTES[a].n for a in LABEL_ORDER)
    if balanced:
        return np.full(shape, 1.0 / np.prod(shape))
    p_skin = np.asarray(opts["group_props"])
    p_hair = np.array([1.0 - opts["long_hair_prop"], opts["long_hair_prop"]])
    shift = opts["smiling_shift_long_hair"] * np.array([-1.0, 1.0])
    p_smile = np.clip(np.asarray(opts["smiling_rate"])[:, None] + shift[None, :], 0.0, 1.0)
    p_glasses = np.asarray(opts["eyeglasses_rate"])
    smile = np.stack([1.0 - p_smile, p_smile], axis=-1)
    glasses = np.stack([1.0 - p_glasses, p_glasses], axis=-1)
    return p_skin[:, None, None, None] * p_hair[None, :, None, None] * smile[:, :, :, None] * glasses[:, None, None, :]


def quota_counts(p: np.ndarray, n: int) -> np.ndarray:
    """Integer cell counts summing to n that follow p (largest-remainder rounding)."""
    exact = p.ravel() / p.sum() * n
    counts = np.floor(exact).astype(np.int64)
    # Stable sort: ties go to the lower cell index, so the result is deterministic.
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts.reshape(p.shape)


def sample_labels(rng: np.random.Generator, n: int, joint: np.ndarray) -> dict[str, np.ndarray]:
    """n label rows whose cell counts are the quotas of `joint`, in random order."""
    counts = quota_counts(joint, n)
    cells = rng.permutation(np.repeat(np.arange(counts.size), counts.ravel()))
    codes = np.unravel_index(cells, joint.shape)
    return {name: c.astype(np.int64) for name, c in zip(LABEL_ORDER, codes)}


def flip_labels(
    rng: np.random.Generator, labels: dict[str, np.ndarray], noise: tuple[float, ...]
) -> dict[str, np.ndarray]:
    """Copy of labels with each binary target flipped with the skin tone's noise rate."""
    rate = np.asarray(noise)[labels["skin_tone"]]
    noisy = dict(labels)
    for target in ("smiling", "eyeglasses"):
        noisy[target] = np.where(rng.random(len(rate)) < rate, 1 - labels[target], labels[target])
    return noisy


def make_pool(opts: dict[str, Any], size: int) -> UnlabeledPool:
    """Unlabeled faces from the training distribution plus planted near-duplicates and non-faces."""
    rng = np.random.default_rng([opts["seed"], STREAMS["pool"]])
    n = opts["n_pool"]
    n_off = round(n * opts["pool_offdomain_frac"])
    n_dup = round(n * opts["pool_duplicate_frac"])
    n_orig = n - n_off - n_dup

    labels = sample_labels(rng, n_orig, joint_probabilities(opts, balanced=False))
    params = sample_params(rng, labels, opts["cue_strength"])
    originals = render_faces(params, size, int(rng.integers(2**63)))
    sources = rng.choice(n_orig, n_dup, replace=False)
    duplicates = near_duplicates(rng, {k: v[sources] for k, v in params.items()}, size)
    kinds = rng.integers(0, len(OFFDOMAIN_KINDS), n_off)
    offdomain = render_offdomain(rng, kinds, size)

    # Shuffle originals, duplicates and non-faces together; map sources to shuffled positions.
    order = rng.permutation(n)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    images = np.concatenate([originals, duplicates, offdomain])[order]
    duplicate_of = np.concatenate([np.full(n_orig, -1), position[sources], np.full(n_off, -1)])[order]
    is_face = np.concatenate([np.ones(n_orig + n_dup, bool), np.zeros(n_off, bool)])[order]
    hidden: dict[str, np.ndarray] = {"is_face": is_face, "duplicate_of": duplicate_of}
    for name in LABEL_ORDER:
        hidden[name] = np.concatenate([labels[name], labels[name][sources], np.full(n_off, -1)])[order]
    report = {
        "n": n,
        "faces": n_orig + n_dup,
        "originals": n_orig,
        "near_duplicates": n_dup,
        "off_domain": n_off,
        "off_domain_kinds": {k: int((kinds == i).sum()) for i, k in enumerate(OFFDOMAIN_KINDS)},
        "seed": opts["seed"],
        "size": size,
        "version": VERSION,
    }
    ids = np.array([f"synth-pool-{i:06d}" for i in range(n)])
    return UnlabeledPool("synthfaces-pool", images, ids, hidden=hidden, report=report)


# ---------------------------------------------------------------- splits and the plugin


def make_split(opts: dict[str, Any], split: str, size: int) -> tuple[Split, dict[str, np.ndarray]]:
    """One split and its true (noise-free) labels; only train carries the bias and label noise."""
    rng = np.random.default_rng([opts["seed"], STREAMS[split]])
    n = opts[f"n_{split}"]
    balanced = split != "train" and opts["balanced_eval"]
    labels = sample_labels(rng, n, joint_probabilities(opts, balanced))
    images = render_faces(sample_params(rng, labels, opts["cue_strength"]), size, int(rng.integers(2**63)))
    recorded = flip_labels(rng, labels, opts["label_noise"]) if split == "train" else labels
    ids = np.array([f"synth-{split}-{i:06d}" for i in range(n)])
    return Split(images, recorded, ids), labels


def _group_means(values: np.ndarray, group: np.ndarray, k: int) -> list[float]:
    """Mean of `values` within each of k groups, rounded (NaN for an empty group)."""
    return [round(float(values[group == g].mean()), 4) if (group == g).any() else float("nan") for g in range(k)]


def realised_bias(labels: dict[str, np.ndarray]) -> dict[str, Any]:
    """Group proportions and per-group target rates actually present in a split."""
    skin, hair = labels["skin_tone"], labels["hair_length"]
    everyone = np.zeros_like(skin)
    return {
        "n": len(skin),
        "skin_tone_props": [_group_means(skin == g, everyone, 1)[0] for g in range(3)],
        "long_hair_prop": _group_means(hair, everyone, 1)[0],
        "p_smiling_given_skin_tone": _group_means(labels["smiling"], skin, 3),
        "p_smiling_given_hair_length": _group_means(labels["smiling"], hair, 2),
        "p_eyeglasses_given_skin_tone": _group_means(labels["eyeglasses"], skin, 3),
    }
