"""The run record: one typed, versioned model of what a run leaves in the result store.

The store alone turns records into JSON and back (`store.ResultStore`): it
writes `to_plain(record)` and reads with `parse_record`, which migrates an
older schema first (`migrate`, the one place that knows old layouts) and then
checks every field against its type, naming the first wrong one.  Everything
else (runner, leaderboard, site, exports, `load_runs`) works with `RunRecord`
attributes.  A record never carries where its author's files live: absolute
paths are written as their last part (`published`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal

from fairfacebench.method_code import MethodCode
from fairfacebench.spec import RunSpec
from fairfacebench.typed import PlainTypeError, from_plain, to_plain

# 1: records before the typed model (no "schema" field); 2: the typed model.
RECORD_SCHEMA = 2


@dataclass(frozen=True)
class MethodInfo:
    """The method's metadata as the run saw it (shown on the leaderboard)."""

    name: str
    description: str = ""
    citation: str = ""
    requires: str = ""
    ablation_of: str | None = None  # the system this method ablates (a method class's `ablation_of`)


@dataclass(frozen=True)
class TaskInfo:
    """The task's attributes, classes, groups and split sizes."""

    target: str
    sensitive: list[str]
    target_classes: list[str]
    group_names: list[str]
    sizes: dict[str, int]


@dataclass(frozen=True)
class SharedAttribute:
    """A task attribute read through a shared concept (`data.CONCEPTS`) on both datasets of a transfer evaluation."""

    concept: str
    source_attribute: str
    source_classes: dict[str, str | None]  # class of the run's attribute -> concept class (None: rows left out)
    attribute: str
    classes: dict[str, str | None]  # class of the other dataset's attribute -> concept class (None: rows left out)
    # why a side's reading only approximates the concept (its dataset plugin's `ConceptMap.approximate`); None: exact
    source_approximate: str | None = None
    approximate: str | None = None

    OMIT_WHEN_NONE = ("source_approximate", "approximate")  # exact readings keep the plain form they always had

    def approximations(self, source: str, dataset: str) -> list[str]:
        """'DATASET ATTRIBUTE as CONCEPT: why' for each side read approximately (`source`: the run's dataset)."""
        sides = ((source, self.source_attribute, self.source_approximate), (dataset, self.attribute, self.approximate))
        return [f"{name} {attribute} as {self.concept}: {why}" for name, attribute, why in sides if why]


@dataclass(frozen=True)
class SharedGroupsScore:
    """A test split scored over the shared groups: rows kept and left out (a class the concept does not cover),
    summary metrics, the per-group report and bootstrap intervals."""

    n: int
    left_out: int
    metrics: dict[str, float | None]
    per_group: dict[str, Any]
    intervals: dict[str, Any] | None = None


@dataclass(frozen=True)
class TransferResult:
    """The run's model on another dataset's test split (`transfer`) and, for comparison, on its own test split read
    through the same concepts (`in_domain`), both over the shared groups `group_names`."""

    dataset: str
    data_fingerprint: str
    dataset_options: dict[str, Any]
    loaded_task: str | None  # the task the dataset was loaded with (datasets whose splits depend on the task)
    target: SharedAttribute
    sensitive: list[SharedAttribute]
    group_names: list[str]
    in_domain: SharedGroupsScore
    transfer: SharedGroupsScore
    eval_time_s: float

    def approximations(self, source: str) -> list[str]:
        """Each reading of this evaluation that only approximates its concept, and why (`source`: the run's dataset)."""
        shared = (self.target, *self.sensitive)
        return [note for attribute in shared for note in attribute.approximations(source, self.dataset)]


@dataclass(frozen=True)
class Isolation:
    """Where a run's method fitted and predicted: 'sealed', in a sandboxed child process that held only the arrays
    its declared labels allow (`sealed.py`), or 'in-process', in the harness's own process with the plugin trusted.
    Provenance, not part of the run id: a sealed run gives the same numbers as the same run in-process."""

    mode: Literal["sealed", "in-process"]
    sandbox: str | None = None  # how the child was sealed (sealed runs)


Metrics = dict[str, dict[str, float | None]]  # split ('val', 'test') -> metric name -> value (None: undefined)


@dataclass(kw_only=True)
class RunRecord:
    """One run: its spec and provenance; when ok its metrics, budget report and what the method did; when failed
    its error.  Fields follow the order of `record.json`."""

    run_id: str
    comparison_id: str
    spec: RunSpec
    method_info: MethodInfo
    method_code: MethodCode | None = None  # None: recorded before code fingerprints (or an unknown method)
    task_info: TaskInfo | None = None
    dataset_info: dict[str, Any] | None = None
    # (target class|group) cells of validation and test with fewer than data.MIN_CELL_IMAGES images (split -> cell
    # -> images), whose group metrics are noise; None: every cell has enough, or recorded before this check.
    tiny_groups: dict[str, dict[str, int]] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    host: dict[str, Any] = field(default_factory=dict)
    isolation: Isolation | None = None  # None: recorded before sealed runs existed, so in the harness's process
    status: Literal["ok", "failed"]
    metrics: Metrics | None = None
    test_intervals: dict[str, Any] | None = None
    per_group: dict[str, dict[str, Any]] | None = None
    metric_definitions: dict[str, str] | None = None
    budget_report: dict[str, Any] | None = None
    labels_used: str = ""
    supervision: dict[str, Any] | None = None
    labels_touched: list[str] = field(default_factory=list)
    variant: str | None = None
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: dict[str, Any] = field(default_factory=dict)
    vlm: dict[str, Any] | None = None
    transfer: dict[str, TransferResult] | None = None  # other dataset -> its evaluation (`fairbench run --eval-on`)
    error: str | None = None
    traceback: str | None = None
    wall_time_s: float | None = None
    started_at: str | None = None  # ISO 8601 UTC, when the run started (None: recorded before timestamps, or a crash)
    ended_at: str | None = None  # ISO 8601 UTC, when its record was made
    config: dict[str, Any] | None = None
    recomputed_from_predictions: list[str] | None = None  # test metrics the leaderboard added from predictions
    migrated: dict[str, Any] | None = None  # what scripts/migrate_store.py changed
    schema: int = RECORD_SCHEMA

    # Fields an ok record has and a failed one leaves out of its JSON (and the other way round).
    OMIT_WHEN_NONE = (
        "metrics",
        "test_intervals",
        "per_group",
        "metric_definitions",
        "budget_report",
        "supervision",
        "transfer",
        "error",
        "traceback",
        "recomputed_from_predictions",
        "migrated",
    )

    def __post_init__(self) -> None:
        if self.status == "ok":
            missing = [k for k in ("metrics", "per_group", "budget_report") if getattr(self, k) is None]
            missing += [f"metrics.{s}" for s in ("val", "test") if self.metrics is not None and s not in self.metrics]
            missing += ["per_group.test"] if self.per_group is not None and "test" not in self.per_group else []
            if missing:
                raise PlainTypeError(f"an ok record needs field(s) {missing}")
        elif self.error is None:
            raise PlainTypeError("a failed record needs its 'error'")

    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def trial(self) -> int:
        return self.spec.trial

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def sealed(self) -> bool:
        """Whether the run's method fitted and predicted in a sealed child (a record without `isolation` did not)."""
        return self.isolation is not None and self.isolation.mode == "sealed"

    @property
    def isolation_mode(self) -> str:
        """'sealed' or 'in-process': where the run's method ran (a record without `isolation` ran in-process)."""
        return "in-process" if self.isolation is None else self.isolation.mode

    def test_metric(self, name: str) -> float | None:
        """A test metric of an ok run (None when undefined or absent, or for a failed run)."""
        return (self.metrics or {}).get("test", {}).get(name)

    def val_metric(self, name: str) -> float | None:
        return (self.metrics or {}).get("val", {}).get(name)

    @property
    def test_groups(self) -> list[dict[str, Any]]:
        """The per-group rows of the test split (empty for a failed run)."""
        return ((self.per_group or {}).get("test") or {}).get("per_group", [])

    def transfer_metric(self, dataset: str, name: str, split: str = "transfer") -> float | None:
        """A metric of the transfer evaluation on `dataset`: on its test split ('transfer') or on the run's own test
        split over the same shared groups ('in_domain'); None when undefined or not evaluated."""
        result = (self.transfer or {}).get(dataset)
        return None if result is None else getattr(result, split).metrics.get(name)

    def test_interval(self, name: str) -> list | None:
        """The run's bootstrap interval of a test metric, if it has one."""
        return ((self.test_intervals or {}).get("intervals") or {}).get(name)


def parse_record(data: Any) -> RunRecord:
    """A record from plain JSON data of any schema: migrated, then checked field by field (PlainTypeError)."""
    if not isinstance(data, dict):
        kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
        raise PlainTypeError(f"it holds {'null' if data is None else kinds.get(type(data), 'a value')}, not a record")
    return from_plain(RunRecord, migrate(data))


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Plain data of an older schema brought to RECORD_SCHEMA (a copy; records of the current schema as they are).

    Schema 1 (records before the typed model) may lack `spec.method_version` (written before versions existed:
    version 0), `spec.threads` (ran with the torch threads its host recorded), later spec fields (their defaults),
    `method_info.name` (the spec's method) and `method_info.ablation_of` (all built-in ablations then were named
    `system:variant`).
    """
    schema = data.get("schema", 1)
    if schema == RECORD_SCHEMA:
        return data
    if schema != 1:
        raise PlainTypeError(f"schema {schema!r} is not one this fairbench reads (1 to {RECORD_SCHEMA}): upgrade it")
    out = dict(data)
    spec = dict(out["spec"]) if isinstance(out.get("spec"), dict) else out.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("method_version", 0)
        spec.setdefault("threads", int((out.get("host") or {}).get("cpu_threads") or 1))
        out["spec"] = spec
    info = dict(out["method_info"]) if isinstance(out.get("method_info"), dict) else out.get("method_info")
    if isinstance(info, dict) and isinstance(spec, dict):
        info.setdefault("name", spec.get("method"))
        if "ablation_of" not in info and isinstance(info["name"], str):
            info["ablation_of"] = info["name"].split(":", 1)[0] if ":" in info["name"] else None
        out["method_info"] = info
    out["schema"] = RECORD_SCHEMA
    return out


def published(value: Any) -> Any:
    """Plain record data with every absolute path written as its last part (a folder's or a file's name), so a
    published record names files without its author's file system."""
    if isinstance(value, dict):
        return {k: published(v) for k, v in value.items()}
    if isinstance(value, list):
        return [published(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and "\n" not in value and " " not in value:
        return os.path.basename(value.rstrip("/")) or value
    return value


LISTING_LIMIT = 10  # entries of a plugin's long listing a record keeps (the rest: counted and hashed)


def listings_cut(value: Any, limit: int = LISTING_LIMIT) -> Any:
    """A plugin's info (e.g. a dataset's) with every list longer than `limit` cut to its first `limit` entries plus
    its length and a hash of the whole, so each of hundreds of records does not repeat a long listing (`fairbench
    data check` prints them whole)."""
    if isinstance(value, dict):
        return {k: listings_cut(v, limit) for k, v in value.items()}
    if isinstance(value, list) and len(value) > limit:
        text = json.dumps(value, sort_keys=True, default=str)
        return {
            "first": [listings_cut(v, limit) for v in value[:limit]],
            "count": len(value),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    if isinstance(value, list):
        return [listings_cut(v, limit) for v in value]
    return value


def record_plain(record: RunRecord) -> dict[str, Any]:
    """What the store writes: the record as plain data, paths published."""
    return published(to_plain(record))
