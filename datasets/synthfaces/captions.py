"""Captioned synthetic faces for the embedded mini-CLIP, phrased with the world's one vocabulary."""

from __future__ import annotations

import re

import numpy as np

from fairfacebench.data import UnlabeledPool
from fairfacebench.datasets.synthfaces.render import OFFDOMAIN_KINDS, render_faces, render_offdomain, sample_params
from fairfacebench.datasets.synthfaces.world import (
    ATTRIBUTES,
    DEFAULT_OPTIONS,
    GLASSES_WORDS,
    LABEL_ORDER,
    SMILE_WORDS,
    STREAMS,
    VERSION,
    joint_probabilities,
    sample_labels,
)

CAPTION_TEMPLATES = (
    "a photo of a person {smile}, with {skin} skin and {hair} hair, {glasses}",
    "a {skin}-skinned person {smile}, {glasses}",
    "a close-up photo of a person with {hair} hair and {skin} skin {smile}",
    "a photo of a person with {skin} skin {glasses}, {smile}",
    "a face with {skin} skin, {hair} hair, {glasses}, {smile}",
    "a {hair}-haired person {smile}",
)
OFFDOMAIN_CAPTIONS = {
    "stripes": ("a photo of stripes", "a striped pattern"),
    "checkerboard": ("a photo of a checkerboard", "a checkered pattern"),
    "shapes": ("a picture of colourful shapes", "random circles and squares"),
    "texture": ("a photo of a wavy texture", "an abstract swirling texture"),
    "noise": ("a picture of coloured noise", "blocky random pixels"),
}


def caption(rng: np.random.Generator, skin: int, hair: int, smiling: int, eyeglasses: int) -> str:
    """One randomly phrased caption describing a face's attributes in words."""
    words = {
        "skin": ATTRIBUTES["skin_tone"].classes[skin],
        "hair": ATTRIBUTES["hair_length"].classes[hair],
        "smile": SMILE_WORDS[smiling][rng.integers(len(SMILE_WORDS[smiling]))],
        "glasses": GLASSES_WORDS[eyeglasses][rng.integers(len(GLASSES_WORDS[eyeglasses]))],
    }
    return CAPTION_TEMPLATES[rng.integers(len(CAPTION_TEMPLATES))].format(**words)


def captioned_pool(n: int, size: int = 64, seed: int = 0, offdomain_frac: float = 0.1) -> UnlabeledPool:
    """Captioned faces with balanced random attributes, plus captioned non-faces, for a tiny CLIP.

    Drawn from its own seed stream, disjoint from the benchmark splits and
    from `make_pool`; the targets' cues have the default per-group strength.
    """
    rng = np.random.default_rng([seed, STREAMS["captioned"]])
    n_off = round(n * offdomain_frac)
    n_face = n - n_off
    labels = sample_labels(rng, n_face, joint_probabilities(DEFAULT_OPTIONS, balanced=True))
    faces = render_faces(sample_params(rng, labels, DEFAULT_OPTIONS["cue_strength"]), size, int(rng.integers(2**63)))
    kinds = rng.integers(0, len(OFFDOMAIN_KINDS), n_off)
    captions = [caption(rng, *(int(labels[a][i]) for a in LABEL_ORDER)) for i in range(n_face)]
    captions += [str(rng.choice(OFFDOMAIN_CAPTIONS[OFFDOMAIN_KINDS[k]])) for k in kinds]

    order = rng.permutation(n)
    images = np.concatenate([faces, render_offdomain(rng, kinds, size)])[order]
    hidden = {"is_face": np.concatenate([np.ones(n_face, bool), np.zeros(n_off, bool)])[order]}
    for name in LABEL_ORDER:
        hidden[name] = np.concatenate([labels[name], np.full(n_off, -1)])[order]
    report = {"n": n, "faces": n_face, "off_domain": n_off, "seed": seed, "size": size, "version": VERSION}
    ids = np.array([f"synth-caption-{i:06d}" for i in range(n)])
    return UnlabeledPool(
        "synthfaces-captioned", images, ids, hidden=hidden, captions=[captions[i] for i in order], report=report
    )


def swap_phrase(caption: str, rng: np.random.Generator) -> str:
    """A NegCLIP hard negative: the caption with its expression or glasses phrase replaced by an opposite one."""
    found = []
    for words in (SMILE_WORDS, GLASSES_WORDS):
        phrases = sorted(((p, k) for k, options in enumerate(words) for p in options), key=lambda t: -len(t[0]))
        match = re.search(r"\b(" + "|".join(re.escape(p) for p, _ in phrases) + r")\b", caption)
        if match:
            cls = dict(phrases)[match.group(1)]
            found.append((match, [p for k, options in enumerate(words) if k != cls for p in options]))
    if not found:
        return caption
    match, opposite = found[rng.integers(len(found))]
    return caption[: match.start()] + opposite[rng.integers(len(opposite))] + caption[match.end() :]
