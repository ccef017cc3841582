"""How well a method's stages worked, judged against ground truth only the harness holds.

A method records evidence (`ctx.log.record_evidence(stage, name=array)`):
which pool rows a stage kept, the pseudo-labels it gave, the weights it
learned, the partition it inferred.  After `fit`, the harness compares that
evidence with the pool's hidden truth and the training split's sensitive
groups and stores only these reports.  Evidence names and what they mean:

- ``pool_kept``: bool over pool rows, rows kept by de-duplication;
- ``pool_rows``: pool row per sample (-1 for a sample that is not a pool image);
  alone, the rows a retrieval stage kept;
- ``train_rows`` (with ``pool_rows``): training row per sample (-1 for one that is not a training image),
  judged against the training split's labels (e.g. a stage that curates from the training images);
- ``pseudo_labels`` + ``confident`` (with ``pool_rows``): pseudo-labels and the confidence filter;
- ``pseudo_labels`` + ``weights`` (with ``pool_rows``): learned sample weights;
- ``train_partition``: an inferred group per training row (e.g. clusters);
- ``draw_probabilities`` (with ``train_partition``): the probability the method draws each training row with
  (e.g. re-sampling), judged by the share of each true group it draws against a uniform draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fairfacebench.data import TaskData


def diagnose(evidence: dict[str, dict[str, np.ndarray]], data: TaskData) -> dict[str, dict[str, Any]]:
    """Reports per stage from the evidence a method recorded; stages with nothing to compare are left out."""
    hidden = data.pool.hidden if data.pool is not None else {}
    reports: dict[str, dict[str, Any]] = {}
    for stage, ev in evidence.items():
        out: dict[str, Any] = {}
        if "pool_kept" in ev:
            out.update(dedup_report(ev["pool_kept"], hidden))
        if "pool_rows" in ev and "pseudo_labels" not in ev:
            out.update(retrieval_report(ev["pool_rows"], hidden, data))
        if {"pool_rows", "pseudo_labels", "confident"} <= set(ev):
            out.update(pseudo_label_report(sample_truth(ev, hidden, data), ev["pseudo_labels"], ev["confident"], data))
        if {"pool_rows", "pseudo_labels", "weights"} <= set(ev):
            out.update(weight_report(sample_truth(ev, hidden, data), ev["pseudo_labels"], ev["weights"], data))
        if "train_partition" in ev:
            out.update(partition_report(ev["train_partition"], data.train.a, data.group_names))
            if "draw_probabilities" in ev:
                out.update(draw_report(ev["draw_probabilities"], data.train.a, data.group_names))
        if out:
            reports[stage] = out
    return reports


def true_groups(hidden: dict[str, np.ndarray], data: TaskData) -> np.ndarray | None:
    """True intersectional group codes of pool images (-1 where unknown), or None without hidden truth."""
    attrs = data.task.sensitive
    if not hidden or not all(a in hidden for a in attrs):
        return None
    codes = np.zeros(len(hidden[attrs[0]]), np.int64)
    unknown = np.zeros(len(codes), bool)
    for attr, meta in zip(attrs, data.sensitive_attributes):
        values = hidden[attr]
        unknown |= values < 0
        codes = codes * meta.n + values
    return np.where(unknown, -1, codes)


def dedup_report(kept: np.ndarray, hidden: dict[str, np.ndarray]) -> dict[str, Any]:
    """Against planted near-duplicates: pairs resolved (one removed, its partner kept) and distinct images removed."""
    if "duplicate_of" not in hidden or len(kept) != len(hidden["duplicate_of"]):
        return {}
    source = hidden["duplicate_of"]
    partner = np.full(len(source), -1)
    dups = np.flatnonzero(source >= 0)
    partner[dups], partner[source[dups]] = source[dups], dups
    removed = ~kept
    resolved = removed & (partner >= 0) & kept[np.maximum(partner, 0)]
    return {
        "planted_pairs": len(dups),
        "planted_pairs_resolved": int(resolved.sum()),
        "distinct_images_removed": int((removed & ~resolved).sum()),
    }


def retrieval_report(rows: np.ndarray, hidden: dict[str, np.ndarray], data: TaskData) -> dict[str, Any]:
    """Off-domain (non-face) images before and after retrieval, and the true group mix of what was kept."""
    rows = rows[rows >= 0]
    out: dict[str, Any] = {}
    if "is_face" in hidden:
        out["off_domain_in_pool"] = int((~hidden["is_face"]).sum())
        out["off_domain_kept"] = int((~hidden["is_face"][rows]).sum())
    groups = true_groups(hidden, data)
    if groups is not None:
        g = groups[rows]
        out["per_true_group_kept"] = {
            name: int(c) for name, c in zip(data.group_names, np.bincount(g[g >= 0], minlength=data.n_groups))
        }
    return out


def sample_truth(
    ev: dict[str, np.ndarray], hidden: dict[str, np.ndarray], data: TaskData
) -> tuple[np.ndarray, np.ndarray] | None:
    """True target and group of each sample (-1 where unknown: a non-face, a pool without truth), from the pool's
    hidden truth for pool rows and the training split's labels for training rows; None when nothing is known."""
    rows = ev["pool_rows"]
    truth, group = np.full(len(rows), -1), np.full(len(rows), -1)
    groups = true_groups(hidden, data)
    if data.task.target in hidden and groups is not None:
        in_pool = rows >= 0
        truth[in_pool], group[in_pool] = hidden[data.task.target][rows[in_pool]], groups[rows[in_pool]]
    if "train_rows" in ev:
        train = ev["train_rows"]
        in_train = train >= 0
        truth[in_train], group[in_train] = data.train.y[train[in_train]], data.train.a[train[in_train]]
    return (truth, group) if (truth >= 0).any() else None


def pseudo_label_report(
    found: tuple[np.ndarray, np.ndarray] | None, pseudo: np.ndarray, confident: np.ndarray, data: TaskData
) -> dict[str, Any]:
    """Pseudo-label accuracy on curated images with known truth: all and confident, overall and per true group."""
    if found is None:
        return {"pseudo_label_accuracy": "no ground truth for these images (a pool without hidden truth)"}
    truth, group = found
    known = truth >= 0
    out: dict[str, Any] = {"with_truth": int(known.sum())}
    for name, mask in (("all", known), ("confident", known & confident)):
        correct = pseudo[mask] == truth[mask]
        out[f"accuracy_{name}"] = round(float(correct.mean()), 4) if mask.any() else None
        out[f"accuracy_{name}_per_group"] = {
            g: round(float(correct[group[mask] == k].mean()), 4) if (group[mask] == k).any() else None
            for k, g in enumerate(data.group_names)
        }
        out[f"kept_{name}_per_true_group"] = {g: int((group[mask] == k).sum()) for k, g in enumerate(data.group_names)}
    return out


def weight_report(
    found: tuple[np.ndarray, np.ndarray] | None, pseudo: np.ndarray, weights: np.ndarray, data: TaskData
) -> dict[str, Any]:
    """Mean learned weight of samples whose pseudo-label is right vs wrong (ground truth the method never saw),
    overall and within each true group (weights that follow the group, not the label, show up there)."""
    if found is None:
        return {}
    truth, group = found
    right, wrong = (truth >= 0) & (pseudo == truth), (truth >= 0) & (pseudo != truth)

    def mean(mask: np.ndarray) -> float | None:
        return round(float(weights[mask].mean()), 4) if mask.any() else None

    return {
        "weight_mean_pseudo_label_right": mean(right),
        "weight_mean_pseudo_label_wrong": mean(wrong),
        "weight_mean_per_true_group": {
            g: {"right": mean(right & (group == k)), "wrong": mean(wrong & (group == k))}
            for k, g in enumerate(data.group_names)
        },
    }


def partition_report(partition: np.ndarray, groups: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Adjusted mutual information (Vinh et al., JMLR 2010) between an inferred partition and the true groups, and
    each inferred part's true-group make-up (training rows per true group)."""
    from sklearn.metrics import adjusted_mutual_info_score  # scikit-learn adds a second to every worker's start

    counts = np.zeros((int(partition.max()) + 1, len(names)), np.int64)
    np.add.at(counts, (partition, groups), 1)
    return {
        "ami_with_true_groups": round(float(adjusted_mutual_info_score(groups, partition)), 4),
        "true_groups_per_part": {
            str(part): dict(zip(names, row.tolist())) for part, row in enumerate(counts) if row.any()
        },
    }


def draw_report(probabilities: np.ndarray, groups: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Share of each true group among the rows a method draws, against a uniform draw over the training rows."""
    drawn = np.bincount(groups, weights=probabilities / probabilities.sum(), minlength=len(names))
    uniform = np.bincount(groups, minlength=len(names)) / len(groups)
    return {
        "true_group_share_uniform": {n: round(float(v), 4) for n, v in zip(names, uniform)},
        "true_group_share_drawn": {n: round(float(v), 4) for n, v in zip(names, drawn)},
    }
