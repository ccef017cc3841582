"""ssl-pipeline: the self-supervised pipeline for fair facial attribute classification (seed 000).

Ramachandran & Rattani, arXiv 2407.10104, stage by stage, each logging its numbers: (1) embed the pool and
the (unlabeled) training images with the VLM; (2) de-duplicate in the VLM space with faiss (a thumbnail pass
first); (3) faiss k-NN retrieval of the pool images nearest to the target domain, balanced over groups inferred
without labels; (4) zero-shot pseudo-labels, the confident share kept per (pseudo-class, inferred group);
(5) meta-learning-based weighted contrastive learning: SupCon on the pseudo-labels, each sample's loss weighted
by a Meta-Weight-Net trained through a virtual step of the encoder against a small clean meta set;
(6) a linear head on the frozen encoder.  Without a VLM it runs only as the named variant
"prototype-pseudo-labels" (the backbone's features in every stage); with an image-only encoder (no text tower, e.g.
the face descriptor) as "image-embeddings": the encoder's space for de-duplication, retrieval and k-means groups,
and class prototypes of the meta set instead of zero-shot prompts.  Labels used per stage and every choice the
paper leaves open: docs/METHODS.md.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from fairfacebench.data import Attribute
from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice, log_uniform, uniform
from fairfacebench.methods.common import l2_normalize, projection_head, views
from fairfacebench.methods.curation import deduplicate, domain_similarity, in_domain_floor, select_nearest, thumbnails
from fairfacebench.methods.losses import supcon_loss, supcon_per_sample
from fairfacebench.sharding import embed_in_shards
from fairfacebench.training import BatchSampler, Classifier, Predictor, predict_features
from fairfacebench.zeroshot import class_phrases, zero_shot_classifier, zero_shot_probabilities

VARIANT_NO_VLM = "prototype-pseudo-labels"
VARIANT_IMAGE_ONLY = "image-embeddings"  # an encoder without a text tower: prototypes and k-means, no prompts
# Initial inverse temperature of the cosine head: a calibrated, not over-confident, start.
HEAD_SCALE = 3.0


class SSLPipeline(Method):
    name = "ssl-pipeline"
    version = 2
    # Code 1b76b1ff154644e8 computed the same on every run that finished: stage 5 now stops where the forward
    # samples would run out, where that code failed (docs/METHODS.md, "ssl-pipeline"; `supcon_steps`).
    same_results_as = ("1b76b1ff154644e8",)
    description = (
        "Curated unlabeled pool (VLM embed, faiss dedup + retrieval), zero-shot pseudo-labels, "
        "meta-weighted SupCon on the encoder, linear head"
    )
    citation = (
        "Ramachandran & Rattani, A Self-Supervised Learning Pipeline for Demographically Fair Facial Attribute "
        "Classification, arXiv 2407.10104"
    )
    labels = LabelUse(
        target="val",
        sensitive="val",
        note="pseudo-labels for training; the meta set: y,a of a few val images per (class, group) cell",
    )
    needs_vlm = True
    needs_pool = True
    curation = True  # de-duplication and retrieval (the ablation ssl-pipeline:no-curation turns it off)
    meta_weighting = True  # Meta-Weight-Net sample weights (the ablation ssl-pipeline:no-meta-weights turns it off)
    space = {
        "thumbnail_first": Hparam(True, choice([True, False]), "a thumbnail pass removes near-identical images first"),
        "thumbnail_threshold": Hparam(0.97, uniform(0.95, 0.99), "thumbnail cosine of near-identical images"),
        "dedup_threshold": Hparam(0.998, uniform(0.99, 0.999), "VLM cosine above which pool images are duplicates"),
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
        "confident_fraction": Hparam(
            0.6, uniform(0.4, 0.9), "most confident share kept of each (pseudo-class, inferred group) cell"
        ),
        "supcon_frac": Hparam(0.7, uniform(0.5, 0.85), "share of the step budget for weighted SupCon (the rest: head)"),
        "temperature": Hparam(0.1, log_uniform(0.05, 0.3), "SupCon temperature τ"),
        "encoder_lr": Hparam(0.05, log_uniform(0.01, 0.1), "SGD learning rate of the encoder (real and virtual step)"),
        "meta_lr": Hparam(3e-3, log_uniform(1e-3, 1e-2), "Adam learning rate of the Meta-Weight-Net"),
        "virtual_lr": Hparam(1.0, log_uniform(0.1, 3.0), "SGD step size of the virtual step (see docs/METHODS.md)"),
        "meta_scope": Hparam("tail", choice(["tail", "all"]), "encoder parameters the virtual step moves"),
        "meta_per_cell": Hparam(8, choice([4, 8, 16]), "validation images per (class, group) cell in the meta set"),
        "meta_batch": Hparam(32, choice([16, 32, 64]), "meta-set images per step"),
        "head_lr": Hparam(1e-2, log_uniform(3e-3, 3e-2), "learning rate of the linear head"),
    }

    def fit(self, ctx):
        hp = ctx.hparams
        vlm = ctx.vlm
        prompts = vlm if vlm is not None and (vlm.info or {}).get("text_tower", True) else None  # zero-shot needs text
        if vlm is None:
            ctx.log.variant = VARIANT_NO_VLM
        elif prompts is None:
            ctx.log.variant = VARIANT_IMAGE_ONLY
        model = ctx.new_classifier()
        pool_images, pool_source = curation_pool(ctx)
        has_pool = ctx.pool is not None
        meta = balanced_meta_set(ctx.val.y, ctx.val.a, hp["meta_per_cell"], ctx.rng("meta-set"))
        meta_y = ctx.val.y[meta]
        if vlm is not None:
            encode = vlm.encode_images  # streamed in shards by the harness (as Ray tasks under --executor ray)
        else:
            encode = lambda imgs: embed_in_shards(lambda s: l2_normalize(predict_features(model, s, ctx.device)), imgs)  # noqa: E731

        # 1. embed
        with ctx.stage("1-embed"):
            pool_emb = encode(pool_images)
            train_emb = encode(ctx.train.images) if has_pool else pool_emb
        ctx.log.stage(
            "1-embed",
            pool_source=pool_source,
            pool=len(pool_images),
            train_images=len(train_emb),
            encoder=vlm.name if vlm is not None else f"backbone:{ctx.backbone_name} (no VLM)",
            dim=int(pool_emb.shape[1]),
        )

        # 2. de-duplicate, 3. retrieve
        with ctx.stage("2-dedup"):
            kept = deduplicate_pool(ctx, pool_images, pool_emb, hp) if self.curation else np.arange(len(pool_emb))
        with ctx.stage("3-retrieve"):
            chosen = retrieve(ctx, pool_emb, train_emb, kept, prompts, hp, has_pool and self.curation)
        curated_emb = np.concatenate([pool_emb[chosen], train_emb]) if has_pool else pool_emb[chosen]
        curated_images = np.concatenate([pool_images[chosen], ctx.train.images]) if has_pool else pool_images[chosen]
        # The pool row and the training row of every curated sample (-1: not one), for the harness's diagnostics.
        if has_pool:
            pool_rows = np.concatenate([chosen, np.full(len(train_emb), -1)])
            train_rows = np.concatenate([np.full(len(chosen), -1), np.arange(len(train_emb))])
        else:
            pool_rows, train_rows = np.full(len(chosen), -1), chosen

        # 4. pseudo-labels, the confident share of every (pseudo-class, inferred group) cell
        with ctx.stage("4-pseudo-labels"):
            if prompts is not None:
                classifier = zero_shot_classifier(prompts, class_phrases(ctx.target_attribute))
                probs = zero_shot_probabilities(curated_emb, classifier, getattr(prompts, "logit_scale", 100.0))
            else:  # the meta set's class prototypes in the space the pool was embedded in
                probs = prototype_probabilities(curated_emb, encode(ctx.val.images[meta]), meta_y, ctx.n_classes)
            proxy, proxy_names, proxy_rule = infer_groups(curated_emb, ctx.sensitive_attributes, prompts, ctx.seed)
            pseudo, confident = pseudo_labels(probs, hp["confident_fraction"], proxy)
        ctx.log.stage(
            "4-pseudo-labels",
            labelled=len(pseudo),
            confident=int(confident.sum()),
            rule="zero-shot" if prompts is not None else "class prototypes of the meta set",
            group_proxy=proxy_rule,
            kept_per_group_proxy=count_per(proxy[confident], proxy_names),
            class_counts=np.bincount(pseudo[confident], minlength=ctx.n_classes).tolist(),
        )
        ctx.log.record_evidence(
            "4-pseudo-labels", pool_rows=pool_rows, train_rows=train_rows, pseudo_labels=pseudo, confident=confident
        )
        images, labels = curated_images[confident], pseudo[confident]
        rows, train_rows = pool_rows[confident], train_rows[confident]

        # 5. meta-learning-based weighted contrastive learning, 6. linear head
        meta_batch = min(hp["meta_batch"], len(meta)) if self.meta_weighting else 0
        steps = supcon_steps(
            hp["supcon_frac"],
            ctx.budget.remaining,
            ctx.budget.forward_remaining,
            per_step=2 * ctx.budget.batch_size + 2 * meta_batch,  # two views of the batch and of the meta batch
            reserve=len(images),  # stage 6's one pass over the pseudo-labelled images
        )
        weights = weighted_contrastive(
            ctx, model, images, labels, ctx.val.images[meta], meta_y, steps, self.meta_weighting
        )
        if self.meta_weighting:
            seen = ~np.isnan(weights)
            ctx.log.record_evidence(
                "5-meta-weighted-supcon",
                pool_rows=rows[seen],
                train_rows=train_rows[seen],
                pseudo_labels=labels[seen],
                weights=weights[seen],
            )
        return Predictor(linear_head(ctx, model, images, labels, ctx.budget.remaining), ctx.device)


class SSLPipelineNoMetaWeights(SSLPipeline):
    """Ablation: plain SupCon on the pseudo-labels, every sample weighted equally."""

    name = "ssl-pipeline:no-meta-weights"
    ablation_of = "ssl-pipeline"
    description = "ssl-pipeline without Meta-Weight-Net sample weights (ablation)"
    meta_weighting = False


class SSLPipelineNoCuration(SSLPipeline):
    """Ablation: the whole pool, neither de-duplicated nor retrieved."""

    name = "ssl-pipeline:no-curation"
    ablation_of = "ssl-pipeline"
    description = "ssl-pipeline without de-duplication and retrieval (ablation)"
    curation = False


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


def pseudo_labels(
    probs: np.ndarray, keep_fraction: float, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """argmax labels and the confidence filter: the `keep_fraction` most confident of each (pseudo-class, group).

    A quantile per cell rather than one global threshold, so neither a class nor a (proxy) group the encoder is
    less sure about is filtered out wholesale.
    """
    label, conf = probs.argmax(1), probs.max(1)
    cells = label if groups is None else groups * probs.shape[1] + label
    keep = np.zeros(len(label), bool)
    for c in np.unique(cells):
        members = np.flatnonzero(cells == c)
        keep[members[np.argsort(-conf[members], kind="stable")[: max(1, round(keep_fraction * len(members)))]]] = True
    return label, keep


# ---------------------------------------------------------------- stages 2 and 3: de-duplication, retrieval


def deduplicate_pool(ctx, pool_images: np.ndarray, pool_emb: np.ndarray, hp: dict[str, Any]) -> np.ndarray:
    """Pool rows kept: an optional thumbnail pass (pixel-level copies), then the VLM-space pass (the paper's)."""
    keep = np.ones(len(pool_emb), bool)
    numbers: dict[str, Any] = {"before": len(pool_emb)}
    if hp["thumbnail_first"]:
        thumbs = deduplicate(thumbnails(pool_images), hp["thumbnail_threshold"])
        keep &= thumbs.keep
        numbers.update(thumbnail_removed=thumbs.n_removed, thumbnail_threshold=hp["thumbnail_threshold"])
    rows = np.flatnonzero(keep)
    semantic = deduplicate(pool_emb[rows], hp["dedup_threshold"])
    keep[rows[~semantic.keep]] = False
    numbers.update(
        vlm_removed=semantic.n_removed,
        vlm_threshold=hp["dedup_threshold"],
        index=semantic.index_kind,
        after=int(keep.sum()),
    )
    ctx.log.stage("2-dedup", **numbers)
    ctx.log.record_evidence("2-dedup", pool_kept=keep if ctx.pool is not None else np.zeros(0, bool))
    return np.flatnonzero(keep)


def retrieve(
    ctx, pool_emb: np.ndarray, train_emb: np.ndarray, kept: np.ndarray, vlm: Any, hp: dict[str, Any], active: bool
) -> np.ndarray:
    """Pool rows retrieved for the target domain (all kept rows when there is no separate pool or no curation)."""
    groups, group_names, group_method = infer_groups(pool_emb[kept], ctx.sensitive_attributes, vlm, ctx.seed)
    if not active:
        ctx.log.stage(
            "3-retrieve",
            kept=len(kept),
            note="no retrieval: every de-duplicated row is kept",
            group_inference=group_method,
            per_inferred_group=count_per(groups, group_names),
        )
        return kept
    balance = groups if hp["balance_groups"] else None
    pick, numbers = retrieve_target_domain(
        pool_emb[kept], train_emb, balance, hp["retrieve_k"], hp["domain_quantile"], hp["retrieve_fraction"]
    )
    ctx.log.stage(
        "3-retrieve", **numbers, group_inference=group_method, per_inferred_group=count_per(groups[pick], group_names)
    )
    ctx.log.record_evidence("3-retrieve", pool_rows=kept[pick])
    return kept[pick]


# ---------------------------------------------------------------- stage 5: meta-weighted contrastive learning


class MetaWeightNet(nn.Module):
    """Loss -> sample weight in (0, 1): one hidden layer of 100 ReLUs and a sigmoid (Shu et al. 2019, Sec. 3)."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        return self.net(losses.unsqueeze(1)).squeeze(1)


class Encoder(nn.Module):
    """The backbone and its projection head: images -> contrastive embeddings (what SupCon and the meta step move)."""

    def __init__(self, backbone: nn.Module, projector: nn.Module):
        super().__init__()
        self.backbone, self.projector = backbone, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(x))


def tail_parameters(encoder: Encoder, scope: str, share: float = 0.25) -> list[str]:
    """Names of the parameters the virtual step moves: all, or the projection head and the backbone's last layers
    holding `share` of its parameters (registration order runs input to output)."""
    names = [n for n, p in encoder.named_parameters() if p.requires_grad]
    if scope == "all":
        return names
    backbone = [(n, p.numel()) for n, p in encoder.backbone.named_parameters() if p.requires_grad]
    total, tail, count = sum(c for _, c in backbone), [], 0
    for n, c in reversed(backbone):
        if count >= share * total:
            break
        tail.append(f"backbone.{n}")
        count += c
    return [n for n in names if n.startswith("projector.")] + tail[::-1]


def meta_weighted_loss(
    encoder: Encoder,
    wnet: MetaWeightNet,
    wnet_opt: torch.optim.Optimizer,
    inner_step: Callable[[torch.optim.Optimizer], None],
    x: torch.Tensor,
    y: torch.Tensor,
    meta_x: torch.Tensor,
    meta_y: torch.Tensor,
    temperature: float,
    lr: float,
    moved: list[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Meta-Weight-Net iteration on the encoder (Shu et al. 2019, Eqs. 4-6, with SupCon as the loss).

    x, meta_x: two views stacked view-major, (2B, ...) and (2M, ...).  The Meta-Weight-Net maps each sample's
    SupCon loss to a weight; a virtual SGD step of the encoder's `moved` parameters on the weighted loss,
    θ'(φ) = θ − lr·∇θ Σ_i ŵ_i(φ) ℓ_i(θ) (`functional_call`), is scored by SupCon on the clean meta set with its
    true labels, and φ descends that meta loss; the returned training loss Σ_i ŵ_i(φ') ℓ_i(θ) uses the updated
    weights (detached), for the real step of the same optimizer family (SGD).  `inner_step` steps the weight
    net's optimizer as part of the metered step.  Also returns the weights and the per-sample losses.
    """
    params = dict(encoder.named_parameters())
    z = encoder(x)
    losses = supcon_per_sample(torch.stack(z.chunk(2), dim=1), y, temperature=temperature)
    w = wnet(losses.detach())
    w = w / w.sum().clamp_min(1e-8)
    grads = torch.autograd.grad((w * losses).sum(), [params[n] for n in moved], create_graph=True)
    virtual = {**params, **{n: params[n] - lr * g for n, g in zip(moved, grads)}}
    meta_z = functional_call(encoder, virtual, (meta_x,))
    meta_loss = supcon_loss(torch.stack(meta_z.chunk(2), dim=1), meta_y, temperature=temperature)
    wnet_opt.zero_grad(set_to_none=True)
    meta_loss.backward(inputs=list(wnet.parameters()), retain_graph=True)
    inner_step(wnet_opt)
    with torch.no_grad():
        w = wnet(losses.detach())
        w = w / w.sum().clamp_min(1e-8)
    return (w * losses).sum(), w, losses.detach()


def supcon_steps(share: float, steps_left: int, forward_left: int | None, per_step: int, reserve: int) -> int:
    """Stage 5's optimizer steps: `share` of the steps left, fewer when their forward samples (`per_step` each) and
    the `reserve` stage 6 needs would overrun the forward samples left (None: unlimited).

    A meta-weighted step sends its meta batch through the encoder besides its training batch, so a large meta batch
    with a large share can ask for more forward samples than the budget allows (the code before this bound then
    failed at stage 6).  Where the share fits, the steps are the share's, as before.
    """
    wanted = round(share * steps_left)
    if forward_left is None:
        return wanted
    return max(0, min(wanted, (forward_left - reserve) // per_step))


def weighted_contrastive(
    ctx,
    model: Classifier,
    images: np.ndarray,
    labels: np.ndarray,
    meta_images: np.ndarray,
    meta_y: np.ndarray,
    steps: int,
    meta: bool,
) -> np.ndarray:
    """SupCon on two views of the pseudo-labelled images; with `meta`, each sample weighted by the Meta-Weight-Net.

    Returns the last weight every sample received (NaN for samples never drawn).
    """
    hp = ctx.hparams
    feat_dim = model.heads["target"].in_features
    encoder = Encoder(model.backbone, projection_head(feat_dim, hidden=feat_dim)).to(ctx.device)
    wnet = MetaWeightNet().to(ctx.device)
    # the weight net's update is part of each metered step (ctx.inner_step): one virtual, one meta, one real update
    wnet_opt = torch.optim.Adam(wnet.parameters(), lr=hp["meta_lr"], weight_decay=1e-4)
    moved = tail_parameters(encoder, hp["meta_scope"])
    sampler = BatchSampler(len(images), ctx.budget.batch_size, ctx.generator("supcon/batches"))
    meta_sampler = BatchSampler(
        len(meta_images), min(hp["meta_batch"], len(meta_images)), ctx.generator("meta/batches")
    )
    gen = ctx.generator("supcon/views")
    targets, meta_targets = torch.as_tensor(labels, device=ctx.device), torch.as_tensor(meta_y, device=ctx.device)
    weights, sample_losses = np.full(len(images), np.nan), np.full(len(images), np.nan)
    encoder.train()

    def step(_: int) -> torch.Tensor:
        idx = next(sampler)
        x = torch.cat(views(ctx, images[idx], gen))
        if not meta:
            z = encoder(x)
            return supcon_loss(torch.stack(z.chunk(2), dim=1), targets[idx], temperature=hp["temperature"])
        m = next(meta_sampler)
        meta_x = torch.cat(views(ctx, meta_images[m], gen))
        loss, w, per_sample = meta_weighted_loss(
            encoder,
            wnet,
            wnet_opt,
            ctx.inner_step,
            x,
            targets[idx],
            meta_x,
            meta_targets[m],
            hp["temperature"],
            hp["virtual_lr"],
            moved,
        )
        weights[idx] = w.cpu().numpy() * len(idx)  # ŵ·B: 1 for a uniform weighting
        sample_losses[idx] = per_sample.cpu().numpy()
        return loss

    stage = "5-meta-weighted-supcon" if meta else "5-supcon"
    losses = ctx.optimize(
        encoder.parameters(),
        steps,
        step,
        lr=hp["encoder_lr"],
        weight_decay=ctx.hparams["weight_decay"],
        stage=stage,
        optimizer="sgd",
    )
    seen = weights[~np.isnan(weights)]
    ctx.log.stage(
        stage,
        samples=len(images),
        steps=steps,
        temperature=hp["temperature"],
        meta_scope=hp["meta_scope"],
        moved_parameters=len(moved),
        first_loss=round(losses[0], 4) if losses else None,
        last_loss=round(losses[-1], 4) if losses else None,
        weight_mean=round(float(seen.mean()), 4) if meta and len(seen) else None,
        weight_function=weight_function(wnet, sample_losses, ctx.device) if meta and len(seen) else None,
    )
    return weights


def weight_function(wnet: MetaWeightNet, losses: np.ndarray, device: torch.device) -> dict[str, dict[str, float]]:
    """The learned loss -> weight map at the 10th, 50th and 90th percentile of the samples' last losses.

    Rising with the loss, the net favours hard samples (as Meta-Weight-Net learns under class imbalance);
    falling, it discounts them (as it learns under label noise) (Shu et al. 2019, Sec. 4).
    """
    quantiles = np.quantile(losses[~np.isnan(losses)], [0.1, 0.5, 0.9])
    with torch.no_grad():
        w = wnet(torch.as_tensor(quantiles, dtype=torch.float32, device=device)).cpu().numpy()
    return {
        f"q{q}": {"loss": round(float(x), 4), "weight": round(float(v), 4)}
        for q, x, v in zip((10, 50, 90), quantiles, w)
    }


# ---------------------------------------------------------------- stage 6: the linear head


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


def linear_head(ctx, model: Classifier, images: np.ndarray, labels: np.ndarray, steps: int) -> Classifier:
    """A cosine classifier on the frozen, L2-normalised encoder features, trained on the pseudo-labels.

    It starts as the nearest-class-mean classifier, so even a short budget starts from a sensible head.
    """
    with ctx.stage("6-head"):
        feats = torch.from_numpy(l2_normalize(predict_features(model, images, ctx.device))).to(ctx.device)
    y = torch.as_tensor(labels, device=ctx.device)
    head = nearest_mean_head(feats, y, ctx.n_classes)
    sampler = BatchSampler(len(feats), ctx.budget.batch_size, ctx.generator("head/batches"))

    def step(_: int) -> torch.Tensor:
        idx = torch.as_tensor(next(sampler), device=ctx.device)
        return F.cross_entropy(head(feats[idx]), y[idx])

    losses = ctx.optimize(head.parameters(), steps, step, lr=ctx.hparams["head_lr"], stage="6-head")
    ctx.log.stage(
        "6-head",
        samples=len(feats),
        steps=steps,
        first_loss=round(losses[0], 4) if losses else None,
        last_loss=round(losses[-1], 4) if losses else None,
    )
    final = Classifier(nn.Sequential(model.backbone, L2Normalize()), feats.shape[1], {"target": ctx.n_classes})
    final.heads["target"].load_state_dict(head.state_dict())
    return final.to(ctx.device)


@hookimpl
def fairfacebench_methods():
    return [SSLPipeline, SSLPipelineNoMetaWeights, SSLPipelineNoCuration]
