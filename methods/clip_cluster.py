"""CLIP clustering + re-sampling (Zhang & Chunara, arXiv 2403.10624 v1/v2) — no sensitive labels for training.

1. features: every train and val image is embedded by the VLM and compared
   with prompts naming the sensitive-attribute values of the task
   (:func:`attribute_prompts`); the similarity vectors, standardised per
   prompt over the training set, are the clustering features;
2. clusters: k-means (scikit-learn, ``n_init=10``) on the training features,
   k = ``n_clusters`` or, by default, the number of sensitive groups named by
   the task; validation images go to their nearest centroid;
3. first model: ERM for ``first_frac`` of the budget; its per-cluster
   validation accuracy marks the under-performing clusters (accuracy below
   the overall validation accuracy);
4. final model: trained for the rest of the budget with batches drawn with
   probability ∝ ``upsample`` for samples of under-performing clusters (∝ 1
   otherwise); those samples get a second, stronger augmentation
   (translation of resolution/16 px, colour jitter ``augment_strength``) on
   top of the comparison's.  ``balance_classes=True`` (not in the paper)
   draws the classes of an up-sampled cluster equally often: a cluster
   whose class mix is skewed would otherwise teach its majority class more
   strongly.  By default the final model continues from the first model
   (``final_init="first"``): under one step budget a fresh model
   (``"fresh"``) would get only 1 − ``first_frac`` of the steps ERM gets.

Prompts (documented choice): one per value of every sensitive attribute,
"a photo of a person with {value} skin" for ``skin_tone``, "... {value}
hair" for ``hair_length``, "a photo of a {value} person" otherwise (UTKFace
race and gender).  The values come from the task's group names — the
attribute vocabulary the paper's prompts name, not anyone's label.

Without a VLM (``ctx.vlm is None``) the named variant ``backbone-features``
clusters ImageNet backbone features (the first model before training,
L2-normalised, PCA to ``pca_dim``) instead of prompt similarities.  They
are taken of the central ``face_crop`` share of each image, resized back to
full resolution: the datasets hold aligned face crops, and on the whole
image the features are dominated by background and clothing (on synthfaces
the AMI with skin tone is about 0.01 on whole images, 0.1–0.3 on the
central half).

Reporting: with ``report_ami`` (default), after the final model is trained
the adjusted mutual information between the train clusters and the true
sensitive groups is logged (:func:`cluster_agreement`).  That reads the
training sensitive labels, so the method then declares them, with the note
that they are read for the report only; ``report_ami=False`` reads none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from fairfacebench.context import Batch, cross_entropy
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, uniform
from fairfacebench.training import Augment, Predictor, augment_batch, mix_batch, normalize, predict_features, predict_scores, to_tensor

if TYPE_CHECKING:
    from sklearn.cluster import KMeans

ATTRIBUTE_TEMPLATES = {
    "skin_tone": "a photo of a person with {} skin",
    "hair_length": "a photo of a person with {} hair",
}
GENERIC_TEMPLATE = "a photo of a {} person"
VARIANT_BACKBONE = "backbone-features"


def attribute_prompts(sensitive: tuple[str, ...], group_names: tuple[str, ...]) -> list[str]:
    """One prompt per value of each sensitive attribute, values read from the intersectional group names 'v1|v2'."""
    prompts = []
    for k, attr in enumerate(sensitive):
        values = dict.fromkeys(name.split("|")[k] for name in group_names)
        template = ATTRIBUTE_TEMPLATES.get(attr, GENERIC_TEMPLATE)
        prompts += [template.format(v.replace("_", " ")) for v in values]
    return prompts


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


def l2_normalize(features: np.ndarray) -> np.ndarray:
    return features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-8)


def fit_clusters(train_features: np.ndarray, k: int, seed: int) -> KMeans:
    """k-means on the clustering features, the inferred groups; ten restarts, best inertia kept."""
    from sklearn.cluster import KMeans  # imported here: scikit-learn adds 1.4 s to every worker's start

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit(train_features.astype(np.float64))


def cluster_accuracy(clusters: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    """Accuracy of the first model per cluster; NaN for clusters without validation samples."""
    total = np.bincount(clusters, minlength=k)
    hits = np.bincount(clusters, weights=correct.astype(np.float64), minlength=k)
    return np.divide(hits, total, out=np.full(k, np.nan), where=total > 0)


def underperforming(acc: np.ndarray, overall: float) -> np.ndarray:
    """Clusters whose validation accuracy is below the overall validation accuracy (NaN counts as not)."""
    return np.nan_to_num(acc, nan=np.inf) < overall


def resampling_probabilities(clusters: np.ndarray, weak: np.ndarray, upsample: float, y: np.ndarray | None = None) -> np.ndarray:
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


def cluster_agreement(clusters: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Adjusted mutual information (Vinh et al., JMLR 2010) between inferred clusters and true sensitive groups."""
    from sklearn.metrics import adjusted_mutual_info_score

    return {"ami": round(float(adjusted_mutual_info_score(groups, clusters)), 4)}


class ClipCluster(Method):
    name = "clip-cluster"
    description = ("Clusters of VLM image-prompt similarities as inferred groups; re-sample and augment the clusters "
                   "a first model does worst on (variant backbone-features without a VLM)")
    citation = "Zhang & Chunara, Leveraging CLIP for Inferring Sensitive Information and Improving Model Fairness, arXiv 2403.10624v1, 2024"
    labels = LabelUse(target="train+val", sensitive="train", note="a read after training, only for the cluster AMI report")
    needs_vlm = True
    hparams = {
        "n_clusters": Hparam(0, choice([0, 4, 8]), "number of k-means clusters; 0 = number of sensitive groups of the task"),
        "first_frac": Hparam(0.3, uniform(0.2, 0.5), "share of the budget for the first (ERM) model"),
        "final_init": Hparam("first", choice(["first", "fresh"]), "final model continues the first model, or starts afresh"),
        "upsample": Hparam(4.0, choice([2.0, 4.0, 8.0]), "draw-probability factor of samples in under-performing clusters"),
        "balance_classes": Hparam(False, choice([False, True]), "draw the classes of up-sampled clusters equally often"),
        "augment_strength": Hparam(0.3, uniform(0.1, 0.5), "colour-jitter strength of the extra augmentation"),
        "pca_dim": Hparam(16, choice([8, 16, 32]), "PCA dimension of backbone features (backbone-features variant only)"),
        "face_crop": Hparam(0.5, choice([0.4, 0.5, 0.6]), "central share of the image side embedded (backbone-features variant only)"),
        "report_ami": Hparam(True, choice([True]), "log the AMI of clusters vs true train groups (reads a:train after training)"),
    }

    @classmethod
    def label_use(cls, hparams):
        return cls.labels if hparams.get("report_ami", True) else LabelUse(target="train+val")

    def fit(self, ctx):
        hp = ctx.hparams
        k = hp["n_clusters"] or ctx.n_groups
        first = ctx.new_classifier()
        train_f, val_f = clustering_features(ctx, first, hp["pca_dim"], hp["face_crop"])
        kmeans = fit_clusters(train_f, k, ctx.seed)
        train_c, val_c = kmeans.labels_, kmeans.predict(val_f.astype(np.float64))

        first_steps = max(1, int(round(hp["first_frac"] * ctx.budget.remaining)))
        ctx.train_classifier(first, first_steps, erm_loss, stage="first")
        correct = predict_scores(first, ctx.val.images, ctx.device).argmax(1) == ctx.val.y
        acc = cluster_accuracy(val_c, correct, k)
        weak = underperforming(acc, float(correct.mean()))
        probs = resampling_probabilities(train_c, weak, hp["upsample"], ctx.train.y if hp["balance_classes"] else None)
        ctx.log.stage("clusters", k=k, train_sizes=np.bincount(train_c, minlength=k).tolist(),
                      val_sizes=np.bincount(val_c, minlength=k).tolist(), val_acc=np.round(acc, 4).tolist(),
                      overall_val_acc=round(float(correct.mean()), 4), underperforming=np.flatnonzero(weak).tolist())
        model = first if hp["final_init"] == "first" else ctx.new_classifier()
        extra = Augment(flip=False, crop=max(1, ctx.budget.budget.resolution // 16), jitter=hp["augment_strength"])
        train_resampled(ctx, model, ctx.sampler(weights=probs, stream="resampled"), weak[train_c], extra)
        if hp["report_ami"]:
            ctx.log.stage("clusters", **cluster_agreement(train_c, ctx.train.a))
        return Predictor(model, ctx.device)


def erm_loss(model, batch):
    """Mean cross-entropy, the loss of both models."""
    return cross_entropy(model(batch.x), batch).mean()


def clustering_features(ctx, model, pca_dim: int, face_crop: float) -> tuple[np.ndarray, np.ndarray]:
    """Train and val clustering features: VLM prompt similarities, or the named backbone-feature variant."""
    vlm = ctx.vlm
    if vlm is None:
        ctx.log.variant = VARIANT_BACKBONE
        train = l2_normalize(predict_features(model, centre_crop(ctx.train.images, face_crop), ctx.device))
        val = l2_normalize(predict_features(model, centre_crop(ctx.val.images, face_crop), ctx.device))
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(pca_dim, *train.shape), random_state=ctx.seed).fit(train)
        ctx.log.stage("features", source=VARIANT_BACKBONE, face_crop=face_crop, pca_dim=int(pca.n_components_),
                      explained_variance=round(float(pca.explained_variance_ratio_.sum()), 4))
        return pca.transform(train), pca.transform(val)
    prompts = attribute_prompts(tuple(ctx.task.sensitive), tuple(ctx.group_names))
    text = vlm.encode_text(prompts)
    train = prompt_similarities(vlm.encode_images(ctx.train.images), text)
    val = prompt_similarities(vlm.encode_images(ctx.val.images), text)
    ctx.log.stage("features", source=f"vlm:{vlm.name}", prompts=prompts)
    scale = standardiser(train)
    return scale(train), scale(val)


def train_resampled(ctx, model, sampler, weak_rows: np.ndarray, extra: Augment) -> list[float]:
    """The final model: cluster-resampled batches, rows of under-performing clusters augmented twice."""
    gen, rng = ctx.generator("augment/final"), ctx.rng("mix/final")
    images, y = ctx.train.images, ctx.train.y
    model.train()

    def step(_):
        index = next(sampler)
        x = augment_batch(to_tensor(images[index], ctx.device), ctx.augment, gen)
        rows = torch.as_tensor(weak_rows[index], device=ctx.device)
        if bool(rows.any()):
            x[rows] = augment_batch(x[rows], extra, gen)
        perm, lam = None, 1.0
        if ctx.augment.mix != "none":
            x, perm, lam = mix_batch(x, ctx.augment, gen, rng)
        return erm_loss(model, Batch(normalize(x), index, torch.as_tensor(y[index], device=ctx.device), ctx.train, perm, lam))

    return ctx.optimize(model.parameters(), ctx.budget.remaining, step, lr=ctx.hparams["lr"],
                        weight_decay=ctx.hparams["weight_decay"], stage="final")


@hookimpl
def fairfacebench_methods():
    return [ClipCluster]
