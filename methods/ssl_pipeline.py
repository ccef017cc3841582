"""ssl-pipeline: the self-supervised pipeline for fair facial attribute classification (seed 000).

Ramachandran & Rattani, "A Self-Supervised Learning Pipeline for
Demographically Fair Facial Attribute Classification", arXiv 2407.10104.
Six stages (METHODS.md), one function each below, each logging its numbers
into the run record (`ctx.log.stage`):

1. embed the unlabeled pool and the target-domain images (the training images,
   without labels) with the VLM image encoder, in shards with a progress bar;
2. de-duplicate the pool: near-duplicates above a cosine threshold, found with
   faiss (`curation.deduplicate`), in the VLM space (SemDeDup-style, the
   paper's choice) or, the default, on image thumbnails (see `dedup_space`);
3. retrieve the pool images nearest to the target domain (faiss k-NN): those
   scoring at least as high as a typical training image (`in_domain_floor`),
   balanced across demographic groups inferred without labels, so a minority
   group's share is never filled up with off-domain images;
4. pseudo-label the curated set zero-shot (CLIP prompt ensembles) and keep the
   most confident share of each pseudo-class;
5. train the backbone with SupCon (Khosla et al., NeurIPS 2020) on the
   pseudo-labels;
6. fit the classifier head on the frozen SupCon features with Meta-Weight-Net
   sample weights (Shu et al., NeurIPS 2019), meta loss on a small balanced
   meta set.

Near-duplicates are searched on image thumbnails by default: on synthfaces'
pool at 48 px, planted near-duplicate pairs have thumbnail cosine ≥ 0.988 (1st
percentile) while 99% of images have their nearest distinct neighbour below
0.92; the mini-CLIP, trained on attribute captions only, maps distinct faces
with the same attributes together (87% of images have a distinct neighbour
above 0.97, planted pairs a median of 0.95), so its space suits retrieval and
pseudo-labels but not instance-level de-duplication.  `dedup_space="vlm"` is
the paper's SemDeDup-style choice, right for web-scale CLIP embeddings.

Labels used, stage by stage:

- stages 1–5 use no human label; training images are used as unlabeled
  target-domain images;
- stage 6 fits the head on pseudo-labels only; its meta set is `meta_per_cell`
  validation images per (target class, sensitive group) cell, with their
  target labels and sensitive groups (y:val, a:val).

Without a VLM the method runs only as the named variant
"prototype-pseudo-labels": stage 1 embeds with the comparison's ImageNet
backbone, stage 3 infers groups by k-means, stage 4 labels by cosine
similarity to class prototypes, the class means of the same meta set (the same
y:val, a:val).  Where the dataset has no unlabeled pool (e.g. utkface), the
label-stripped training images are the pool, stage 3 keeps all of them, and
the stage log says so.  The pool's hidden ground truth is read only by the
`report_*` functions, for the run record, never for training.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fairfacebench.data import Attribute
from fairfacebench.encoders import class_phrases, zero_shot_classifier, zero_shot_probabilities
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.curation import Dedup, deduplicate, domain_similarity, in_domain_floor, select_nearest, thumbnails
from fairfacebench.methods.losses import supcon_loss
from fairfacebench.training import Augment, BatchSampler, Classifier, Predictor, predict_features

VARIANT_NO_VLM = "prototype-pseudo-labels"
# Views for SupCon: SimCLR-style stronger crop and colour jitter than the supervised family.
VIEW_AUGMENT = Augment(flip=True, crop=6, jitter=0.4)
SHARD = 2048  # images per embedding shard
# Initial inverse temperature of the cosine head: a calibrated, not over-confident, start.  From an
# over-confident head, noisy samples "help" the meta loss by shrinking the logits and get up-weighted.
HEAD_SCALE = 3.0


class SSLPipeline(Method):
    name = "ssl-pipeline"
    description = "Curated unlabeled pool (VLM embed, faiss dedup + retrieval), zero-shot pseudo-labels, SupCon, Meta-Weight-Net head"
    citation = "Ramachandran & Rattani, A Self-Supervised Learning Pipeline for Demographically Fair Facial Attribute Classification, arXiv 2407.10104"
    labels = LabelUse(target="val", sensitive="val", note="stages 1-5: none (pseudo-labels); stage 6 meta set: y,a of a few val images per cell")
    needs_vlm = True
    needs_pool = True
    hparams = {
        "dedup_space": Hparam("thumbnail", choice(["thumbnail", "vlm"]), "where near-duplicates are searched: image thumbnails or VLM embeddings"),
        "dedup_threshold": Hparam(0.97, uniform(0.95, 0.99), "cosine similarity above which two pool images are near-duplicates"),
        "retrieve_fraction": Hparam(0.6, uniform(0.4, 0.8), "at most this share of the de-duplicated pool is kept by retrieval"),
        "domain_quantile": Hparam(0.05, uniform(0.01, 0.2), "in-domain floor: this quantile of the training images' own retrieval scores"),
        "retrieve_k": Hparam(10, choice([5, 10, 20]), "target-domain neighbours averaged into a pool image's retrieval score"),
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
        pool_images, hidden, pool_source = curation_pool(ctx)
        has_pool = ctx.pool is not None
        meta = balanced_meta_set(ctx.val.y, ctx.val.a, hp["meta_per_cell"], ctx.rng("meta-set"))
        meta_y = ctx.val.y[meta]
        encode = vlm.encode_images if vlm is not None else lambda imgs: l2(predict_features(model, imgs, ctx.device))
        target = target_attribute(ctx)
        sensitive = sensitive_attributes(ctx)

        # 1. embed
        pool_emb = embed_images(encode, pool_images, ctx.progress, "1-embed pool")
        train_emb = embed_images(encode, ctx.train.images, ctx.progress, "1-embed train") if has_pool else pool_emb
        ctx.log.stage("1-embed", pool_source=pool_source, pool=len(pool_images), train_images=len(train_emb),
                      encoder=vlm.name if vlm is not None else f"backbone:{ctx.backbone_name} (no VLM)", dim=int(pool_emb.shape[1]))

        # 2. de-duplicate
        dedup = deduplicate(thumbnails(pool_images) if hp["dedup_space"] == "thumbnail" else pool_emb, hp["dedup_threshold"])
        ctx.log.stage("2-dedup", before=len(pool_emb), after=int(dedup.keep.sum()), removed=dedup.n_removed, space=hp["dedup_space"],
                      threshold=hp["dedup_threshold"], index=dedup.index_kind, **report_dedup(dedup, hidden))
        kept = np.flatnonzero(dedup.keep)

        # 3. retrieve
        groups, group_names, group_method = infer_groups(pool_emb[kept], sensitive, vlm, ctx.seed)
        if has_pool:
            pick, numbers = retrieve_target_domain(pool_emb[kept], train_emb, groups if hp["balance_groups"] else None, hp["retrieve_k"],
                                                   hp["domain_quantile"], hp["retrieve_fraction"])
            chosen = kept[pick]
            ctx.log.stage("3-retrieve", **numbers, group_inference=group_method, per_inferred_group=count_per(groups[pick], group_names),
                          **report_retrieval(chosen, hidden, ctx.task))
        else:
            chosen = kept
            ctx.log.stage("3-retrieve", kept=len(chosen), note="the pool is the training images themselves: all kept",
                          group_inference=group_method, per_inferred_group=count_per(groups, group_names))
        curated_emb = np.concatenate([pool_emb[chosen], train_emb]) if has_pool else pool_emb[chosen]
        curated_images = np.concatenate([pool_images[chosen], ctx.train.images]) if has_pool else pool_images[chosen]
        from_pool = np.arange(len(curated_emb)) < (len(chosen) if has_pool else 0)

        # 4. pseudo-labels
        if vlm is not None:
            probs = zero_shot_probabilities(curated_emb, zero_shot_classifier(vlm, class_phrases(target)), getattr(vlm, "logit_scale", 100.0))
        else:
            probs = prototype_probabilities(curated_emb, l2(predict_features(model, ctx.val.images[meta], ctx.device)), meta_y, ctx.n_classes)
        pseudo, confident = pseudo_labels(probs, hp["confident_fraction"])
        ctx.log.stage("4-pseudo-labels", labelled=len(pseudo), confident=int(confident.sum()), rule="zero-shot" if vlm is not None else "class prototypes of the meta set",
                      class_counts=np.bincount(pseudo[confident], minlength=ctx.n_classes).tolist(),
                      **report_pseudo_labels(pseudo, confident, chosen, from_pool, hidden, ctx.task, ctx.group_names))
        images, labels = curated_images[confident], pseudo[confident]

        # 5. SupCon on pseudo-labels, 6. Meta-Weight-Net head
        supcon_steps = round(hp["supcon_fraction"] * ctx.budget.remaining)
        supcon_stage(ctx, model, images, labels, supcon_steps)
        model = meta_weighted_head(ctx, model, images, labels, ctx.val.images[meta], meta_y, ctx.budget.remaining, hidden_correct(chosen, pseudo, confident, from_pool, hidden, ctx.task))
        return Predictor(model, ctx.device)


# ---------------------------------------------------------------- inputs


def curation_pool(ctx) -> tuple[np.ndarray, dict[str, np.ndarray], str]:
    """The pool's images, its hidden truth (reports only) and a description; training images when there is no pool."""
    pool = ctx.pool
    if pool is None:
        return ctx.train.images, {}, "training images with labels stripped (the dataset has no unlabeled pool)"
    return pool.images, pool.hidden, f"dataset pool '{pool.name}'"


def target_attribute(ctx) -> Attribute:
    return Attribute(ctx.task.target, tuple(ctx.target_classes))


def sensitive_attributes(ctx) -> list[Attribute]:
    """Each sensitive attribute with its classes, recovered from the intersectional group names ('a|b')."""
    parts = [name.split("|") for name in ctx.group_names]
    return [Attribute(attr, tuple(dict.fromkeys(p[i] for p in parts))) for i, attr in enumerate(ctx.task.sensitive)]


def balanced_meta_set(y: np.ndarray, a: np.ndarray, per_cell: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to `per_cell` random examples of every (class, group) cell: the balanced meta set."""
    cells = a * (int(y.max()) + 1) + y
    picked = [rng.permutation(np.flatnonzero(cells == c))[:per_cell] for c in np.unique(cells)]
    return np.sort(np.concatenate(picked))


def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------- stage 1: embed


def embed_images(encode: Callable[[np.ndarray], np.ndarray], images: np.ndarray, progress: bool, desc: str, shard: int = SHARD) -> np.ndarray:
    """Embeddings of `images` computed shard by shard (memmaps stay on disk), with a progress bar."""
    from tqdm import tqdm

    out = [encode(images[s : s + shard]) for s in tqdm(range(0, len(images), shard), desc=desc, disable=not progress, leave=False)]
    return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------- stage 3: retrieval, groups inferred without labels


def infer_groups(emb: np.ndarray, sensitive: list[Attribute], vlm: Any, seed: int) -> tuple[np.ndarray, list[str], str]:
    """Intersectional group codes, their names and the rule: zero-shot per sensitive attribute with a VLM, else k-means."""
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
    return kmeans.index.search(x, 1)[1][:, 0].astype(np.int64), [f"cluster {i}" for i in range(k)], f"k-means ({k} clusters, unnamed)"


def retrieve_target_domain(pool_emb: np.ndarray, target_emb: np.ndarray, groups: np.ndarray | None, k: int, quantile: float,
                           fraction: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Pool rows to keep: scoring above the in-domain floor, the best `fraction` of the pool, balanced over `groups`."""
    scores, index_kind = domain_similarity(pool_emb, target_emb, k)
    floor = in_domain_floor(target_emb, k, quantile)
    candidates = np.flatnonzero(scores >= floor)
    pick = candidates[select_nearest(scores[candidates], round(fraction * len(pool_emb)), None if groups is None else groups[candidates])]
    return pick, {"before": len(pool_emb), "in_domain": len(candidates), "floor": round(floor, 4), "kept": len(pick),
                  "index": index_kind, "balanced": groups is not None}


def count_per(groups: np.ndarray, names: list[str]) -> dict[str, int]:
    return {name: int(c) for name, c in zip(names, np.bincount(groups, minlength=len(names)))}


# ---------------------------------------------------------------- stage 4: pseudo-labels


def prototype_probabilities(emb: np.ndarray, proto_emb: np.ndarray, proto_y: np.ndarray, n_classes: int, temperature: float = 0.05) -> np.ndarray:
    """softmax(cos(x, μ_c)/T) with μ_c the normalised mean embedding of the labelled prototypes of class c."""
    means = l2(np.stack([proto_emb[proto_y == c].mean(0) for c in range(n_classes)]))
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


def supcon_stage(ctx, model: Classifier, images: np.ndarray, labels: np.ndarray, steps: int, proj_dim: int = 128) -> list[float]:
    """SupCon (Khosla et al. 2020, Eq. 2, `supcon_loss`) on two augmented views per image, pseudo-labels as classes."""
    feat_dim = model.heads["target"].in_features
    projector = nn.Sequential(nn.Linear(feat_dim, feat_dim), nn.ReLU(), nn.Linear(feat_dim, proj_dim)).to(ctx.device)
    sampler = BatchSampler(len(images), ctx.budget.budget.batch_size, ctx.generator("supcon/batches"))
    gen = ctx.generator("supcon/views")
    targets = torch.as_tensor(labels, device=ctx.device)
    model.train()

    def step(_: int) -> torch.Tensor:
        idx = next(sampler)
        x = torch.cat([ctx.images_to_input(images[idx], gen, VIEW_AUGMENT) for _ in range(2)])
        z = projector(model.features(x))
        return supcon_loss(torch.stack(z.chunk(2), dim=1), targets[idx], temperature=ctx.hparams["temperature"])

    losses = ctx.optimize([*model.parameters(), *projector.parameters()], steps, step, lr=ctx.hparams["lr"],
                          weight_decay=ctx.hparams["weight_decay"], stage="5-supcon")
    ctx.log.stage("5-supcon", samples=len(images), steps=steps, temperature=ctx.hparams["temperature"],
                  first_loss=round(losses[0], 4) if losses else None, last_loss=round(losses[-1], 4) if losses else None)
    return losses


# ---------------------------------------------------------------- stage 6: Meta-Weight-Net head


class MetaWeightNet(nn.Module):
    """Loss -> sample weight in (0, 1): an MLP with one hidden layer of 100 ReLUs and a sigmoid (Shu et al. 2019, Sec. 3)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return self.net(losses.unsqueeze(1)).squeeze(1)


def meta_weight_loss(head: nn.Module, wnet: MetaWeightNet, x: torch.Tensor, y: torch.Tensor, meta_x: torch.Tensor,
                     meta_y: torch.Tensor, inner_lr: float) -> torch.Tensor:
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


def meta_weighted_head(ctx, model: Classifier, images: np.ndarray, labels: np.ndarray, meta_images: np.ndarray, meta_y: np.ndarray,
                       steps: int, correct: np.ndarray | None) -> Classifier:
    """A cosine classifier head on frozen, L2-normalised SupCon features, trained with Meta-Weight-Net weights.

    The head starts as the nearest-class-mean classifier of the pseudo-labels
    (`nearest_mean_head`), so even a short budget starts from a sensible classifier.
    """
    feats = torch.from_numpy(l2(predict_features(model, images, ctx.device))).to(ctx.device)
    meta_x = torch.from_numpy(l2(predict_features(model, meta_images, ctx.device))).to(ctx.device)
    y, meta_t = torch.as_tensor(labels, device=ctx.device), torch.as_tensor(meta_y, device=ctx.device)
    head = nearest_mean_head(feats, y, ctx.n_classes)
    wnet = MetaWeightNet().to(ctx.device)
    sampler = BatchSampler(len(feats), ctx.budget.budget.batch_size, ctx.generator("head/batches"))

    def step(_: int) -> torch.Tensor:
        idx = torch.as_tensor(next(sampler), device=ctx.device)
        return meta_weight_loss(head, wnet, feats[idx], y[idx], meta_x, meta_t, ctx.hparams["meta_inner_lr"])

    ctx.optimize([*head.parameters(), *wnet.parameters()], steps, step, lr=ctx.hparams["head_lr"], stage="6-meta-weighted-head")
    with torch.no_grad():
        weights = wnet(F.cross_entropy(head(feats), y, reduction="none")).cpu().numpy()
        meta_acc = float((head(meta_x).argmax(1) == meta_t).float().mean())
    ctx.log.stage("6-meta-weighted-head", samples=len(feats), meta_set=len(meta_x), meta_set_acc=round(meta_acc, 4),
                  weight_mean=round(float(weights.mean()), 4), weight_min=round(float(weights.min()), 4), weight_max=round(float(weights.max()), 4),
                  **report_weights(weights, correct))
    final = Classifier(nn.Sequential(model.backbone, L2Normalize()), feats.shape[1], {"target": ctx.n_classes}).to(ctx.device)
    final.heads["target"].load_state_dict(head.state_dict())
    return final


# ---------------------------------------------------------------- reports from hidden truth (never used for training)


def hidden_groups(hidden: dict[str, np.ndarray], task) -> np.ndarray | None:
    """True intersectional group codes of pool images (-1 where unknown), or None without hidden truth."""
    if not all(a in hidden for a in task.sensitive):
        return None
    codes = np.zeros(len(hidden[task.sensitive[0]]), np.int64)
    unknown = np.zeros(len(codes), bool)
    for attr in task.sensitive:
        values = hidden[attr]
        unknown |= values < 0
        codes = codes * (int(values.max()) + 1) + values
    return np.where(unknown, -1, codes)


def report_dedup(dedup: Dedup, hidden: dict[str, np.ndarray]) -> dict[str, Any]:
    """Against planted near-duplicates: pairs resolved (one member removed, its partner kept) and distinct images removed."""
    if "duplicate_of" not in hidden:
        return {}
    source = hidden["duplicate_of"]
    partner = np.full(len(source), -1)
    dups = np.flatnonzero(source >= 0)
    partner[dups], partner[source[dups]] = source[dups], dups
    removed = ~dedup.keep
    resolved = removed & (partner >= 0) & dedup.keep[np.maximum(partner, 0)]
    return {"planted_pairs": len(dups), "planted_pairs_resolved": int(resolved.sum()), "distinct_images_removed": int((removed & ~resolved).sum())}


def report_retrieval(chosen: np.ndarray, hidden: dict[str, np.ndarray], task) -> dict[str, Any]:
    """Share of off-domain (non-face) images before and after retrieval, and the true group mix of what was kept."""
    out: dict[str, Any] = {}
    if "is_face" in hidden:
        out["off_domain_in_pool"] = int((~hidden["is_face"]).sum())
        out["off_domain_kept"] = int((~hidden["is_face"][chosen]).sum())
    groups = hidden_groups(hidden, task)
    if groups is not None:
        g = groups[chosen]
        out["per_true_group_kept"] = np.bincount(g[g >= 0]).tolist()
    return out


def report_pseudo_labels(pseudo: np.ndarray, confident: np.ndarray, chosen: np.ndarray, from_pool: np.ndarray,
                         hidden: dict[str, np.ndarray], task, group_names: tuple[str, ...]) -> dict[str, Any]:
    """Pseudo-label accuracy on curated pool faces with hidden truth, all and confident, overall and per true group."""
    if task.target not in hidden:
        return {"pseudo_label_accuracy": "no hidden truth for this pool"}
    truth = hidden[task.target][chosen]
    groups = hidden_groups(hidden, task)[chosen]
    known = truth >= 0
    out: dict[str, Any] = {"with_truth": int(known.sum())}
    for name, mask in (("all", known), ("confident", known & confident[from_pool])):
        correct = pseudo[from_pool][mask] == truth[mask]
        out[f"accuracy_{name}"] = round(float(correct.mean()), 4) if mask.any() else None
        out[f"accuracy_{name}_per_group"] = {
            gname: round(float(correct[groups[mask] == g].mean()), 4) if (groups[mask] == g).any() else None for g, gname in enumerate(group_names)
        }
    return out


def hidden_correct(chosen: np.ndarray, pseudo: np.ndarray, confident: np.ndarray, from_pool: np.ndarray,
                   hidden: dict[str, np.ndarray], task) -> np.ndarray | None:
    """Per training sample of stage 6: 1 pseudo-label right, 0 wrong, -1 unknown (train images, non-faces); None without truth."""
    if task.target not in hidden:
        return None
    truth = np.full(len(pseudo), -1)
    truth[np.flatnonzero(from_pool)] = hidden[task.target][chosen]
    known = truth >= 0
    return np.where(known, (pseudo == truth).astype(int), -1)[confident]


def report_weights(weights: np.ndarray, correct: np.ndarray | None) -> dict[str, Any]:
    """Mean learned weight of samples whose pseudo-label is right vs wrong (hidden truth)."""
    if correct is None:
        return {}
    return {f"weight_mean_pseudo_label_{k}": round(float(weights[correct == v].mean()), 4) if (correct == v).any() else None
            for k, v in (("right", 1), ("wrong", 0))}


@hookimpl
def fairfacebench_methods():
    return [SSLPipeline]
