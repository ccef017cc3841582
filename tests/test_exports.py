"""Exports a plugin cannot turn against their reader (CSV formulas, Markdown columns and HTML), and a site build that
deletes only what an earlier build wrote."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import replace

import pytest
from test_site import record

from fairfacebench.budget import Budget
from fairfacebench.cli import main
from fairfacebench.errors import ConfigError
from fairfacebench.leaderboard.render import current_exports
from fairfacebench.leaderboard.site import MARKER, build_site
from fairfacebench.leaderboard.tables import write
from fairfacebench.store import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # tab and CR in the plots' labels

FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tHYPERLINK()", "\r=1"]
MARKDOWN = ["a|b|c", "<script>alert(1)</script>", "two\nlines"]


@pytest.fixture()
def hostile_store(tmp_path):
    store = ResultStore(tmp_path / "runs")
    for i, name in enumerate([*FORMULAS, *MARKDOWN, "erm"]):
        rec = record(name, 0, 0.8, 0.1)
        rec.run_id = f"run-{i}"
        rec.labels_used = "=1+1" if name == "erm" else "y:train"
        store.write(rec.run_id, rec)
    return tmp_path / "runs"


def csv_column(path, column):
    with open(path, newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def test_csv_cells_cannot_start_a_formula_in_the_store_and_site_exports(hostile_store, tmp_path):
    write(hostile_store)
    build_site(hostile_store, tmp_path / "site")
    for path in (hostile_store / "leaderboard.csv", tmp_path / "site" / "leaderboard.csv"):
        methods = csv_column(path, "method")
        assert sorted(methods) == sorted(["'" + f for f in FORMULAS] + MARKDOWN + ["erm"])
        assert csv_column(path, "labels_used").count("'=1+1") == 1
        assert all(not m.startswith(("=", "+", "-", "@", "\t", "\r")) for m in methods)


def test_markdown_cells_are_escaped_and_keep_the_table_shape(hostile_store, tmp_path):
    write(hostile_store)
    build_site(hostile_store, tmp_path / "site")
    for path in (hostile_store / "leaderboard.md", tmp_path / "site" / "leaderboard.md"):
        md = path.read_text()
        assert "<script" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
        assert "a\\|b\\|c" in md and "two lines" in md
        table = next(b for b in md.split("\n\n") if b.startswith("| method ")).splitlines()  # the leaderboard
        assert len(table) == 2 + len(FORMULAS) + len(MARKDOWN) + 1
        columns = {len(re.split(r"(?<!\\)\|", line)) for line in table}
        assert columns == {len(re.split(r"(?<!\\)\|", table[0]))}


def test_site_build_refuses_a_folder_it_did_not_make_and_deletes_only_its_own_files(hostile_store, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["leaderboard", "build", str(hostile_store), "--out", str(mine)]) == 2
    assert "holds files that `leaderboard build` did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        build_site(hostile_store, tmp_path / "a-file")

    site = tmp_path / "site"
    build_site(hostile_store, site)
    assert (site / MARKER).is_file() and (site / "method-erm.html").is_file()
    (site / "notes.md").write_text("added by hand")
    (site / "plots" / "by-hand.svg").write_text("<svg/>")
    (hostile_store / "run-9").rename(hostile_store / ".gone")  # drop erm from the store
    build_site(hostile_store, site)  # a rebuild of its own site is allowed
    assert not (site / "method-erm.html").exists()  # a stale page it wrote is gone
    assert (site / "notes.md").read_text() == "added by hand" and (site / "plots" / "by-hand.svg").is_file()
    assert build_site(hostile_store, tmp_path / "new" / "site")["index"].is_file()  # a new folder is fine


# ---------------------------------------------------------------- issue 28: exports and site


def test_markdown_links_and_images_in_cells_stay_text(tmp_path):
    store = ResultStore(tmp_path / "runs")
    for i, name in enumerate(["[click](http://x.example)", "![img](http://x.example/a.png)", "erm"]):
        rec = record(name, 0, 0.8, 0.1)
        rec.run_id = f"run-{i}"
        store.write(rec.run_id, rec)
    md = write(tmp_path / "runs")["md"].read_text()
    assert re.search(r"(?<!\\)\]\(", md) is None  # no ']' right before '(' that is not escaped
    assert "[click\\](http://x.example)" in md and "![img\\](http://x.example/a.png)" in md


def test_leaderboard_tables_never_replaces_a_users_own_leaderboard(hostile_store, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "leaderboard.md").write_text("# my own notes\n")
    assert main(["leaderboard", "tables", str(hostile_store), "--out", str(mine)]) == 2
    assert "leaderboard.md was not written by a fairbench leaderboard" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["leaderboard.md"] and "my own" in (mine / "leaderboard.md").read_text()
    ours = tmp_path / "ours"
    for _ in range(2):  # its own files are rewritten
        assert main(["leaderboard", "tables", str(hostile_store), "--out", str(ours)]) == 0
    assert sorted(p.name for p in ours.iterdir()) == ["leaderboard.csv", "leaderboard.json", "leaderboard.md"]


def test_a_leaderboard_is_current_only_if_built_by_fairbench_under_the_rule_after_every_record(hostile_store):
    def current(rule):
        return current_exports(hostile_store, rule, hostile_store.glob("*/record.json"))

    assert current("val_acc") is None  # not built yet
    paths = write(hostile_store, rule="val_acc")
    assert current("val_acc") == paths
    assert current("val_wga") is None  # built under another rule
    newest = max(hostile_store.glob("*/record.json"), key=lambda p: p.stat().st_mtime_ns)
    later = paths["json"].stat().st_mtime_ns + 1_000_000
    os.utime(newest, ns=(later, later))  # a run another process finished after the build
    assert current("val_acc") is None
    write(hostile_store, rule="val_acc")
    paths["md"].write_text("# my own notes\n")  # not fairbench's any more
    assert current("val_acc") is None


def test_an_interrupted_build_leaves_nothing_a_later_build_refuses(hostile_store, tmp_path, monkeypatch):
    from fairfacebench.leaderboard import site as site_module

    def interrupted(*args):
        raise KeyboardInterrupt

    site = tmp_path / "site"
    with monkeypatch.context() as patch:
        patch.setattr(site_module, "write_pages", interrupted)
        with pytest.raises(KeyboardInterrupt):
            build_site(hostile_store, site)
    assert not site.exists() and [p.name for p in tmp_path.iterdir()] == ["runs"]  # no staging folder left
    build_site(hostile_store, site)
    before = sorted(p.relative_to(site) for p in site.rglob("*"))
    # interrupted again, now while the new site moves in: the marker names every file that may be there
    moved = []
    real_replace = site_module.os.replace

    def replace_then_stop(source, target):
        real_replace(source, target)
        moved.append(target)
        if len(moved) == 3:
            raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(site_module.os, "replace", replace_then_stop)
        with pytest.raises(KeyboardInterrupt):
            build_site(hostile_store, site)
    build_site(hostile_store, site)
    assert sorted(p.relative_to(site) for p in site.rglob("*")) == before


def test_a_plot_an_earlier_build_wrote_is_gone_after_a_rebuild_that_draws_it_no_more(hostile_store, tmp_path):
    site = tmp_path / "site"
    build_site(hostile_store, site)
    (site / "plots" / "t-ranks.svg").write_text("<svg/>")  # as an older fairbench drew it
    marker = json.loads((site / MARKER).read_text())
    (site / MARKER).write_text(json.dumps({"files": [*marker["files"], "plots/t-ranks.svg"]}))
    build_site(hostile_store, site)
    assert not (site / "plots" / "t-ranks.svg").exists()
    assert "plots/t-ranks.svg" not in json.loads((site / MARKER).read_text())["files"]


@pytest.fixture()
def mlflow_client(tmp_path):
    from test_results import mlflow_or_skip

    mlflow = mlflow_or_skip()

    def client():
        return mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")

    return client


def exported(client) -> dict:
    experiment = client().get_experiment_by_name("fairbench")
    return {r.data.tags["fairbench.run_id"]: r for r in client().search_runs([experiment.experiment_id])}


def test_mlflow_export_escapes_formulas_replaces_recomputed_runs_and_tags_tier_and_flags(tmp_path, mlflow_client):
    from fairfacebench.export import export_mlflow

    store = ResultStore(tmp_path / "runs")
    failed = record("erm", 0, 0.8, 0.1, error="RuntimeError: boom")
    store.write(failed.run_id, failed)
    hostile = record("=cmd", 0, 0.8, 0.1)
    hostile.per_group["test"]["per_group"][0]["group"] = "=HYPERLINK(1)"
    store.write(hostile.run_id, hostile)
    target = tmp_path / "mlruns"
    assert export_mlflow(store.root, out=target)["runs"] == 2
    runs = exported(mlflow_client)
    assert runs[failed.run_id].info.status == "FAILED"
    logged = runs[hostile.run_id]
    tags = logged.data.tags
    assert tags["fairbench.tier"] == "not recorded" and "smoke-budget" in tags["fairbench.flags"]
    assert "smoke-budget: budget smoke" in logged.data.tags["fairbench.flag_details"]
    (table,) = [p for p in (target / "artifacts").rglob("per_group.csv") if logged.info.run_id in str(p)]
    assert "'=HYPERLINK(1)" in table.read_text() and "\n=" not in table.read_text()
    assert export_mlflow(store.root, out=target)["runs"] == 0  # nothing changed
    recomputed = record("erm", 0, 0.8, 0.1)  # the failed run, computed again: ok now
    store.write(recomputed.run_id, recomputed)
    assert export_mlflow(store.root, out=target)["runs"] == 1
    runs = exported(mlflow_client)
    assert runs[failed.run_id].info.status == "FINISHED" and len(runs) == 2


def test_mlflow_export_takes_run_times_options_budget_and_loss_curves_from_the_record(tmp_path, mlflow_client):
    from fairfacebench.export import export_mlflow

    store = ResultStore(tmp_path / "runs")
    timed = record("erm", 0, 0.8, 0.1)
    budget = Budget("smoke", steps=12, batch_size=32, amp=True)
    timed.spec = replace(timed.spec, budget=budget, dataset_options={"rho": 0.9, "sizes": {"n_test": 60}})
    timed.started_at, timed.ended_at = "2025-05-01T12:00:00.000+00:00", "2025-05-01T12:01:30.500+00:00"
    timed.history = [
        {
            "stage": "pretrain",
            "steps": 3,
            "first_loss": 2.0,
            "last_loss": 1.0,
            "loss_curve": [[1, 2.0], [2, 1.5], [3, 1.0]],
        },
        {"stage": "head", "steps": 4, "first_loss": 0.9, "last_loss": 0.5},  # a record from before curves
        {"stage": "pretrain", "steps": 2, "first_loss": 0.8, "last_loss": 0.7, "loss_curve": [[1, 0.8], [2, 0.7]]},
    ]
    store.write(timed.run_id, timed)
    old = record("groupdro", 0, 0.7, 0.2)  # recorded before run times
    store.write(old.run_id, old)
    crashed = record("fscl", 0, 0.7, 0.2, error="WorkerDied: exit code -9")
    crashed.ended_at = "2025-05-02T08:00:00.000+00:00"  # a crash keeps no start
    store.write(crashed.run_id, crashed)
    before = int(time.time() * 1000)
    export_mlflow(store.root, out=tmp_path / "mlruns")
    after = int(time.time() * 1000)
    runs = exported(mlflow_client)
    logged = runs[timed.run_id]
    # 2025-05-01T12:00:00Z is 1746100800 s after the epoch; the end 90.5 s later
    assert (logged.info.start_time, logged.info.end_time) == (1746100800000, 1746100890500)
    assert "fairbench.times" not in logged.data.tags
    params = logged.data.params
    assert params["dataset_option.rho"] == "0.9" and params["dataset_option.sizes.n_test"] == "60"
    assert params["budget.amp"] == "True" and params["budget.views"] == "2" and params["budget.inference_passes"] == "3"
    assert "budget.bf16" not in params and params["budget"] == "smoke" and params["steps"] == "12"

    def curve(name):
        points = mlflow_client().get_metric_history(logged.info.run_id, name)
        return sorted((p.step, p.value) for p in points)

    # the second pretrain stage continues after the first's 3 steps; the old entry gives its first and last step
    assert curve("loss.pretrain") == [(1, 2.0), (2, 1.5), (3, 1.0), (4, 0.8), (5, 0.7)]
    assert curve("loss.head") == [(1, 0.9), (4, 0.5)]
    unknown = runs[old.run_id]
    assert before <= unknown.info.start_time <= unknown.info.end_time <= after
    assert unknown.data.tags["fairbench.times"] == (
        "start and end are the export time (the record has no started_at or ended_at)"
    )
    ended = runs[crashed.run_id]
    assert ended.info.start_time == ended.info.end_time == 1746172800000  # 2025-05-02T08:00:00Z
    assert ended.data.tags["fairbench.times"] == "start is the record's ended_at (the record has no started_at)"


def test_mlflow_export_names_a_record_whose_time_is_not_iso_8601(tmp_path, mlflow_client):
    from fairfacebench.export import export_mlflow

    store = ResultStore(tmp_path / "runs")
    bad = record("erm", 0, 0.8, 0.1)
    bad.started_at, bad.ended_at = "yesterday", "2025-05-01T12:01:30.500+00:00"
    store.write(bad.run_id, bad)
    with pytest.raises(ConfigError, match="run erm-0: started_at 'yesterday' is not an ISO 8601 time with a time zone"):
        export_mlflow(store.root, out=tmp_path / "mlruns")
