"""Transfer: a run's model evaluated on other datasets' test splits, read through the shared attribute vocabulary.

Every dataset plugin declares how its attributes map onto the shared concepts of `data.CONCEPTS` (its
`vocabulary`).  A task of dataset A (target T, sensitive S1..Sk) is evaluated on dataset B when

- T maps one-to-one onto a concept C (the model's classes are C's, perhaps in another order) and an attribute of B
  maps onto C; B's test rows whose class maps to no class of C are left out;
- each Si maps onto a concept Di that an attribute of B maps onto too (the finest when several do); the groups are
  the classes of D1 x ... x Dk, on B's test split and on the run's own test split alike (`in_domain`), so the two
  columns of a transfer table compare the same metric over the same groups.

Otherwise `pair` refuses before any training, naming the attribute and the two datasets.  A reading a plugin
declares approximate (`data.ConceptMap.approximate`, CelebA's Young as under 40) pairs like an exact one, an exact
counterpart first, and its note goes into the record's entry (`SharedAttribute.approximate`).  The model's scores are
checked and scored like the test split's (`compute_metrics`, bootstrap intervals); B's images are predicted with
the selection and test images (`fitting.predict_under_meter`, in this process or in a sealed child, which gets the
images only: `TransferInput`), and scored here.  Rules and choices: docs/DATASETS.md ("transfer").
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fairfacebench.data import CONCEPTS, UNMAPPED, Split, TaskData, check_vocabulary, concept_codes, concept_map
from fairfacebench.errors import ConfigError, DataError, PluginError
from fairfacebench.metrics.bootstrap import bootstrap_intervals
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.record import RunRecord, SharedAttribute, SharedGroupsScore, TransferResult
from fairfacebench.spec import RunSpec


@dataclass(frozen=True)
class Reading:
    """One attribute of a dataset read as a shared concept: per class code, the concept's class code (or UNMAPPED)."""

    attribute: str
    concept: str
    classes: tuple[str, ...]  # the attribute's classes
    codes: tuple[int, ...]
    approximate: str = ""  # why the attribute only approximates the concept ('': an exact reading)

    @property
    def one_to_one(self) -> bool:
        return sorted(self.codes) == list(range(len(CONCEPTS[self.concept].classes)))

    def apply(self, labels: np.ndarray) -> np.ndarray:
        """Concept codes of attribute codes; a row the attribute does not apply to (a negative code) stays UNMAPPED."""
        table = np.asarray((*self.codes, UNMAPPED), dtype=np.int64)
        return table[np.where(labels < 0, len(self.codes), labels)]

    def invert(self, concept_codes: np.ndarray) -> np.ndarray:
        """Attribute codes of concept codes (a one-to-one reading), UNMAPPED kept."""
        table = np.asarray((*np.argsort(self.codes), UNMAPPED), dtype=np.int64)
        return table[np.where(concept_codes < 0, len(self.codes), concept_codes)]

    def as_dict(self) -> dict[str, str | None]:
        names = CONCEPTS[self.concept].classes
        return {c: None if code == UNMAPPED else names[code] for c, code in zip(self.classes, self.codes)}


def reading(plugin: Any, concept: str, attribute: str) -> Reading:
    attr = plugin.attributes[attribute]
    why = concept_map(plugin.vocabulary, concept, attribute).approximate
    return Reading(attribute, concept, attr.classes, concept_codes(plugin.vocabulary, concept, attr), why)


def shared_attribute(own: Reading, theirs: Reading) -> SharedAttribute:
    return SharedAttribute(
        own.concept,
        own.attribute,
        own.as_dict(),
        theirs.attribute,
        theirs.as_dict(),
        own.approximate or None,
        theirs.approximate or None,
    )


@dataclass(frozen=True)
class Pairing:
    """How a task of dataset `source` reads the test labels of dataset `dataset`: (own, theirs) readings of the target
    and of each sensitive attribute, and the task `dataset` is loaded with when its splits depend on the task."""

    source: str
    task: str
    dataset: str
    target: tuple[Reading, Reading]
    sensitive: tuple[tuple[Reading, Reading], ...]
    loaded_task: str | None = None

    @property
    def group_names(self) -> tuple[str, ...]:
        """The shared groups, named like `data.group_codes` names intersectional groups ('female|white')."""
        names = [""]
        for own, _ in self.sensitive:
            names = [f"{p}|{c}" if p else c for p in names for c in CONCEPTS[own.concept].classes]
        return tuple(names)

    @property
    def groups_invertible(self) -> bool:
        """Whether the run's own groups can be told from the shared ones (each sensitive reading one-to-one)."""
        return all(own.one_to_one for own, _ in self.sensitive)


def pair(source: Any, task: Any, other: Any) -> Pairing:
    """How `task` of dataset plugin `source` reads `other`'s test labels; a ConfigError names what does not map."""
    head = f"--eval-on {other.name}: {source.name} task '{task.name}'"
    if other.name == source.name:
        raise ConfigError(f"{head} trains on {other.name}: its test split is the run's own test split already")
    for plugin in (source, other):
        if not plugin.vocabulary:
            raise ConfigError(
                f"{head} cannot be evaluated on {other.name}: {plugin.name} declares no shared vocabulary "
                "(docs/DATASETS.md, transfer)"
            )
        try:
            check_vocabulary(plugin.name, plugin.attributes, plugin.vocabulary)
        except ValueError as exc:
            raise PluginError(str(exc)) from None
    target = _target(source, task.target, other, head)
    sensitive = tuple(_sensitive(source, attr, other, head) for attr in task.sensitive)
    needed = {target[1].attribute, *(theirs.attribute for _, theirs in sensitive)}
    return Pairing(source.name, task.name, other.name, target, sensitive, _loaded_task(other, needed, head))


def _concepts_of(plugin: Any, attribute: str) -> list[str]:
    return [c for c in CONCEPTS if attribute in plugin.vocabulary.get(c, {})]


def _covered(plugin: Any) -> str:
    def named(concept: str, attribute: str) -> str:
        return attribute + (" (approximate)" if concept_map(plugin.vocabulary, concept, attribute).approximate else "")

    return ", ".join(
        f"{c} <- {'/'.join(named(c, a) for a in plugin.vocabulary[c])}" for c in CONCEPTS if c in plugin.vocabulary
    )


def _counterpart(plugin: Any, concept: str) -> Reading | None:
    """The attribute of `plugin` read as `concept`: exact before approximate, then one-to-one before many-to-one,
    then the first declared."""
    readings = [reading(plugin, concept, a) for a in plugin.vocabulary.get(concept, {})]
    return min(readings, key=lambda r: (bool(r.approximate), not r.one_to_one), default=None)


def _target(source: Any, attribute: str, other: Any, head: str) -> tuple[Reading, Reading]:
    """The model predicts the target's classes: only a one-to-one reading turns them into another dataset's."""
    own = [r for r in (reading(source, c, attribute) for c in _concepts_of(source, attribute)) if r.one_to_one]
    if not own:
        raise ConfigError(
            f"{head}: its target '{attribute}' maps one-to-one onto no shared concept, so its predicted classes "
            f"mean nothing in {other.name} ({source.name}'s vocabulary: {_covered(source)})"
        )
    for r in own:
        theirs = _counterpart(other, r.concept)
        if theirs is not None:
            return r, theirs
    raise ConfigError(
        f"{head}: its target '{attribute}' ({', '.join(r.concept for r in own)}) has no counterpart in "
        f"{other.name}, whose vocabulary covers {_covered(other)}"
    )


def _sensitive(source: Any, attribute: str, other: Any, head: str) -> tuple[Reading, Reading]:
    """The finest concept both datasets read the sensitive attribute as (ties: `CONCEPTS` order)."""
    fits = [
        (reading(source, c, attribute), theirs)
        for c in _concepts_of(source, attribute)
        if (theirs := _counterpart(other, c)) is not None
    ]
    if not fits:
        concepts = ", ".join(_concepts_of(source, attribute)) or "no shared concept"
        raise ConfigError(
            f"{head}: its sensitive attribute '{attribute}' ({concepts}) has no counterpart in {other.name}, "
            f"whose vocabulary covers {_covered(other)}"
        )
    return max(fits, key=lambda fit: len(CONCEPTS[fit[0].concept].classes))


def _loaded_task(other: Any, attributes: set[str], head: str) -> str | None:
    """A dataset whose splits depend on the task is loaded with its first task that holds every attribute read."""
    if not other.splits_per_task:
        return None
    for task in other.tasks:
        if attributes <= {task.target, *task.sensitive}:
            return task.name
    raise ConfigError(
        f"{head}: {other.name} loads its splits per task and none of its tasks "
        f"{[t.name for t in other.tasks]} holds {sorted(attributes)} together"
    )


# ---------------------------------------------------------------- labels and scores


def combine(parts: list[np.ndarray], sizes: list[int], n: int) -> np.ndarray:
    """Intersectional codes of per-attribute codes (first attribute most significant, as `data.group_codes`);
    UNMAPPED where any part is."""
    codes = np.zeros(n, dtype=np.int64)
    for part, size in zip(parts, sizes):
        codes = codes * size + part
    unmapped = np.zeros(n, dtype=bool)
    for part in parts:
        unmapped |= part < 0
    return np.where(unmapped, UNMAPPED, codes)


def split_groups(codes: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    """Per-attribute codes of intersectional group codes (the inverse of `combine`)."""
    parts = []
    for size in reversed(sizes):
        parts.append(codes % size)
        codes = codes // size
    return parts[::-1]


def _concept_sizes(pairing: Pairing) -> list[int]:
    return [len(CONCEPTS[own.concept].classes) for own, _ in pairing.sensitive]


def in_domain_groups(pairing: Pairing, a: np.ndarray) -> np.ndarray:
    """Shared group of each row of the run's own split, from its group codes `a` (UNMAPPED: left out)."""
    own_sizes = [len(own.codes) for own, _ in pairing.sensitive]
    parts = [own.apply(p) for (own, _), p in zip(pairing.sensitive, split_groups(a, own_sizes))]
    return combine(parts, _concept_sizes(pairing), len(a))


def transfer_labels(pairing: Pairing, labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list]:
    """Of the other dataset's rows: the target in the model's class codes, the shared group, and each sensitive
    attribute's concept codes (UNMAPPED where a class maps to none)."""
    own, theirs = pairing.target
    y = own.invert(theirs.apply(labels[theirs.attribute]))
    parts = [t.apply(labels[t.attribute]) for _, t in pairing.sensitive]
    return y, combine(parts, _concept_sizes(pairing), len(y)), parts


def own_groups(pairing: Pairing, parts: list[np.ndarray]) -> np.ndarray:
    """The run's own group codes of rows given per concept (one-to-one readings), for predictors that read groups."""
    own_parts = [own.invert(p) for (own, _), p in zip(pairing.sensitive, parts)]
    return combine(own_parts, [len(own.codes) for own, _ in pairing.sensitive], len(parts[0]))


def score(
    y: np.ndarray,
    y_hat: np.ndarray,
    groups: np.ndarray,
    left_out: int,
    names: tuple[str, ...],
    data: TaskData,
    spec: RunSpec,
) -> SharedGroupsScore:
    """Metrics over the shared groups, with the test split's bootstrap intervals."""
    report = compute_metrics(y, y_hat, groups, names, n_classes=data.n_classes, class_names=data.target_classes)
    intervals = None
    if spec.bootstrap:
        intervals = bootstrap_intervals(
            y, y_hat, groups, len(names), data.n_classes, n_resamples=spec.bootstrap, seed=spec.seed, group_names=names
        )
    return SharedGroupsScore(len(y), left_out, report.summary, report.to_dict(), intervals)


@dataclass(frozen=True)
class TransferTarget:
    """One dataset a run's model is evaluated on: how the run's task reads it, where it lives, what it holds."""

    pairing: Pairing
    root: str | None
    options: dict[str, Any]
    fingerprint: str
    content: str = ""  # the digest of its data's bytes (`DatasetPlugin.content`; "" for generated data)

    @property
    def content_part(self) -> str:
        """Its key in the content digests of the runs evaluated on it (`RunSpec.content`)."""
        return f"eval-on {self.pairing.dataset}"

    def holds(self, result: TransferResult) -> bool:
        """Whether a stored evaluation is this one (same data, options and readings)."""
        target, sensitive = self.shared()
        return (result.data_fingerprint, result.dataset_options, result.target, result.sensitive) == (
            self.fingerprint,
            self.options,
            target,
            sensitive,
        )

    def shared(self) -> tuple[SharedAttribute, list[SharedAttribute]]:
        return shared_attribute(*self.pairing.target), [shared_attribute(*s) for s in self.pairing.sensitive]


@dataclass(frozen=True)
class TransferInput:
    """What a run predicts of another dataset's test split, and what only the harness holds to score it: the kept
    rows' images (and, for a predictor that reads groups, the run's own group codes of them) are predicted like
    test images, in this process or in a sealed child; their labels, shared groups and ids stay here."""

    target: TransferTarget
    images: np.ndarray
    given_groups: np.ndarray | None  # the run's own group codes, for a predictor that reads groups at inference
    y: np.ndarray  # in the model's class codes
    groups: np.ndarray  # shared groups
    ids: np.ndarray
    left_out: int  # rows whose classes the shared concepts do not cover

    @property
    def request(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(images, groups or None) as `fitting.predict_under_meter` asks the predictor."""
        return self.images, self.given_groups

    @property
    def split(self) -> str:
        """How errors about its scores name it."""
        return f"{self.target.pairing.dataset} test"


def transfer_input(target: TransferTarget, test: Split, at_inference: bool, method: str) -> TransferInput:
    """The rows of `test` (another dataset's test split) the shared concepts cover, to predict and score."""
    pairing = target.pairing
    if at_inference and not pairing.groups_invertible:  # preflight refuses such a plan; this guards direct callers
        raise ConfigError(f"{method} reads each image's group at inference, which {pairing.dataset} cannot give")
    y, groups, parts = transfer_labels(pairing, test.labels)
    rows = np.flatnonzero((y >= 0) & (groups >= 0))
    if not len(rows):
        raise DataError(
            f"transfer to {pairing.dataset}: none of its {len(y)} test rows has classes the shared concepts cover"
        )
    images = test.images if len(rows) == len(y) else test.images[rows]
    given = own_groups(pairing, [p[rows] for p in parts]) if at_inference else None
    return TransferInput(target, images, given, y[rows], groups[rows], test.ids[rows], len(y) - len(rows))


def score_transfer(
    asked: TransferInput,
    scores: np.ndarray,
    predict_s: float,
    data: TaskData,
    test_scores: np.ndarray,
    spec: RunSpec,
) -> tuple[TransferResult, dict[str, np.ndarray]]:
    """Checked scores of `asked` (predicted in `predict_s` seconds) and the run's own test scores, both over the
    shared groups: the record's entry and the prediction arrays."""
    started = time.perf_counter()
    target = asked.target
    pairing = target.pairing
    names = pairing.group_names
    transfer = score(asked.y, scores.argmax(1), asked.groups, asked.left_out, names, data, spec)
    own = in_domain_groups(pairing, data.test.a)
    kept = own >= 0
    in_domain = score(data.test.y[kept], test_scores.argmax(1)[kept], own[kept], int((~kept).sum()), names, data, spec)
    shared_target, shared_sensitive = target.shared()
    result = TransferResult(
        dataset=pairing.dataset,
        data_fingerprint=target.fingerprint,
        dataset_options=dict(target.options),
        loaded_task=pairing.loaded_task,
        target=shared_target,
        sensitive=shared_sensitive,
        group_names=list(names),
        in_domain=in_domain,
        transfer=transfer,
        eval_time_s=round(predict_s + time.perf_counter() - started, 3),
    )
    prefix = f"transfer.{pairing.dataset}."
    arrays = {
        prefix + "scores": scores.astype(np.float32),
        prefix + "y": asked.y,
        prefix + "groups": asked.groups,
        prefix + "ids": asked.ids.astype(str),
    }
    return result, arrays


@dataclass(frozen=True)
class TransferPlan:
    """Every transfer evaluation a plan asks for, per (dataset, task) of its runs."""

    targets: tuple[TransferTarget, ...] = ()

    def for_spec(self, spec: RunSpec) -> list[TransferTarget]:
        return [t for t in self.targets if (t.pairing.source, t.pairing.task) == (spec.dataset, spec.task)]

    def with_content(self, specs: list[RunSpec]) -> list[RunSpec]:
        """`specs` with the content digest of each dataset they are evaluated on beside their own (outside the run
        id, as `eval_on` is): a finished run whose transfer data holds other bytes now is computed again."""
        return [
            replace(
                spec, content={**spec.content, **{t.content_part: t.content for t in self.for_spec(spec) if t.content}}
            )
            for spec in specs
        ]

    def lacking(self, record: RunRecord) -> list[str]:
        """The datasets this plan evaluates a finished run on that its record holds no such evaluation of: the model
        is not stored, so only computing the run again adds them."""
        held = record.transfer or {}
        return [
            t.pairing.dataset
            for t in self.for_spec(record.spec)
            if t.pairing.dataset not in held or not t.holds(held[t.pairing.dataset])
        ]
