"""Zero-shot classifiers from prompts (CLIP's prompt ensembling, Radford et al., ICML 2021, Sec. 3.1.4).

Each class is described by the phrases of its attribute (`Attribute.phrases`,
the dataset's one vocabulary); every phrase goes into every template of
`PROMPT_TEMPLATES`, the L2-normalised text embeddings of a class are averaged
and re-normalised, and an image's class scores are its cosine similarities to them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from fairfacebench.data import Attribute
from fairfacebench.vlm import VisionLanguageEncoder

# Prompt templates averaged by every zero-shot classifier (phrases name the whole subject, e.g. "a person smiling").
PROMPT_TEMPLATES = ("a photo of {}", "a close-up photo of {}", "{}")


def class_phrases(attribute: Attribute) -> list[tuple[str, ...]]:
    """The phrases describing each class of `attribute`, in class-code order.

    The attribute's own `phrases` when its dataset defines them; otherwise
    CelebA-style ``not_X`` / ``X`` classes become "a person without X" /
    "a person with X" and any other class name "a {class} person".
    """
    if attribute.phrases:
        return list(attribute.phrases)
    phrases = []
    for cls in attribute.classes:
        words = cls.replace("_", " ").lower()
        if cls.startswith("not_"):
            phrases.append((f"a person without {words[4:]}",))
        elif cls == attribute.name:
            phrases.append((f"a person with {words}",))
        else:
            phrases.append((f"a {words} person",))
    return phrases


def zero_shot_classifier(
    encoder: VisionLanguageEncoder, phrases: Sequence[Sequence[str]], templates: Sequence[str] = PROMPT_TEMPLATES
) -> np.ndarray:
    """Class embeddings (C, D): per class, the re-normalised mean of its template x phrase text embeddings."""
    rows = []
    for class_phrase_list in phrases:
        prompts = [t.format(p) for t in templates for p in class_phrase_list]
        mean = encoder.encode_text(prompts).mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows).astype(np.float32)


def zero_shot_probabilities(
    image_embeddings: np.ndarray, classifier: np.ndarray, logit_scale: float = 100.0
) -> np.ndarray:
    """softmax(logit_scale · cos(image, class)) over classes, (N, C): CLIP's zero-shot rule (Radford et al. 2021)."""
    logits = torch.from_numpy(image_embeddings @ classifier.T) * logit_scale
    return torch.softmax(logits.double(), dim=1).float().numpy()
