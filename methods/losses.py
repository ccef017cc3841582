"""Contrastive losses shared by the self-supervised and fair-contrastive methods.

Every function is pure: embeddings and labels in, a scalar loss out.  Inputs
need not be normalised; each loss L2-normalises its features itself.

Feature layout follows the SupCon reference code: either ``(N, V, D)``, N
images with V augmented views each, or ``(M, D)``, M single-view samples.
Multi-view inputs are flattened view-major (all first views, then all second
views, ...), and per-image labels are repeated for every view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["supcon_loss", "nt_xent_loss", "fair_supcon_loss", "bias_contrastive_loss"]


def _flatten_views(features: Tensor, *labels: Tensor) -> tuple[Tensor, list[Tensor]]:
    """``(N, V, D)`` -> ``(N*V, D)`` view-major, labels repeated per view; ``(M, D)`` passes through."""
    if features.dim() == 2:
        return features, list(labels)
    if features.dim() != 3:
        raise ValueError(f"features must be (N, V, D) views or (M, D) samples, got shape {tuple(features.shape)}")
    n_views = features.shape[1]
    flat = torch.cat(torch.unbind(features, dim=1), dim=0)
    return flat, [lab.reshape(-1).repeat(n_views) for lab in labels]


def _check_labels(name: str, labels: Tensor, n: int) -> Tensor:
    labels = labels.reshape(-1)
    if labels.numel() != n:
        raise ValueError(f"{name} has {labels.numel()} entries but features hold {n} samples (per view)")
    return labels


def _masked_log_softmax(logits: Tensor, keep: Tensor) -> Tensor:
    """``l_ij − log Σ_{a: keep_ia} exp(l_ia)``: a softmax whose denominator runs over ``keep`` only."""
    # A finite fill (not -inf) keeps rows with an empty ``keep`` nan-free in the backward pass.
    return logits - torch.logsumexp(logits.masked_fill(~keep, torch.finfo(logits.dtype).min), dim=1, keepdim=True)


def _mean_over_positives(log_prob: Tensor, positives: Tensor, valid: Tensor, features: Tensor) -> Tensor:
    """Per-anchor ``-(1/|P(i)|) sum_p log_prob_ip`` averaged over ``valid`` anchors.

    An anchor without positives (or without a denominator) has no defined term
    and is left out of the average; a batch with no valid anchor gives a zero
    that stays attached to the graph, so a training step is a no-op, not a crash.
    """
    if not bool(valid.any()):
        return features.sum() * 0.0
    pos = positives[valid]
    per_anchor = -(log_prob[valid].masked_fill(~pos, 0.0)).sum(1) / pos.sum(1)
    return per_anchor.mean()


def supcon_loss(
    features: Tensor, labels: Tensor | None = None, temperature: float = 0.1, base_temperature: float = 0.07
) -> Tensor:
    """Supervised contrastive loss, the ``L^sup_out`` variant (Khosla et al., NeurIPS 2020, Eq. 2).

    ``L = (τ/τ_base) · (1/|I|) · Σ_i −(1/|P(i)|) Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )``

    with z the L2-normalised features, A(i) = every other sample (all views),
    and P(i) ⊂ A(i) the samples sharing i's label.  This is the "sum outside the
    log" variant the paper recommends; the ``L_in`` variant, which averages the
    positives inside the log, is a different loss and is not implemented.

    ``features`` is ``(N, V, D)`` (labels ``(N,)`` repeated per view) or
    ``(M, D)`` with labels ``(M,)``.  With ``labels=None`` on views, P(i) is the
    other views of the same image and the loss is SimCLR's NT-Xent (Chen et
    al. 2020, Eq. 1) scaled by τ/τ_base.  I is the set of anchors with at least
    one positive; anchors without positives are left out of the mean.
    """
    if labels is None and features.dim() != 3:
        raise ValueError("supcon_loss without labels needs (N, V, D) views: positives are the other views of an image")
    ids = torch.arange(features.shape[0], device=features.device) if labels is None else labels
    z, (ids,) = _flatten_views(features, ids)
    ids = _check_labels("labels", ids, z.shape[0])
    z = F.normalize(z, dim=1)
    not_self = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    positives = (ids[:, None] == ids[None, :]) & not_self
    log_prob = _masked_log_softmax(z @ z.T / temperature, not_self)
    loss = _mean_over_positives(log_prob, positives, positives.any(1), features)
    return (temperature / base_temperature) * loss


def supcon_per_sample(
    features: Tensor, labels: Tensor, temperature: float = 0.1, base_temperature: float = 0.07
) -> Tensor:
    """SupCon ``L^sup_out`` per image: the mean over its views of their anchor terms; ``features`` (N, V≥2, D).

    With two or more views every anchor has a positive (its other views), so the
    mean of this vector is exactly :func:`supcon_loss`; Meta-Weight-Net weights it.
    """
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"supcon_per_sample needs (N, V>=2, D) views, got shape {tuple(features.shape)}")
    n, n_views = features.shape[:2]
    z, (ids,) = _flatten_views(features, _check_labels("labels", labels, n))
    z = F.normalize(z, dim=1)
    not_self = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    positives = (ids[:, None] == ids[None, :]) & not_self
    log_prob = _masked_log_softmax(z @ z.T / temperature, not_self)
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(1) / positives.sum(1)
    return (temperature / base_temperature) * per_anchor.view(n_views, n).mean(0)


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's normalised temperature-scaled cross entropy (Chen et al., ICML 2020, Eq. 1).

    For a batch of N images and their 2N views, ``z = [z1; z2]`` L2-normalised,
    ``ℓ(i, j) = −log( exp(z_i·z_j/τ) / Σ_{k≠i} exp(z_i·z_k/τ) )`` and
    ``L = (1/2N) Σ_{k=1..N} [ℓ(k, k+N) + ℓ(k+N, k)]``.
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (N, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, partner)


def fair_supcon_loss(
    features: Tensor,
    targets: Tensor,
    sensitive: Tensor,
    temperature: float = 0.1,
    base_temperature: float = 0.07,
    cross_group_positives: bool = False,
    group_norm: bool = False,
) -> Tensor:
    """Fair supervised contrastive loss, FSCL (Park et al., "Fair Contrastive Learning for Facial Attribute
    Classification", CVPR 2022).

    Implemented as in the official code (github.com/sungho-CoolG/FSCL,
    ``losses.py``, ``method == "FSCL"``):

    ``L = (τ/τ_base) · (1/|I|) · Σ_i −(1/|P(i)|) Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{n∈N(i)∩S(i)} exp(z_i·z_n/τ) )``

    - P(i): other samples with the anchor's target label (all views);
    - N(i)∩S(i): samples with a *different* target and the *same* sensitive
      attribute as the anchor.  Negatives from other sensitive groups are left
      out of the denominator, so the loss gains nothing from pushing groups
      apart, i.e. from encoding the sensitive attribute.  Positives are not in
      the denominator either (unlike SupCon).

    Options:

    - ``cross_group_positives=True`` restricts P(i) to same target, *different*
      sensitive attribute (only cross-group pairs are pulled together).  This
      is a variant, not the official default.
    - ``group_norm=True`` is the official "FSCL+" group-wise normalisation,
      reproduced from the code: anchor i's term becomes
      ``−(τ/τ_base) · (M/8) · Σ_{p∈P(i)} log(...) / (c_i (c_i + 1))`` with M the
      number of samples (all views) and c_i = |P(i) ∩ S(i)| the positives from
      the anchor's own (target, sensitive) group, so anchors of small
      demographic groups weigh more.
      Anchors with c_i = 0 (where the official code divides by zero) are left
      out.  Incompatible with ``cross_group_positives`` (c_i would always be 0).

    Anchors with no positive or no same-sensitive negative have no defined term
    and are left out of the mean (the official code returns nan, resp. drops
    the denominator, for them).
    """
    if group_norm and cross_group_positives:
        raise ValueError("group_norm counts same-group positives, which cross_group_positives=True removes")
    z, (y, s) = _flatten_views(features, targets, sensitive)
    y = _check_labels("targets", y, z.shape[0])
    s = _check_labels("sensitive", s, z.shape[0])
    z = F.normalize(z, dim=1)
    not_self = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    same_y = y[:, None] == y[None, :]
    same_s = s[:, None] == s[None, :]
    positives = same_y & not_self
    if cross_group_positives:
        positives &= ~same_s
    fair_negatives = ~same_y & same_s
    log_prob = _masked_log_softmax(z @ z.T / temperature, fair_negatives)
    valid = positives.any(1) & fair_negatives.any(1)
    scale = temperature / base_temperature
    if not group_norm:
        return scale * _mean_over_positives(log_prob, positives, valid, features)
    same_group = (positives & same_s).sum(1)
    valid = valid & (same_group > 0)
    if not bool(valid.any()):
        return features.sum() * 0.0
    c = same_group[valid].to(z.dtype)
    summed = log_prob[valid].masked_fill(~positives[valid], 0.0).sum(1)
    per_anchor = -summed / (c * (c + 1)) * (z.shape[0] / 8)
    return scale * per_anchor.mean()


def bias_contrastive_loss(features: Tensor, targets: Tensor, bias: Tensor, temperature: float = 0.07) -> Tensor:
    """Bias-contrastive loss, BiasCon (Hong & Yang, "Unbiased Classification through Bias-Contrastive and
    Bias-Balanced Learning", NeurIPS 2021), as in the official code (github.com/grayhong/bias-contrastive-learning,
    ``debias/losses/bias_contrastive.py``):

    ``L = (1/M) · Σ_i −(1/|P(i)|) Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )``

    with z the L2-normalised features of all M samples (all views) and
    P(i) = {p ≠ i : y_p = y_i, b_p ≠ b_i}: a positive shares the anchor's
    target and has a *different* bias label, so pulling positives together
    cannot use the bias.  The anchor's own other views share its bias and are
    not positives; every other sample, positive or not, is in the denominator
    (as in SupCon).  An anchor without positives contributes 0 and still counts
    in the mean over all M anchors, as in the official code; there is no
    τ/τ_base factor (the code's base temperature is unused).

    ``features`` is ``(N, V, D)`` (labels ``(N,)`` repeated per view) or
    ``(M, D)`` with labels ``(M,)``.
    """
    z, (y, b) = _flatten_views(features, targets, bias)
    y = _check_labels("targets", y, z.shape[0])
    b = _check_labels("bias", b, z.shape[0])
    z = F.normalize(z, dim=1)
    not_self = ~torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    positives = (y[:, None] == y[None, :]) & (b[:, None] != b[None, :])
    log_prob = _masked_log_softmax(z @ z.T / temperature, not_self)
    per_anchor = -(log_prob.masked_fill(~positives, 0.0)).sum(1) / positives.sum(1).clamp(min=1)
    return per_anchor.mean()
