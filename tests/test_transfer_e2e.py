"""Transfer end to end: `fairbench run --eval-on` on the fixture layouts of UTKFace, FairFace and CelebA."""

from __future__ import annotations

import pytest
from fixtures_layouts import build_celeba, build_fairface, build_utkface

from fairfacebench.cli import main
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.plain import nan_to_none
from fairfacebench.plugins import registry
from fairfacebench.results import load_runs
from fairfacebench.store import ResultStore


@pytest.fixture()
def roots(tmp_path):
    build_utkface(tmp_path / "UTKFace")
    build_fairface(tmp_path / "fairface")
    build_celeba(tmp_path / "celeba")
    return {name: str(tmp_path / name) for name in ("UTKFace", "fairface", "celeba")}


def utkface_cb(roots, out, *flags):
    """erm on utkface-cb gender/race (28 training images of the fixture) under the smoke budget (its cells are tiny)."""
    return [
        "run",
        "--allow-tiny-groups",
        "--methods",
        "erm",
        "--datasets",
        "utkface-cb",
        "--tasks",
        "gender/race",
        "--data-root",
        roots["UTKFace"],
        "--budget",
        "smoke",
        "--workers",
        "1",
        "--bootstrap",
        "100",
        "--out",
        str(out),
        *flags,
    ]


def test_a_run_is_scored_on_fairface_and_a_stored_run_lacking_it_is_computed_again(roots, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(utkface_cb(roots, out)) == 0
    (before,) = ResultStore(out).records()
    assert before.transfer is None
    eval_on = ["--eval-on", f"fairface:{roots['fairface']}"]
    capsys.readouterr()
    assert main(utkface_cb(roots, out, *eval_on, "--dry-run")) == 0
    assert "recompute (its record lacks --eval-on fairface, ~" in capsys.readouterr().out
    assert main(utkface_cb(roots, out, *eval_on)) == 0
    store = ResultStore(out)
    (after,) = store.records()
    # the model is not stored: the run is computed again under its own id, and one run id gives the same numbers
    assert after.run_id == before.run_id and after.metrics == before.metrics
    assert after.config["eval_on"] == ["fairface"]
    result = after.transfer["fairface"]
    # the fixture's FairFace test split: 14 rows, 2 White and 12 of the six other races, all read as White/non-White
    assert (result.transfer.n, result.transfer.left_out) == (14, 0) and result.group_names == ["white", "non-white"]
    assert [(g["group"], g["n"]) for g in result.transfer.per_group["per_group"]] == [("white", 2), ("non-white", 12)]
    assert result.sensitive[0].classes["Southeast Asian"] == "non-white" and result.loaded_task is None
    assert set(result.transfer.intervals["intervals"]) >= {"acc", "eod_max"}
    # the recorded numbers are those of the stored predictions
    arrays = store.predictions(after.run_id)
    y, scores, groups = (arrays[f"transfer.fairface.{k}"] for k in ("y", "scores", "groups"))
    again = compute_metrics(y, scores.argmax(1), groups, result.group_names, class_names=["Male", "Female"])
    assert nan_to_none(again.summary) == result.transfer.metrics
    # utkface-cb reads race_binary one-to-one: in domain over the shared groups is the run's own test
    assert result.in_domain.metrics == after.metrics["test"] and result.in_domain.n == after.task_info.sizes["test"]
    frame = load_runs(out)
    assert frame["transfer.fairface.acc"].tolist() == [result.transfer.metrics["acc"]]
    assert frame["transfer.fairface.in_domain.acc"].tolist() == [after.metrics["test"]["acc"]]
    capsys.readouterr()
    assert main(utkface_cb(roots, out, *eval_on)) == 0
    assert "0 to compute, 1 already in" in capsys.readouterr().out


GROUPS_PLUGIN = '''"""A method from outside the repository whose predictor reads each image's group (declared)."""
import numpy as np

from fairfacebench.hookspecs import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import predict_scores


class GroupLean:
    def __init__(self, model, device):
        self.model, self.device = model, device

    def predict(self, images, groups):
        scores = predict_scores(self.model, images, self.device)
        return 0.5 * scores + 0.5 * np.eye(2)[np.asarray(groups) % 2]


class GroupsAtInference(Method):
    name = "groups-at-inference"
    description = "erm whose scores lean towards the class of each image's group parity"
    citation = "-"
    labels = LabelUse(target="train", sensitive_at_inference=True)

    def fit(self, ctx):
        model = ctx.new_classifier()
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss)
        return GroupLean(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [GroupsAtInference]
'''


@pytest.fixture()
def groups_plugin(tmp_path, monkeypatch):
    """The package `fbtest_groups` installed by its metadata under `site` (as pip would)."""
    site = tmp_path / "site"
    (site / "fbtest_groups").mkdir(parents=True)
    (site / "fbtest_groups" / "__init__.py").write_text(GROUPS_PLUGIN)
    info = site / "fbtest_groups-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fbtest-groups\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[fairfacebench]\ngroups-at-inference = fbtest_groups\n")
    monkeypatch.syspath_prepend(str(site))
    registry.cache_clear()
    yield
    registry.cache_clear()


def test_a_sealed_run_scores_transfer_exactly_as_a_run_in_the_harness_process(roots, tmp_path, groups_plugin):
    """Sealed, the child predicts FairFace's test images (for the plugin's method, which reads groups at inference,
    with the run's own group codes of them) and the harness scores them: the same arrays and numbers."""
    methods = ["erm", "groups-at-inference"]
    flags = ["--eval-on", f"fairface:{roots['fairface']}", "--methods", ",".join(methods)]
    found = {}
    for how in ("--sealed", "--trust-plugins"):
        out = tmp_path / how.strip("-")
        assert main(utkface_cb(roots, out, *flags, how)) == 0
        store = ResultStore(out)
        found[how] = {r.method: (r, store.predictions(r.run_id)) for r in store.records()}
    for method in methods:
        (sealed, sealed_arrays), (plain, plain_arrays) = found["--sealed"][method], found["--trust-plugins"][method]
        assert sealed.sealed and not plain.sealed and sealed.run_id == plain.run_id
        for split in ("transfer", "in_domain"):
            assert getattr(sealed.transfer["fairface"], split) == getattr(plain.transfer["fairface"], split), method
        assert sorted(sealed_arrays) == sorted(plain_arrays) and "transfer.fairface.scores" in sealed_arrays
        for key in sealed_arrays:
            assert (sealed_arrays[key] == plain_arrays[key]).all(), (method, key)
    assert found["--sealed"]["groups-at-inference"][0].method_code.distribution == "fbtest-groups"


def test_celeba_has_no_race_so_the_pairing_is_refused_before_training(roots, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(utkface_cb(roots, out, "--eval-on", f"celeba:{roots['celeba']}")) == 2
    err = capsys.readouterr().err
    assert (
        "--eval-on celeba: utkface-cb task 'gender/race': its sensitive attribute 'race_binary' (race_binary) has "
        "no counterpart in celeba, whose vocabulary covers gender <- Male" in err
    )
    assert not list(out.glob("*/record.json"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--eval-on", "fairface"], "--eval-on fairface: no data root; write --eval-on fairface:ROOT"),
        (["--eval-on", "fairface:"], "--eval-on fairface:: expected DATASET or DATASET:ROOT"),
        (["--eval-on", "nope:/x"], "unknown dataset 'nope'"),
        (["--eval-on", "utkface:UTK"], "its data root UTK is the one utkface-cb trains on"),
        (["--eval-on", "fairface:FF", "--dataset-option", "fairface.rho=0.5"], "dataset 'fairface' has no option"),
    ],
)
def test_eval_on_problems_are_one_line_errors(roots, tmp_path, capsys, flags, message):
    flags = [f.replace("UTK", roots["UTKFace"]).replace("FF", roots["fairface"]) for f in flags]
    assert main(utkface_cb(roots, tmp_path / "runs", *flags, "--dry-run")) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fairbench run: error:")]
    assert message.replace("UTK", roots["UTKFace"]) in line


def test_a_method_reading_groups_at_inference_needs_groups_the_other_dataset_can_give(roots, tmp_path, capsys):
    # fairface gender/race has 7 race groups; utkface-cb knows only White / non-White
    argv = ["run", "--allow-tiny-groups", "--methods", "threshold-optimizer", "--datasets", "fairface"]
    argv += ["--data-root", roots["fairface"]]
    argv += ["--eval-on", f"utkface-cb:{roots['UTKFace']}", "--budget", "smoke", "--out", str(tmp_path / "r")]
    assert main([*argv, "--dry-run"]) == 2
    message = (
        "--eval-on utkface-cb: method threshold-optimizer reads each image's group of fairface task 'gender/race' at "
        "inference, but on utkface-cb 'race' (7 classes) reads only as race_binary (2 classes)"
    )
    assert message in capsys.readouterr().err
