"""CLIP clustering + re-sampling (Zhang & Chunara, arXiv 2403.10624 v1/v2): no sensitive labels for training.

1. features: train and val images embedded by the VLM and compared with the
   dataset's phrases for every sensitive-attribute value (standardised per prompt);
2. clusters: k-means on the training features, val images to the nearest centroid; k chosen on validation;
3. first model: ERM for `first_frac` of the budget; clusters whose validation
   accuracy is below the overall one are under-performing;
4. final model: the rest of the budget with those clusters up-sampled and augmented once more.

Without a VLM the named variant `backbone-features` clusters ImageNet features
of the face crop; with an image-only encoder (no text tower, e.g. dlib's face
descriptor) the variant `image-embeddings` clusters its image embeddings.  The
clusters' agreement with the true groups (AMI) is computed by the harness,
which holds the sensitive labels.  Details and choices: docs/METHODS.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from fairfacebench.context import ExtraAugment
from fairfacebench.data import Attribute
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, uniform
from fairfacebench.methods.common import erm_loss, l2_normalize
from fairfacebench.settings import Augment
from fairfacebench.training import Predictor, predict_features, predict_scores
from fairfacebench.vlm import VisionLanguageEncoder
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

VARIANT_BACKBONE = "backbone-features"
VARIANT_IMAGE = "image-embeddings"
# Numbers of clusters tried when `n_clusters` is 0, and the smallest validation cluster that may decide.
K_CANDIDATES = (2, 3, 4, 6, 8)
MIN_VAL_PER_CLUSTER = 20


def attribute_prompts(vlm: VisionLanguageEncoder, sensitive: tuple[Attribute, ...]) -> tuple[np.ndarray, list[str]]:
    """One text embedding per value of each sensitive attribute (its phrases, prompt-ensembled) and the value names."""
    text = np.concatenate([zero_shot_classifier(vlm, class_phrases(attr)) for attr in sensitive])
    return text, [f"{attr.name}={c}" for attr in sensitive for c in attr.classes]


def prompt_similarities(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """Cosine similarity of every image to every prompt (image vs attribute-specified text embeddings)."""
    return image_emb @ text_emb.T


def standardiser(train_features: np.ndarray):
    """Per-column z-scoring fitted on train: CLIP similarities differ by prompt in offset and spread."""
    mean, std = train_features.mean(0), train_features.std(0) + 1e-8
    return lambda f: (f - mean) / std


def centre_crop(images: np.ndarray, share: float) -> np.ndarray:
    """The central ``share`` of each uint8 image's side, resized back to the full size (bilinear)."""
    n, h, w, _ = images.shape
    ch, cw = max(1, round(h * share)), max(1, round(w * share))
    top, left = (h - ch) // 2, (w - cw) // 2
    x = torch.from_numpy(np.ascontiguousarray(images[:, top : top + ch, left : left + cw])).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def fit_clusters(train_features: np.ndarray, k: int, seed: int) -> KMeans:
    """k-means on the clustering features, the inferred groups; ten restarts, best inertia kept."""
    from sklearn.cluster import KMeans  # imported here: scikit-learn adds 1.4 s to every worker's start

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(train_features.astype(np.float64))


def cluster_accuracy(clusters: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Accuracy of the first model per cluster; NaN for clusters without validation samples."""
    total = np.bincount(clusters, minlength=k)
    hits = np.bincount(clusters, weights=correct.astype(np.float64), minlength=k)
    return np.divide(hits, total, out=np.full(k, np.nan), where=total > 0)


def accuracy_gap(clusters: np.ndarray, correct: np.ndarray, k: int, min_size: int = MIN_VAL_PER_CLUSTER) -> float:
    """Overall validation accuracy minus that of the worst cluster with at least `min_size` validation images."""
    sizes = np.bincount(clusters, minlength=k)
    acc = cluster_accuracy(clusters, correct, k)
    big = sizes >= min_size
    return float(correct.mean() - acc[big].min()) if big.any() else 0.0


def choose_k(gaps: dict[int, float]) -> int:
    """The number of clusters whose partition exposes the largest accuracy gap; the fewest clusters on a tie."""
    return max(sorted(gaps), key=lambda k: (round(gaps[k], 6), -k))


def underperforming(acc: np.ndarray, overall: float) -> np.ndarray:
    """Clusters whose validation accuracy is below the overall validation accuracy (NaN counts as not)."""
    return np.nan_to_num(acc, nan=np.inf) < overall


def resampling_probabilities(
    clusters: np.ndarray, weak: np.ndarray, upsample: float, y: np.ndarray | None = None
) -> np.ndarray:
    """Per-sample draw probabilities ∝ ``upsample`` in under-performing clusters, ∝ 1 elsewhere.

    With ``y``, each under-performing cluster keeps its total mass but its
    classes are drawn equally often, so up-sampling a cluster does not also
    up-sample its majority class.
    """
    w = np.where(weak[clusters], float(upsample), 1.0)
    if y is not None:
        n_classes = int(y.max()) + 1
        cell = clusters * n_classes + y
        cell_n = np.bincount(cell, minlength=(int(clusters.max()) + 1) * n_classes).reshape(-1, n_classes)
        present = (cell_n > 0).sum(1)
        balance = cell_n.sum(1)[clusters] / (present[clusters] * cell_n[clusters, y])
        w = np.where(weak[clusters], w * balance, w)
    return w / w.sum()


class ClipCluster(Method):
    name = "clip-cluster"
    version = 2  # 2: the number of clusters chosen on validation
    description = (
        "Clusters of VLM image-prompt similarities as inferred groups; re-sample and augment the clusters "
        "a first model does worst on (variants: backbone-features without a VLM, image-embeddings with an "
        "image-only encoder)"
    )
    citation = (
        "Zhang & Chunara, Leveraging CLIP for Inferring Sensitive Information and Improving Model Fairness, "
        "arXiv 2403.10624v1, 2024"
    )
    labels = LabelUse(target="train+val")
    needs_vlm = True
    space = {
        "n_clusters": Hparam(0, choice([0, 4, 8]), f"k-means clusters; 0 = chosen on validation among {K_CANDIDATES}"),
        "first_frac": Hparam(0.3, uniform(0.2, 0.5), "share of the budget for the first (ERM) model"),
        "final_init": Hparam(
            "first", choice(["first", "fresh"]), "final model continues the first model, or starts afresh"
        ),
        "upsample": Hparam(
            4.0, choice([2.0, 4.0, 8.0]), "draw-probability factor of samples in under-performing clusters"
        ),
        "balance_classes": Hparam(
            False, choice([False, True]), "draw the classes of up-sampled clusters equally often"
        ),
        "augment_strength": Hparam(0.3, uniform(0.1, 0.5), "colour-jitter strength of the extra augmentation"),
        "pca_dim": Hparam(
            16, choice([8, 16, 32]), "PCA dimension of backbone features (backbone-features variant only)"
        ),
        "face_crop": Hparam(
            0.5, choice([0.4, 0.5, 0.6]), "central share of the image side embedded (backbone-features variant only)"
        ),
    }

    resample = True  # up-sample the under-performing clusters (the ablation clip-cluster:no-resampling turns it off)

    def fit(self, ctx):
        hp = ctx.hparams
        first = ctx.new_classifier()
        candidates = (hp["n_clusters"],) if hp["n_clusters"] else K_CANDIDATES
        with ctx.stage("clusters"):
            train_f, val_f = clustering_features(ctx, first, hp["pca_dim"], hp["face_crop"])
            fits = {k: fit_clusters(train_f, k, ctx.seed) for k in candidates}

        first_steps = max(1, int(round(hp["first_frac"] * ctx.budget.remaining)))
        ctx.train_classifier(first, first_steps, erm_loss, stage="first")
        with ctx.stage("cluster-accuracy"):
            correct = predict_scores(first, ctx.val.images, ctx.device).argmax(1) == ctx.val.y
        val_parts = {k: km.predict(val_f.astype(np.float64)) for k, km in fits.items()}
        gaps = {k: accuracy_gap(val_parts[k], correct, k) for k in candidates}
        k = choose_k(gaps)
        train_c, val_c = fits[k].labels_, val_parts[k]
        acc = cluster_accuracy(val_c, correct, k)
        weak = underperforming(acc, float(correct.mean()))
        upsample = hp["upsample"] if self.resample else 1.0
        balance = hp["balance_classes"] and self.resample  # class balancing is re-sampling too: not in the ablation
        probs = resampling_probabilities(train_c, weak, upsample, ctx.train.y if balance else None)
        ctx.log.stage(
            "clusters",
            k=k,
            k_rule="given" if hp["n_clusters"] else "largest validation accuracy gap exposed (overall − worst cluster)",
            gap_per_k={str(c): round(g, 4) for c, g in gaps.items()},
            upsample=upsample,
            train_sizes=np.bincount(train_c, minlength=k).tolist(),
            val_sizes=np.bincount(val_c, minlength=k).tolist(),
            val_acc=np.round(acc, 4).tolist(),
            overall_val_acc=round(float(correct.mean()), 4),
            underperforming=np.flatnonzero(weak).tolist(),
        )
        model = first if hp["final_init"] == "first" else ctx.new_classifier()
        ctx.log.record_evidence("clusters", train_partition=train_c, draw_probabilities=probs)
        extra = ExtraAugment(
            weak[train_c], Augment(flip=False, crop=max(1, ctx.resolution // 16), jitter=hp["augment_strength"])
        )
        ctx.train_classifier(
            model,
            ctx.budget.remaining,
            erm_loss,
            sampler=ctx.sampler(weights=probs, stream="resampled"),
            stage="final",
            extra=extra,
        )
        return Predictor(model, ctx.device)


def clustering_features(ctx, model, pca_dim: int, face_crop: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and val clustering features: VLM prompt similarities, or a named variant's image features."""
    vlm = ctx.vlm
    if vlm is None:
        ctx.log.variant = VARIANT_BACKBONE
        train = l2_normalize(predict_features(model, centre_crop(ctx.train.images, face_crop), ctx.device))
        val = l2_normalize(predict_features(model, centre_crop(ctx.val.images, face_crop), ctx.device))
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(pca_dim, *train.shape), random_state=ctx.seed).fit(train)
        ctx.log.stage(
            "features",
            source=VARIANT_BACKBONE,
            face_crop=face_crop,
            pca_dim=int(pca.n_components_),
            explained_variance=round(float(pca.explained_variance_ratio_.sum()), 4),
        )
        return pca.transform(train), pca.transform(val)
    if not (vlm.info or {}).get("text_tower", True):
        # No prompts to compare with: the encoder's own image embeddings are the clustering features.
        ctx.log.variant = VARIANT_IMAGE
        train, val = vlm.encode_images(ctx.train.images), vlm.encode_images(ctx.val.images)
        ctx.log.stage("features", source=f"{VARIANT_IMAGE}:{vlm.name}", dim=int(train.shape[1]))
        return train, val
    text, prompts = attribute_prompts(vlm, ctx.sensitive_attributes)
    train = prompt_similarities(vlm.encode_images(ctx.train.images), text)
    val = prompt_similarities(vlm.encode_images(ctx.val.images), text)
    ctx.log.stage("features", source=f"vlm:{vlm.name}", prompts=prompts)
    scale = standardiser(train)
    return scale(train), scale(val)


class ClipClusterNoResampling(ClipCluster):
    """Ablation: the same clusters and extra augmentation, but every training image drawn equally often."""

    name = "clip-cluster:no-resampling"
    ablation_of = "clip-cluster"
    description = "clip-cluster without up-sampling the under-performing clusters (ablation)"
    resample = False


@hookimpl
def fairfacebench_methods():
    return [ClipCluster, ClipClusterNoResampling]
