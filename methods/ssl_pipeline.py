"""ssl-pipeline: the self-supervised pipeline for fair facial attribute classification (seed 000).

Ramachandran & Rattani, arXiv 2407.10104.  Six stages, one function each,
each logging its numbers: (1) embed the pool and the (unlabeled) training
images with the VLM; (2) faiss de-duplication; (3) faiss k-NN retrieval of
the pool images nearest to the target domain, balanced over groups inferred
without labels; (4) zero-shot pseudo-labels with a confidence filter;
(5) SupCon on the pseudo-labels; (6) a head with Meta-Weight-Net sample
weights, meta loss on a small labelled meta set of validation images.
Without a VLM it runs only as the named variant "prototype-pseudo-labels".
Labels used per stage and every choice the paper leaves open: docs/METHODS.md.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from tqdm import tqdm

from fairfacebench.data import Attribute
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.common import l2_normalize, projection_head, views
from fairfacebench.methods.curation import deduplicate, domain_similarity, in_domain_floor, select_nearest, thumbnails
from fairfacebench.methods.losses import supcon_loss
from fairfacebench.training import BatchSampler, Classifier, Predictor, predict_features
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier, zero_shot_probabilities

VARIANT_NO_VLM = "prototype-pseudo-labels"
SHARD = 2048  # images per embedding shard
# Initial inverse temperature of the cosine head: a calibrated, not over-confident, start.  From an
# over-confident head, noisy samples "help" the meta loss by shrinking the logits and get up-weighted.
HEAD_SCALE = 3.0


class SSLPipeline(Method):
    name = "ssl-pipeline"
    description = (
        "Curated unlabeled pool (VLM embed, faiss dedup + retrieval), zero-shot pseudo-labels, SupCon, "
        "Meta-Weight-Net head"
    )
    citation = (
        "Ramachandran & Rattani, A Self-Supervised Learning Pipeline for Demographically Fair Facial Attribute "
        "Classification, arXiv 2407.10104"
    )
    labels = LabelUse(
        target="val",
        sensitive="val",
        note="stages 1-5: none (pseudo-labels); stage 6 meta set: y,a of a few val images per cell",
    )
    needs_vlm = True
    needs_pool = True
    space = {
        "dedup_space": Hparam(
            "thumbnail",
            choice(["thumbnail", "vlm"]),
            "where near-duplicates are searched: image thumbnails or VLM embeddings",
        ),
        "dedup_threshold": Hparam(
            0.97, uniform(0.95, 0.99), "cosine similarity above which two pool images are near-duplicates"
        ),
        "retrieve_fraction": Hparam(
            0.6, uniform(0.4, 0.8), "at most this share of the de-duplicated pool is kept by retrieval"
        ),
        "domain_quantile": Hparam(
            0.05, uniform(0.01, 0.2), "in-domain floor: this quantile of the training images' own retrieval scores"
        ),
        "retrieve_k": Hparam(
            10, choice([5, 10, 20]), "target-domain neighbours averaged into a pool image's retrieval score"
        ),
        "balance_groups": Hparam(True, choice([True, False]), "retrieve an equal share per inferred demographic group"),
        "confident_fraction": Hparam(0.6, uniform(0.4, 0.9), "most confident share of each pseudo-class kept"),
        "supcon_fraction": Hparam(0.7, uniform(0.5, 0.85), "share of the step budget spent on SupCon (the rest: head)"),
        "temperature": Hparam(0.1, log_uniform(0.05, 0.3), "SupCon temperature τ"),
        "head_lr": Hparam(1e-2, log_uniform(3e-3, 3e-2), "learning rate of the head and the Meta-Weight-Net"),
        "meta_inner_lr": Hparam(1.0, log_uniform(0.1, 3.0), "step size of the virtual SGD step of the head"),
        "meta_per_cell": Hparam(8, choice([4, 8, 16]), "validation images per (class, group) cell in the meta set"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        vlm = ctx.vlm
        if vlm is None:
            ctx.log.variant = VARIANT_NO_VLM
        model = ctx.new_classifier()
        pool_images, pool_source = curation_pool(ctx)
        has_pool = ctx.pool is not None
        meta = balanced_meta_set(ctx.val.y, ctx.val.a, hp["meta_per_cell"], ctx.rng("meta-set"))
        meta_y = ctx.val.y[meta]
        encode = (
            vlm.encode_images
            if vlm is not None
            else lambda imgs: l2_normalize(predict_features(model, imgs, ctx.device))
        )

        # 1. embed
        with ctx.stage("1-embed"):
            pool_emb = embed_images(encode, pool_images, ctx.progress, "1-embed pool")
            train_emb = embed_images(encode, ctx.train.images, ctx.progress, "1-embed train") if has_pool else pool_emb
        ctx.log.stage(
            "1-embed",
            pool_source=pool_source,
            pool=len(pool_images),
            train_images=len(train_emb),
            encoder=vlm.name if vlm is not None else f"backbone:{ctx.backbone_name} (no VLM)",
            dim=int(pool_emb.shape[1]),
        )

        # 2. de-duplicate
        dedup = deduplicate(
            thumbnails(pool_images) if hp["dedup_space"] == "thumbnail" else pool_emb, hp["dedup_threshold"]
        )
        ctx.log.stage(
            "2-dedup",
            before=len(pool_emb),
            after=int(dedup.keep.sum()),
            removed=dedup.n_removed,
            space=hp["dedup_space"],
            threshold=hp["dedup_threshold"],
            index=dedup.index_kind,
        )
        ctx.log.record_evidence("2-dedup", pool_kept=dedup.keep if has_pool else np.zeros(0, bool))
        kept = np.flatnonzero(dedup.keep)

        # 3. retrieve
        groups, group_names, group_method = infer_groups(pool_emb[kept], ctx.sensitive_attributes, vlm, ctx.seed)
        if has_pool:
            pick, numbers = retrieve_target_domain(
                pool_emb[kept],
                train_emb,
                groups if hp["balance_groups"] else None,
                hp["retrieve_k"],
                hp["domain_quantile"],
                hp["retrieve_fraction"],
            )
            chosen = kept[pick]
            ctx.log.stage(
                "3-retrieve",
                **numbers,
                group_inference=group_method,
                per_inferred_group=count_per(groups[pick], group_names),
            )
            ctx.log.record_evidence("3-retrieve", pool_rows=chosen)
        else:
            chosen = kept
            ctx.log.stage(
                "3-retrieve",
                kept=len(chosen),
                note="the pool is the training images themselves: all kept",
                group_inference=group_method,
                per_inferred_group=count_per(groups, group_names),
            )
        curated_emb = np.concatenate([pool_emb[chosen], train_emb]) if has_pool else pool_emb[chosen]
        curated_images = np.concatenate([pool_images[chosen], ctx.train.images]) if has_pool else pool_images[chosen]
        # The pool row of every curated sample (-1: a training image), for the harness's diagnostics.
        pool_rows = np.concatenate([chosen, np.full(len(train_emb), -1)]) if has_pool else np.full(len(chosen), -1)

        # 4. pseudo-labels
        if vlm is not None:
            classifier = zero_shot_classifier(vlm, class_phrases(ctx.target_attribute))
            probs = zero_shot_probabilities(curated_emb, classifier, getattr(vlm, "logit_scale", 100.0))
        else:
            with ctx.stage("4-pseudo-labels"):
                prototypes = l2_normalize(predict_features(model, ctx.val.images[meta], ctx.device))
            probs = prototype_probabilities(curated_emb, prototypes, meta_y, ctx.n_classes)
        pseudo, confident = pseudo_labels(probs, hp["confident_fraction"])
        ctx.log.stage(
            "4-pseudo-labels",
            labelled=len(pseudo),
            confident=int(confident.sum()),
            rule="zero-shot" if vlm is not None else "class prototypes of the meta set",
            class_counts=np.bincount(pseudo[confident], minlength=ctx.n_classes).tolist(),
        )
        ctx.log.record_evidence("4-pseudo-labels", pool_rows=pool_rows, pseudo_labels=pseudo, confident=confident)
        images, labels = curated_images[confident], pseudo[confident]

        # 5. SupCon on pseudo-labels, 6. Meta-Weight-Net head
        supcon_steps = round(hp["supcon_fraction"] * ctx.meter.remaining)
        supcon_stage(ctx, model, images, labels, supcon_steps)
        model = meta_weighted_head(
            ctx, model, images, labels, ctx.val.images[meta], meta_y, ctx.meter.remaining, pool_rows[confident]
        )
        return Predictor(model, ctx.device)


# ---------------------------------------------------------------- inputs


def curation_pool(ctx) -> tuple[np.ndarray, str]:
    """The pool's images and a description; the training images (labels unread) when the run has no pool."""
    pool = ctx.pool
    if pool is None:
        return ctx.train.images, "training images with labels stripped (the run has no unlabeled pool)"
    return pool.images, f"pool '{pool.name}'"


def balanced_meta_set(y: np.ndarray, a: np.ndarray, per_cell: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to `per_cell` random examples of every (class, group) cell: the balanced meta set."""
    cells = a * (int(y.max()) + 1) + y
    picked = [rng.permutation(np.flatnonzero(cells == c))[:per_cell] for c in np.unique(cells)]
    return np.sort(np.concatenate(picked))


# ---------------------------------------------------------------- stage 1: embed


def embed_images(
    encode: Callable[[np.ndarray], np.ndarray], images: np.ndarray, progress: bool, desc: str, shard: int = SHARD
) -> np.ndarray:
    """Embeddings of `images` computed shard by shard into one preallocated array, with a progress bar.

    Memory holds one shard of images (memmaps stay on disk) and the output, never partial results to concatenate.
    """
    if len(images) == 0:
        return np.asarray(encode(images), np.float32)
    out = None
    for s in tqdm(range(0, len(images), shard), desc=desc, disable=not progress, leave=False):
        emb = encode(images[s : s + shard])
        if out is None:
            out = np.empty((len(images), emb.shape[1]), np.float32)
        out[s : s + len(emb)] = emb
    return out


# ---------------------------------------------------------------- stage 3: retrieval, groups inferred without labels


def infer_groups(
    emb: np.ndarray, sensitive: tuple[Attribute, ...], vlm: Any, seed: int
) -> tuple[np.ndarray, list[str], str]:
    """Intersectional group codes, their names and the rule: zero-shot per attribute with a VLM, else k-means."""
    if vlm is not None:
        codes = np.zeros(len(emb), np.int64)
        names = [""]
        for attr in sensitive:
            codes = codes * attr.n + (emb @ zero_shot_classifier(vlm, class_phrases(attr)).T).argmax(1)
            names = [f"{p}|{c}" if p else c for p in names for c in attr.classes]
        return codes, names, "zero-shot prompts per sensitive attribute"
    import faiss

    k = int(np.prod([attr.n for attr in sensitive]))
    x = np.ascontiguousarray(emb, dtype=np.float32)
    kmeans = faiss.Kmeans(emb.shape[1], k, niter=20, seed=seed)
    kmeans.train(x)
    return (
        kmeans.index.search(x, 1)[1][:, 0].astype(np.int64),
        [f"cluster {i}" for i in range(k)],
        f"k-means ({k} clusters, unnamed)",
    )


def retrieve_target_domain(
    pool_emb: np.ndarray, target_emb: np.ndarray, groups: np.ndarray | None, k: int, quantile: float, fraction: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """Pool rows to keep: scoring above the in-domain floor, the best `fraction` of the pool, balanced over `groups`."""
    scores, index_kind = domain_similarity(pool_emb, target_emb, k)
    floor = in_domain_floor(target_emb, k, quantile)
    candidates = np.flatnonzero(scores >= floor)
    pick = candidates[
        select_nearest(
            scores[candidates], round(fraction * len(pool_emb)), None if groups is None else groups[candidates]
        )
    ]
    return pick, {
        "before": len(pool_emb),
        "in_domain": len(candidates),
        "floor": round(floor, 4),
        "kept": len(pick),
        "index": index_kind,
        "balanced": groups is not None,
    }


def count_per(groups: np.ndarray, names: list[str]) -> dict[str, int]:
    return {name: int(c) for name, c in zip(names, np.bincount(groups, minlength=len(names)))}


# ---------------------------------------------------------------- stage 4: pseudo-labels


def prototype_probabilities(
    emb: np.ndarray, proto_emb: np.ndarray, proto_y: np.ndarray, n_classes: int, temperature: float = 0.05
) -> np.ndarray:
    """softmax(cos(x, μ_c)/T) with μ_c the normalised mean embedding of the labelled prototypes of class c."""
    means = l2_normalize(np.stack([proto_emb[proto_y == c].mean(0) for c in range(n_classes)]))
    return torch.softmax(torch.from_numpy(emb @ means.T / temperature).double(), dim=1).float().numpy()


def pseudo_labels(probs: np.ndarray, keep_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """argmax labels and the confidence filter: the `keep_fraction` most confident of each pseudo-class.

    A per-class quantile rather than one global threshold, so a class the
    encoder is less sure about is not filtered out entirely.
    """
    label, conf = probs.argmax(1), probs.max(1)
    keep = np.zeros(len(label), bool)
    for c in np.unique(label):
        members = np.flatnonzero(label == c)
        keep[members[np.argsort(-conf[members], kind="stable")[: max(1, round(keep_fraction * len(members)))]]] = True
    return label, keep


# ---------------------------------------------------------------- stage 5: SupCon


def supcon_stage(
    ctx, model: Classifier, images: np.ndarray, labels: np.ndarray, steps: int, proj_dim: int = 128
) -> list[float]:
    """SupCon (Khosla et al. 2020, Eq. 2, `supcon_loss`) on two augmented views per image, pseudo-labels as classes."""
    feat_dim = model.heads["target"].in_features
    projector = projection_head(feat_dim, hidden=feat_dim, out_dim=proj_dim).to(ctx.device)
    sampler = BatchSampler(len(images), ctx.budget.batch_size, ctx.generator("supcon/batches"))
    gen = ctx.generator("supcon/views")
    targets = torch.as_tensor(labels, device=ctx.device)
    model.train()

    def step(_: int) -> torch.Tensor:
        idx = next(sampler)
        z = projector(model.features(torch.cat(views(ctx, images[idx], gen))))
        return supcon_loss(torch.stack(z.chunk(2), dim=1), targets[idx], temperature=ctx.hparams["temperature"])

    losses = ctx.optimize(
        [*model.parameters(), *projector.parameters()],
        steps,
        step,
        lr=ctx.hparams["lr"],
        weight_decay=ctx.hparams["weight_decay"],
        stage="5-supcon",
    )
    ctx.log.stage(
        "5-supcon",
        samples=len(images),
        steps=steps,
        temperature=ctx.hparams["temperature"],
        first_loss=round(losses[0], 4) if losses else None,
        last_loss=round(losses[-1], 4) if losses else None,
    )
    return losses


# ---------------------------------------------------------------- stage 6: Meta-Weight-Net head


class MetaWeightNet(nn.Module):
    """Loss -> sample weight in (0, 1): one hidden layer of 100 ReLUs and a sigmoid (Shu et al. 2019, Sec. 3)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return self.net(losses.unsqueeze(1)).squeeze(1)


def meta_weight_loss(
    head: nn.Module,
    wnet: MetaWeightNet,
    x: torch.Tensor,
    y: torch.Tensor,
    meta_x: torch.Tensor,
    meta_y: torch.Tensor,
    inner_lr: float,
) -> torch.Tensor:
    """One Meta-Weight-Net iteration (Shu et al. 2019, Eqs. 4–6) as a single differentiable loss.

    θ'(φ) = θ − α ∇_θ Σ_i ŵ_i(φ) ℓ_i(θ)   (virtual SGD step, `functional_call` on a detached copy of θ)
    L_meta(φ) = CE(f(meta_x; θ'(φ)), meta_y)
    L_train(θ) = Σ_i sg[ŵ_i(φ)] ℓ_i(θ)

    with ŵ = w / Σw the batch-normalised weights of the MW-Net code.  The sum's
    gradient reaches φ only through L_meta and θ only through L_train, so one
    optimizer step updates both: the simultaneous form of the paper's
    alternating updates, one metered step per iteration.
    """
    params = {k: v.detach().requires_grad_() for k, v in head.named_parameters()}
    losses = F.cross_entropy(functional_call(head, params, (x,)), y, reduction="none")
    w = wnet(losses.detach())
    w = w / w.sum().clamp_min(1e-8)
    grads = torch.autograd.grad((w * losses).sum(), list(params.values()), create_graph=True)
    virtual = {k: p - inner_lr * g for (k, p), g in zip(params.items(), grads)}
    meta_loss = F.cross_entropy(functional_call(head, virtual, (meta_x,)), meta_y)
    train_loss = (w.detach() * F.cross_entropy(head(x), y, reduction="none")).sum()
    return train_loss + meta_loss


class L2Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def nearest_mean_head(feats: torch.Tensor, y: torch.Tensor, n_classes: int, scale: float = HEAD_SCALE) -> nn.Linear:
    """A linear head computing scale · cos(x, μ_c), μ_c the class means: the nearest-class-mean classifier."""
    head = nn.Linear(feats.shape[1], n_classes).to(feats.device)
    with torch.no_grad():
        zero = torch.zeros(feats.shape[1], device=feats.device)
        means = torch.stack([feats[y == c].mean(0) if (y == c).any() else zero for c in range(n_classes)])
        head.weight.copy_(scale * F.normalize(means, dim=1))
        head.bias.zero_()
    return head


def meta_weighted_head(
    ctx,
    model: Classifier,
    images: np.ndarray,
    labels: np.ndarray,
    meta_images: np.ndarray,
    meta_y: np.ndarray,
    steps: int,
    pool_rows: np.ndarray,
) -> Classifier:
    """A cosine classifier head on frozen, L2-normalised SupCon features, trained with Meta-Weight-Net weights.

    The head starts as the nearest-class-mean classifier of the pseudo-labels
    (`nearest_mean_head`), so even a short budget starts from a sensible classifier.
    """
    with ctx.stage("6-meta-weighted-head"):
        feats = torch.from_numpy(l2_normalize(predict_features(model, images, ctx.device))).to(ctx.device)
        meta_x = torch.from_numpy(l2_normalize(predict_features(model, meta_images, ctx.device))).to(ctx.device)
    y, meta_t = torch.as_tensor(labels, device=ctx.device), torch.as_tensor(meta_y, device=ctx.device)
    head = nearest_mean_head(feats, y, ctx.n_classes)
    wnet = MetaWeightNet().to(ctx.device)
    sampler = BatchSampler(len(feats), ctx.budget.batch_size, ctx.generator("head/batches"))

    def step(_: int) -> torch.Tensor:
        idx = torch.as_tensor(next(sampler), device=ctx.device)
        return meta_weight_loss(head, wnet, feats[idx], y[idx], meta_x, meta_t, ctx.hparams["meta_inner_lr"])

    ctx.optimize(
        [*head.parameters(), *wnet.parameters()], steps, step, lr=ctx.hparams["head_lr"], stage="6-meta-weighted-head"
    )
    with torch.no_grad():
        weights = wnet(F.cross_entropy(head(feats), y, reduction="none")).cpu().numpy()
        meta_acc = float((head(meta_x).argmax(1) == meta_t).float().mean())
    ctx.log.stage(
        "6-meta-weighted-head",
        samples=len(feats),
        meta_set=len(meta_x),
        meta_set_acc=round(meta_acc, 4),
        weight_mean=round(float(weights.mean()), 4),
        weight_min=round(float(weights.min()), 4),
        weight_max=round(float(weights.max()), 4),
    )
    ctx.log.record_evidence("6-meta-weighted-head", pool_rows=pool_rows, pseudo_labels=labels, weights=weights)
    final = Classifier(nn.Sequential(model.backbone, L2Normalize()), feats.shape[1], {"target": ctx.n_classes}).to(
        ctx.device
    )
    final.heads["target"].load_state_dict(head.state_dict())
    return final


@hookimpl
def fairfacebench_methods():
    return [SSLPipeline]
