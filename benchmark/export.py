"""Export a result store to MLflow: one MLflow run per fairbench run, with its params, metrics and per-group table.

MLflow is an optional extra (`pip install 'fairfacebench[mlflow]'`).  The
default target is a local store next to the results (SQLite metadata,
artifacts as files); `tracking_uri` names any other.  Each MLflow run carries the
fairbench run id, its record's digest (`fairbench.record`), its information tier and flags as tags; a run exported
before with the same digest is not exported twice, one whose record changed since (recomputed, migrated, other
flags) replaces its earlier MLflow run.  A run starts and ends when its record says (`started_at`, `ended_at`);
a record from before those fields gets the export time, and the tag `fairbench.times` says so.  The dataset's
options (`dataset_option.*`) and the budget's settings (`budget.*`) are params; each training stage's loss curve
is the metric `loss.<stage>` over its steps.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fairfacebench.errors import ConfigError
from fairfacebench.plain import spreadsheet_safe
from fairfacebench.record import RunRecord
from fairfacebench.results import run_row, stored_predictions
from fairfacebench.store import ResultStore, record_json

PARAMS = (
    "dataset",
    "task",
    "method",
    "method_version",
    "trial",
    "seed",
    "budget",
    "steps",
    "batch_size",
    "resolution",
    "backbone",
    "weights",
    "mix",
    "vlm",
    "pool",
    "data_fingerprint",
    "labels_used",
    "variant",
)
GROUP_COLUMNS = ("split", "group", "n", "positives", "acc", "tpr", "fpr", "selection_rate")
EXPORT_FORMAT = 2  # bumped when an exported run shows more of a record, so runs exported before are replaced
BATCH = 100  # MLflow takes at most 100 params (and 1,000 metrics) per log_batch call
UNSAFE = re.compile(r"[^\w\-. /]")  # characters MLflow refuses in metric and param names
MAX_PARAM = 6000  # characters of a param value MLflow keeps


def mlflow_module() -> Any:
    try:
        import mlflow
    except ImportError:
        raise ConfigError(
            "fairbench export mlflow needs MLflow, which is not installed: pip install 'fairfacebench[mlflow]'"
        ) from None
    return mlflow


def safe_key(name: str) -> str:
    """A metric or param name MLflow accepts (e.g. a group 'Female|Black' becomes 'Female_Black')."""
    return UNSAFE.sub("_", name)


def params_of(row: dict[str, Any], record: RunRecord) -> dict[str, str]:
    """The run's settings, hyperparameters ('hp.*'), dataset options ('dataset_option.*') and budget ('budget.*')."""
    keys = [k for k in PARAMS if row.get(k) is not None] + sorted(k for k in row if k.startswith("hp."))
    out = {safe_key(k): str(row[k]) for k in keys}
    out.update(flattened("dataset_option", record.spec.dataset_options))
    budget = {k: v for k, v in record.spec.budget.to_dict().items() if k not in ("name", "steps", "batch_size")}
    out.update(flattened("budget", budget))  # its name, steps and batch size are the params above
    return {k: v[:MAX_PARAM] for k, v in out.items()}


def flattened(prefix: str, value: Any) -> dict[str, str]:
    """Nested options as dotted params, e.g. ('dataset_option', {'rho': 0.9}) -> {'dataset_option.rho': '0.9'}."""
    if isinstance(value, dict):
        return {
            k: v for key, inner in value.items() for k, v in flattened(f"{prefix}.{safe_key(str(key))}", inner).items()
        }
    return {prefix: str(value)}


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """The numeric columns of a run's row: metrics, intervals, per-group and fit numbers (undefined ones left out)."""
    out = {}
    for key, value in row.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if "." in key and not key.startswith("hp.") and numeric and math.isfinite(value):
            out[safe_key(key)] = float(value)
    return out


def loss_curves(record: RunRecord) -> dict[str, list[tuple[int, float]]]:
    """Metric 'loss.<stage>' -> (step, loss) points: each stage's recorded curve, or its first and last loss in a
    record from before curves; a stage run again continues the steps of its earlier run."""
    curves: dict[str, list[tuple[int, float]]] = {}
    done: dict[str, int] = {}  # steps of the stage's earlier runs
    for entry in record.history:
        if "stage" not in entry or "steps" not in entry:
            continue
        points = entry.get("loss_curve")
        if points is None and "first_loss" in entry and "last_loss" in entry:
            points = [[1, entry["first_loss"]], [entry["steps"], entry["last_loss"]]]
        key = f"loss.{safe_key(str(entry['stage']))}"
        offset = done.get(key, 0)
        curve = curves.setdefault(key, [])
        curve.extend((offset + int(step), float(loss)) for step, loss in points or [] if math.isfinite(loss))
        done[key] = offset + int(entry["steps"])
    return {k: v for k, v in curves.items() if v}


def epoch_ms(record: RunRecord, field: str) -> int | None:
    """A record's ISO 8601 time (`started_at`, `ended_at`) in milliseconds since the epoch; None when it has none."""
    value = getattr(record, field)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(
            f"run {record.run_id}: {field} '{value}' is not an ISO 8601 time with a time zone "
            "(e.g. 2025-05-01T12:00:00.000+00:00): correct it in its record.json or remove the field"
        )
    return round(moment.timestamp() * 1000)


def run_times(record: RunRecord, now: int) -> tuple[int, int, str | None]:
    """Start and end of the MLflow run in ms: the record's own, else (older records) the export time, with a note."""
    start, end = epoch_ms(record, "started_at"), epoch_ms(record, "ended_at")
    if start is not None and end is not None:
        return start, end, None
    if end is not None:  # a crash record: it ended, its start was not kept
        return end, end, "start is the record's ended_at (the record has no started_at)"
    if start is not None:
        return start, now, "end is the export time (the record has no ended_at)"
    return now, now, "start and end are the export time (the record has no started_at or ended_at)"


def write_group_table(record: RunRecord, path: Path) -> None:
    """The per-group tables of a run (validation selection half and test) as one CSV, no cell a spreadsheet formula."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(GROUP_COLUMNS)
        for split, table in (record.per_group or {}).items():
            for group in table.get("per_group", []):
                writer.writerow([spreadsheet_safe(split), *(spreadsheet_safe(group.get(c)) for c in GROUP_COLUMNS[1:])])


def record_digest(record: RunRecord, row: dict[str, Any]) -> str:
    """What an exported MLflow run shows, as one digest: the record as stored and the flags read from it now."""
    shown = f"{EXPORT_FORMAT}\n{record_json(record)}\n{row['flags']}\n{row['flag_details']}"
    return hashlib.sha256(shown.encode()).hexdigest()[:16]


def local_store(folder: Path) -> tuple[str, str]:
    """Tracking URI and artifact location of a local MLflow store in `folder`."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def export_mlflow(
    store_dir: Path | str, out: Path | str | None = None, tracking_uri: str | None = None, experiment: str = "fairbench"
) -> dict[str, Any]:
    """Log every run of the store to MLflow; returns the tracking URI, experiment and the number of runs exported."""
    mlflow = mlflow_module()
    from mlflow.entities import Metric, Param, RunTag

    artifacts = None
    if tracking_uri is None:
        tracking_uri, artifacts = local_store(Path(out) if out else Path(store_dir) / "mlflow")
    client = mlflow.MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found else client.create_experiment(experiment, artifact_location=artifacts)
    done = {
        r.data.tags.get("fairbench.run_id"): (r.info.run_id, r.data.tags.get("fairbench.record"))
        for r in client.search_runs([experiment_id], max_results=50000)
    }
    exported = 0
    now = int(time.time() * 1000)
    store = ResultStore(store_dir, create=False)
    for record in store.records():
        row = run_row(record, stored_predictions(store, record))
        digest = record_digest(record, row)
        earlier, earlier_digest = done.get(row["run_id"], (None, None))
        if earlier_digest == digest:
            continue
        if earlier is not None:  # the record changed since (recomputed, migrated, other flags): its run is replaced
            client.delete_run(earlier)
        tags = {
            "fairbench.run_id": row["run_id"],
            "fairbench.comparison_id": str(row["comparison_id"]),
            "fairbench.record": digest,
            "fairbench.tier": str(row["tier"]),
            "fairbench.flags": row["flags"],
        }
        if row["flag_details"]:
            tags["fairbench.flag_details"] = row["flag_details"][:5000]
        start, end, times_note = run_times(record, now)
        if times_note:
            tags["fairbench.times"] = times_note
        if row.get("git_commit"):
            tags["mlflow.source.git.commit"] = row["git_commit"]
        title = f"{row['dataset']}/{row['task']} {row['method']} seed {row['seed']} trial {row['trial']}"
        run = client.create_run(experiment_id, start_time=start, run_name=title, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v) for k, v in params_of(row, record).items()]
        metrics = [Metric(k, v, end, 0) for k, v in metrics_of(row).items()]
        metrics += [Metric(k, loss, end, step) for k, curve in loss_curves(record).items() for step, loss in curve]
        for i in range(0, max(len(params), len(metrics)), BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + BATCH], params=params[i : i + BATCH])
        if row.get("error"):
            client.log_batch(run_id, tags=[RunTag("fairbench.error", str(row["error"])[:5000])])
        with tempfile.TemporaryDirectory() as tmp:
            table = Path(tmp) / "per_group.csv"
            write_group_table(record, table)
            client.log_artifact(run_id, str(table))
        client.set_terminated(run_id, status="FINISHED" if row["status"] == "ok" else "FAILED", end_time=end)
        exported += 1
    return {"tracking_uri": tracking_uri, "experiment": experiment, "runs": exported}
