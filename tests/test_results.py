"""A small result store in pandas (`fairfacebench.load_runs`) and in MLflow (`fairbench export mlflow`)."""

from __future__ import annotations

import math
import os
import sys

import pytest
from records import fake_record, predicted_run

import fairfacebench
from fairfacebench.budget import Budget
from fairfacebench.cli import main
from fairfacebench.errors import ConfigError
from fairfacebench.metrics.bootstrap import intervals_from_counts
from fairfacebench.metrics.fairness import confusion_counts
from fairfacebench.plan import expand, load_plan
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

TINY = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Two finished erm runs (two seeds, computed in two worker processes) and one crashed groupdro run."""
    out = tmp_path_factory.mktemp("results") / "runs"
    argv = ["run", "--methods", "erm", "--seeds", "2", "--budget", "smoke", "--workers", "2", "--bootstrap", "100"]
    assert main([*argv, *TINY, "--out", str(out), "--progress", "plain"]) == 0
    plan = load_plan(
        flags={"methods": ["groupdro"], "budget": "smoke", "dataset_options": {"synthfaces": SMALL_SYNTHFACES}}
    )
    (crashed,) = expand(plan)
    ResultStore(out).write(crashed.run_id, SpecRunner("cpu").crashed(crashed, "WorkerDied: exit code -9"))
    return out


def test_load_runs_has_one_row_per_run_with_flattened_metrics_and_groups(store):
    runs = fairfacebench.load_runs(store)
    assert len(runs) == 3 and runs.columns[:4].tolist() == ["run_id", "comparison_id", "status", "error"]
    ok = runs[runs.status == "ok"].sort_values("seed")
    assert ok.method.tolist() == ["erm", "erm"] and ok.seed.tolist() == [0, 1] and set(ok.budget) == {"smoke"}
    first = ok.iloc[0]
    assert 0 <= first["test.acc"] <= 1 and first["test.acc.lo"] <= first["test.acc"] <= first["test.acc.hi"]
    assert first["hp.lr"] == pytest.approx(1e-3) and first["fit.steps"] == 12
    groups = [c for c in runs.columns if c.startswith("test.group.") and c.endswith(".acc")]
    assert groups == ["test.group.dark.acc", "test.group.light.acc", "test.group.medium.acc"]
    n = sum(first[f"test.group.{g}.n"] for g in ("light", "medium", "dark"))
    assert n == SMALL_SYNTHFACES["n_test"]
    failed = runs[runs.status == "failed"].iloc[0]
    assert failed.method == "groupdro" and failed.error.startswith("WorkerDied") and math.isnan(failed["test.acc"])


def test_load_runs_of_a_missing_store_names_it(tmp_path):
    with pytest.raises(ConfigError, match="no result store at"):
        fairfacebench.load_runs(tmp_path / "missing")


def test_load_runs_has_the_tier_the_flags_and_current_intervals_of_each_run(tmp_path):
    # 200 test rows, right on the first 150 (acc 0.75); an old record's percentile interval leaves its estimate out
    y, a = [0, 1] * 100, [0, 0, 1, 1] * 50
    y_hat = [v if i < 150 else 1 - v for i, v in enumerate(y)]
    store = ResultStore(tmp_path)
    record, arrays = predicted_run("m", 0, y, a, y_hat, supervision={"target": "val", "sensitive": "val"})
    record.test_intervals = {"method": "percentile bootstrap", "intervals": {"acc": [0.76, 0.80]}}
    store.write(record.run_id, record, arrays)
    run = fairfacebench.load_runs(tmp_path).iloc[0]
    assert run.tier == "+ validation labels" and run["flags"] == ""
    counts = confusion_counts(arrays["test_y"], arrays["test_scores"].argmax(1), arrays["test_a"], 2, 2)
    expected = intervals_from_counts(counts, n_resamples=1000, seed=0)["intervals"]
    assert [run["test.acc.lo"], run["test.acc.hi"]] == expected["acc"]
    assert run["test.acc.lo"] <= run["test.acc"] <= run["test.acc.hi"]
    smoke = fake_record("s", 0, budget=Budget("smoke", steps=12, batch_size=32))
    store.write(smoke.run_id, smoke)
    runs = fairfacebench.load_runs(tmp_path).set_index("method")
    assert runs.loc["s", "flags"] == "smoke-budget" and runs.loc["s", "tier"] == "not recorded"
    assert runs.loc["s", "flag_details"] == "smoke-budget: budget smoke: a check that everything runs, not a comparison"


def mlflow_or_skip():
    """MLflow, which `make setup` installs (the [mlflow] extra): skipped without it, failed without it under CI."""
    try:
        import mlflow
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("mlflow is not installed; make setup installs the [mlflow] extra")
        pytest.skip("mlflow is not installed (pip install 'fairfacebench[mlflow]')")
    return mlflow


def test_export_mlflow_logs_params_metrics_and_the_group_table_to_a_local_store(store, tmp_path, capsys):
    mlflow = mlflow_or_skip()
    target = tmp_path / "mlruns"
    assert main(["export", "mlflow", str(store), "--out", str(target), "--experiment", "bench"]) == 0
    assert "exported 3 run(s) to experiment 'bench'" in capsys.readouterr().out
    client = mlflow.MlflowClient(f"sqlite:///{target / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bench")
    runs = {r.data.tags["fairbench.run_id"]: r for r in client.search_runs([experiment.experiment_id])}
    frame = fairfacebench.load_runs(store)
    assert set(runs) == set(frame.run_id)
    for _, row in frame.iterrows():
        logged = runs[row.run_id]
        assert logged.data.params["method"] == row.method and logged.data.params["seed"] == str(row.seed)
        assert logged.info.status == ("FINISHED" if row.status == "ok" else "FAILED")
        if row.status == "ok":
            assert logged.data.metrics["test.acc"] == pytest.approx(row["test.acc"])
            assert logged.data.metrics["test.group.dark.acc"] == pytest.approx(row["test.group.dark.acc"])
            # erm's one stage, all 12 smoke steps of it (a curve keeps up to 50), logged over its steps
            curve = client.get_metric_history(logged.info.run_id, "loss.train")
            assert sorted(p.step for p in curve) == list(range(1, 13)) and all(p.value > 0 for p in curve)
            assert logged.data.params["dataset_option.n_test"] == str(SMALL_SYNTHFACES["n_test"])
            assert logged.info.start_time < logged.info.end_time and "fairbench.times" not in logged.data.tags
            (artifact,) = client.list_artifacts(logged.info.run_id)
            table = (target / "artifacts").rglob(artifact.path)
            text = next(p for p in table if logged.info.run_id in str(p)).read_text()
            assert text.splitlines()[0] == "split,group,n,positives,acc,tpr,fpr,selection_rate" and "test,dark," in text
        else:
            assert "test.acc" not in logged.data.metrics and "WorkerDied" in logged.data.tags["fairbench.error"]
    # exporting again adds nothing
    assert main(["export", "mlflow", str(store), "--out", str(target), "--experiment", "bench"]) == 0
    assert "exported 0 run(s)" in capsys.readouterr().out


def test_export_without_mlflow_installed_is_one_clear_line(store, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    assert main(["export", "mlflow", str(store)]) == 2
    err = capsys.readouterr().err
    assert (
        err == "fairbench export: error: fairbench export mlflow needs MLflow, which is not installed: "
        "pip install 'fairfacebench[mlflow]'\n"
    )
