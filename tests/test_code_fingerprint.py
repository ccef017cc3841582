"""Stale results after a code edit: every record carries a fingerprint of its method's code and the distribution
that provided it; `run` and `--dry-run` name stored runs made with other code, `--rerun-changed` and `--force`
recompute them; run ids do not depend on the code; records carry their start and end time (UTC)."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta

import pytest

from fairfacebench.cli import main
from fairfacebench.method_code import code_modules, code_tokens
from fairfacebench.plugins import registry
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

TINY = [f"--dataset-option={k}={v}" for k, v in SMALL_SYNTHFACES.items()]

PLUGIN = '''\
"""A third-party method plugin: ERM whose loss lives in a module of its own."""
from fairfacebench import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.training import Predictor

from .loss import loss


class FocalErm(Method):
    name = "focal-erm"
    description = "ERM with a loss of its own"
    citation = "-"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [FocalErm]
'''
LOSS = '''\
from fairfacebench.methods.common import erm_loss


def loss(model, batch):
    """The loss of one batch."""
    return erm_loss(model, batch)
'''


def test_code_tokens_ignore_comments_docstrings_and_layout_but_not_code():
    # A docstring statement, a comment and blank lines drop out; the statement keeps its tokens and ends with ';'.
    assert code_tokens(b'"""doc"""\n\nx = 1  # why\n') == b"x = 1 ;"
    base = code_tokens(b"def f(a):\n    return a + 1\n")
    assert base == b"def f ( a ) : ; INDENT return a + 1 ; DEDENT"
    assert code_tokens(b'def f(a):\n    """Doc."""\n    # note\n    return a+\\\n        1\n') == base
    assert code_tokens(b"def f(a):\n    return a + 2\n") != base


def test_a_method_without_a_source_file_has_no_fingerprint(monkeypatch):
    import types

    from fairfacebench.method_code import method_code

    module = types.ModuleType("fb_typed_in")  # as a class typed into an interactive session
    monkeypatch.setitem(sys.modules, module.__name__, module)
    cls = type("Typed", (), {"__module__": module.__name__})
    assert method_code(cls, None) is None


@pytest.fixture()
def installed_plugin(tmp_path, monkeypatch):
    """The package `fbtest_plugin` 0.3.0 installed by its metadata under `site` (as pip would), found by the
    registry through the entry-point group like any third-party plugin."""
    site = tmp_path / "site"
    package = site / "fbtest_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    (package / "loss.py").write_text(LOSS)
    info = site / "fbtest_plugin-0.3.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fbtest-plugin\nVersion: 0.3.0\n")
    (info / "entry_points.txt").write_text("[fairfacebench]\nfocal-erm = fbtest_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    registry.cache_clear()
    yield package
    registry.cache_clear()
    code_modules.cache_clear()


def test_a_code_edit_is_named_and_recomputed_on_request(tmp_path, capsys, installed_plugin):
    out = tmp_path / "runs"
    argv = ["run", "--methods", "focal-erm", "--budget", "smoke", "--workers", "1", *TINY, "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 to compute, 0 already in" in printed
    (first,) = ResultStore(out, create=False).records()
    # the run ends with its results, as the leaderboard tables them, and says what its times measure
    assert "run time: the runs' own time (loading data, fitting, scoring" in printed
    assert "results on test: mean over seeds of the trial val_acc chooses on validation, as the leaderboard" in printed
    acc, eod, wga = (first.test_metric(m) for m in ("acc", "eod_max", "wga"))
    assert f"| synthfaces/smiling/skin_tone | focal-erm |       1 | {acc:.3f} | {eod:9.3f} | {wga:.3f} |" in printed
    code = first.method_code
    assert (code.distribution, code.version) == ("fbtest-plugin", "0.3.0")
    assert code.modules == ["fbtest_plugin", "fbtest_plugin.loss"]  # the plugin's own modules, not the core's
    started, ended = datetime.fromisoformat(first.started_at), datetime.fromisoformat(first.ended_at)
    assert started.utcoffset() == timedelta(0) and started <= ended
    assert ended - started >= timedelta(seconds=first.wall_time_s - 1)

    loss = installed_plugin / "loss.py"
    loss.write_text(LOSS.replace('"""The loss of one batch."""', "# reworded: the mean cross-entropy"))
    assert main([*argv, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "other code" not in captured.out + captured.err  # comments and docstrings are not code

    loss.write_text(LOSS.replace("return erm_loss(model, batch)", "return 2.0 * erm_loss(model, batch)"))
    assert main([*argv, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "0 to compute, 1 already in" in captured.out and "skip (ok in the store, other code)" in captured.out
    assert (
        "fairbench run: warning: 1 stored run of focal-erm was made with other code than the installed focal-erm: "
        "--rerun-changed recomputes it" in captured.err
    )
    for flag in ("--force", "--rerun-changed"):
        assert main([*argv, flag, "--dry-run"]) == 0
        text = capsys.readouterr().out
        assert "1 to compute, 0 already in" in text and "recompute (other code, ~" in text

    assert main([*argv, "--rerun-changed"]) == 0
    (second,) = ResultStore(out, create=False).records()
    assert second.run_id == first.run_id  # the code is not part of the run id
    assert second.method_code.fingerprint != code.fingerprint and second.ended_at > first.ended_at
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "0 to compute, 1 already in" in captured.out and "other code" not in captured.out + captured.err
    assert main([*argv, "--force", "--dry-run"]) == 0
    assert "recompute (--force, ~" in capsys.readouterr().out


def test_a_method_may_declare_that_its_edited_code_computes_what_an_earlier_fingerprint_computed(
    tmp_path, capsys, installed_plugin
):
    """`same_results_as` (a refactor, or a fix of a path that only failed before): runs made with the declared code
    are not named as other code, in `run` nor on the leaderboard; undeclared code still is."""
    out = tmp_path / "runs"
    argv = ["run", "--methods", "focal-erm", "--budget", "smoke", "--workers", "1", *TINY, "--out", str(out)]
    assert main(argv) == 0
    (first,) = ResultStore(out, create=False).records()
    made = first.method_code.fingerprint
    (installed_plugin / "loss.py").write_text(
        LOSS.replace("return erm_loss(model, batch)", "return 1.0 * erm_loss(model, batch)")
    )
    plugin = installed_plugin / "__init__.py"
    for declared, named in ((f'("{made}",)', False), ('("0123456789abcdef",)', True)):
        plugin.write_text(
            PLUGIN.replace('    citation = "-"\n', f'    citation = "-"\n    same_results_as = {declared}\n')
        )
        capsys.readouterr()
        assert main([*argv, "--dry-run"]) == 0
        captured = capsys.readouterr()
        assert "0 to compute, 1 already in" in captured.out
        assert ("other code" in captured.out + captured.err) == named, declared


def test_a_record_from_before_fingerprints_reads_without_them_and_cannot_be_checked(tmp_path, capsys):
    from records import fake_record

    from fairfacebench.plan import expand, load_plan

    flags = {"methods": ["erm"], "budget": "smoke", "dataset_options": {"synthfaces": SMALL_SYNTHFACES}}
    spec = expand(load_plan(None, flags))[0]
    store = ResultStore(tmp_path / "runs")
    store.write(spec.run_id, fake_record(spec=spec))
    plain = json.loads((store.path(spec.run_id) / "record.json").read_text())
    for key in ("method_code", "started_at", "ended_at"):
        plain.pop(key)
    (store.path(spec.run_id) / "record.json").write_text(json.dumps(plain))
    record = store.record(spec.run_id)
    assert record.method_code is None and record.started_at is None and record.ended_at is None
    argv = ["run", "--methods", "erm", "--budget", "smoke", *TINY, "--out", str(tmp_path / "runs"), "--dry-run"]
    assert main(argv) == 0
    assert "1 stored run of erm predates code fingerprints and cannot be checked" in capsys.readouterr().err


def test_the_scaffold_declares_a_version(tmp_path):
    from fairfacebench.scaffold import new_method

    source = (new_method("my-method", tmp_path) / "src" / "fairbench_my_method" / "__init__.py").read_text()
    assert "\n    version = 1\n" in source and "bump it whenever a change alters results" in source
    assert "bump `version`" in (tmp_path / "fairbench-my-method" / "README.md").read_text()
