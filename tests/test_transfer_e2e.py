"""Transfer end to end: `fairbench run --eval-on` on the fixture layouts of UTKFace, FairFace and CelebA."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fixtures_layouts import build_celeba, build_fairface, build_utkface, fairface_rows

from fairfacebench.cli import main
from fairfacebench.datasets import cache
from fairfacebench.datasets.celeba import YOUNG_AS_UNDER_40
from fairfacebench.datasets.fairface import AGES, RACES
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.plain import nan_to_none
from fairfacebench.plugins import registry
from fairfacebench.results import load_runs
from fairfacebench.store import ResultStore


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    # the fixtures' few dozen images decode in this process: a pool of decoders takes seconds to start on a busy CPU
    monkeypatch.setattr(cache, "available_cores", lambda: 1)
    build_utkface(tmp_path / "UTKFace")
    build_fairface(tmp_path / "fairface")
    build_celeba(tmp_path / "celeba")
    return {name: str(tmp_path / name) for name in ("UTKFace", "fairface", "celeba")}


def utkface_cb(roots, out, *flags):
    """erm on utkface-cb gender/race (28 training images of the fixture) under the smoke budget (its cells are tiny)."""
    return erm_on("utkface-cb", "gender/race", roots["UTKFace"], out, *flags)


def erm_on(dataset, task, root, out, *flags):
    """erm on a fixture layout under the smoke budget (its cells are tiny), one seed."""
    return [
        "run",
        "--allow-tiny-groups",
        "--methods",
        "erm",
        "--datasets",
        dataset,
        "--tasks",
        task,
        "--data-root",
        root,
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


def one_erm_run(dataset, task, root, out, *flags):
    """`erm_on` run through the CLI (exit 0), then its one record and its stored arrays."""
    assert main(erm_on(dataset, task, root, out, *flags)) == 0
    store = ResultStore(out)
    (record,) = store.records()
    return record, store.predictions(record.run_id)


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
        "no counterpart in celeba, whose vocabulary covers gender <- Male, age_40 <- Young (approximate)" in err
    )
    assert not list(out.glob("*/record.json"))


# FairFace race -> race4 code, by hand: Latino_Hispanic and Middle Eastern are in no race4 class, both Asians are asian
FAIRFACE_RACE4 = {"White": 0, "Black": 1, "East Asian": 2, "Southeast Asian": 2, "Indian": 3}
# UTKFace race code (file name) -> shared group: race4 keeps White, Black, Asian, Indian (Others: none); race_binary
UTK_GROUP = {"utkface": {0: 0, 1: 1, 2: 2, 3: 3}, "utkface-cb": {0: 0, 1: 1, 2: 1, 3: 1, 4: 1}}


def transfer_table(markdown: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows (cells) of the 'In-domain vs transfer' table of a printed leaderboard."""
    lines = markdown.split("### In-domain vs transfer\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start:end]]
    return header, rows


def test_a_fairface_run_reads_utkface_as_four_races_and_utkface_cb_as_white_non_white(roots, tmp_path, capsys):
    out = tmp_path / "runs"
    eval_on = ["--eval-on", f"utkface:{roots['UTKFace']}", "--eval-on", f"utkface-cb:{roots['UTKFace']}"]
    record, arrays = one_erm_run("fairface", "gender/race", roots["fairface"], out, *eval_on)
    four, two = record.transfer["utkface"], record.transfer["utkface-cb"]
    # FairFace's 7 races read as the finest concept each UTKFace protocol reads too
    assert four.group_names == ["white", "black", "asian", "indian"] and two.group_names == ["white", "non-white"]
    assert (four.loaded_task, two.loaded_task) == (None, "gender/race")
    # in domain: the fixture's FairFace test split holds one face per (race, gender), so 2 per race
    assert (four.in_domain.n, four.in_domain.left_out) == (10, 4)
    by_group = [(g["group"], g["n"]) for g in four.in_domain.per_group["per_group"]]
    assert by_group == [("white", 2), ("black", 2), ("asian", 4), ("indian", 2)]
    assert (two.in_domain.n, two.in_domain.left_out) == (14, 0)
    race4 = np.array([FAIRFACE_RACE4.get(race, -1) for race in RACES])[arrays["test_a"]]
    kept = race4 >= 0
    y_hat = arrays["test_scores"].argmax(1)
    again = compute_metrics(arrays["test_y"][kept], y_hat[kept], race4[kept], four.group_names)
    assert nan_to_none(again.summary) == four.in_domain.metrics
    # transfer: each UTKFace test row's labels from its file name [age]_[gender]_[race]_..., gender the target
    for dataset, result in (("utkface", four), ("utkface-cb", two)):
        task = {"task": result.loaded_task} if result.loaded_task else {}
        plugin = registry().dataset(dataset)
        names = plugin.index(Path(roots["UTKFace"]), **task, **result.dataset_options).tables["test"].files
        parts = [name.split("_") for name in names]
        expected = {
            n: (int(p[1]), UTK_GROUP[dataset][int(p[2])])
            for n, p in zip(names, parts)
            if int(p[2]) in UTK_GROUP[dataset]
        }
        y, groups, ids = (arrays[f"transfer.{dataset}.{k}"] for k in ("y", "groups", "ids"))
        assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == expected
        assert (result.transfer.n, result.transfer.left_out) == (len(expected), len(names) - len(expected))
        counts = Counter(groups.tolist())
        assert [(g["group"], g["n"]) for g in result.transfer.per_group["per_group"]] == [
            (name, counts[code]) for code, name in enumerate(result.group_names) if counts[code]
        ]
    capsys.readouterr()
    assert main(["leaderboard", "tables", str(out)]) == 0
    header, rows = transfer_table(capsys.readouterr().out)
    assert header[:7] == [
        "method",
        "evaluated on",
        "seeds",
        "shared groups",
        "rows (left out)",
        "acc in-domain",
        "acc transfer",
    ]
    assert [row[:5] for row in rows] == [
        ["erm", "utkface", "1", "white, black, asian, indian", f"{four.transfer.n} ({four.transfer.left_out})"],
        ["erm", "utkface-cb", "1", "white, non-white", f"{two.transfer.n} ({two.transfer.left_out})"],
    ]
    for row, result in zip(rows, (four, two)):
        assert row[5].startswith(f"{result.in_domain.metrics['acc']:.3f} [")
        assert row[6].startswith(f"{result.transfer.metrics['acc']:.3f} [")


# The CelebA fixture's test split (partition 2: files 25-30, row i = file number - 1): Male = i % 2 and
# Young = (i // 2) % 2 (fixtures_layouts.celeba_values), by hand:
#   000025 female not_Young, 000026 male not_Young, 000027 female Young, 000028 male Young, 000029 female not_Young,
#   000030 male not_Young
CELEBA_TEST = {
    "000025.jpg": ("female", "40+"),
    "000026.jpg": ("male", "40+"),
    "000027.jpg": ("female", "0-39"),
    "000028.jpg": ("male", "0-39"),
    "000029.jpg": ("female", "40+"),
    "000030.jpg": ("male", "40+"),
}
APPROXIMATE = f"approximate-reading: celeba Young as age_40: {YOUNG_AS_UNDER_40}"


def test_a_gender_sensitive_task_is_read_on_fairface_and_on_celeba_with_its_target_approximate(roots, tmp_path):
    out = tmp_path / "runs"
    eval_on = ["--eval-on", f"fairface:{roots['fairface']}", "--eval-on", f"celeba:{roots['celeba']}"]
    record, arrays = one_erm_run("utkface", "age_binary/gender", roots["UTKFace"], out, *eval_on)
    result = record.transfer["fairface"]
    assert result.group_names == ["male", "female"]
    # FairFace's nine age bins read many-to-one as age_40: 0-2 .. 30-39 are 0-39, 40-49 .. more than 70 are 40+
    assert result.target.classes == dict(zip(AGES, ["0-39"] * 5 + ["40+"] * 4))
    # the fixture's test CSV: one face per (race, gender), age bin (2 race + gender) mod 9: bins 0-8 then 0-4, so
    # 10 faces under 40 and 4 over, 7 of each gender; every row kept
    y, groups, ids = (arrays[f"transfer.fairface.{k}"] for k in ("y", "groups", "ids"))
    expected = {
        row[0]: (int(AGES.index(row[1]) >= 5), ("Male", "Female").index(row[2])) for row in fairface_rows("val", 1)
    }
    assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == expected and Counter(y.tolist()) == {0: 10, 1: 4}
    assert (result.transfer.n, result.transfer.left_out) == (14, 0)
    assert [(g["group"], g["n"]) for g in result.transfer.per_group["per_group"]] == [("male", 7), ("female", 7)]
    # UTKFace gender reads one-to-one: in domain over the shared groups is the run's own test
    assert result.in_domain.metrics == record.metrics["test"] and result.in_domain.n == record.task_info.sizes["test"]
    assert result.approximations("utkface") == []
    # CelebA: the target age_binary (0-39 code 0, 40+ code 1) reads Young, approximately; the groups read Male
    celeba = record.transfer["celeba"]
    assert (celeba.target.attribute, celeba.target.approximate, celeba.target.source_approximate) == (
        "Young",
        YOUNG_AS_UNDER_40,
        None,
    )
    y, groups, ids = (arrays[f"transfer.celeba.{k}"] for k in ("y", "groups", "ids"))
    by_hand = {f: (("0-39", "40+").index(age), ("male", "female").index(g)) for f, (g, age) in CELEBA_TEST.items()}
    assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == by_hand
    assert [(g["group"], g["n"]) for g in celeba.transfer.per_group["per_group"]] == [("male", 3), ("female", 3)]
    assert load_runs(out)["transfer.celeba.flag_details"].tolist() == [APPROXIMATE]


def test_a_celeba_run_reads_young_as_under_40_on_fairface_and_utkface(roots, tmp_path, capsys):
    """CelebA Male/Young: the target Male reads gender exactly, the sensitive Young reads age_40 approximately; the
    note is in the record's entry, load_runs and the printed table's flags."""
    out = tmp_path / "runs"
    eval_on = ["--eval-on", f"fairface:{roots['fairface']}", "--eval-on", f"utkface:{roots['UTKFace']}"]
    record, arrays = one_erm_run("celeba", "Male/Young", roots["celeba"], out, *eval_on)
    assert list(record.transfer) == ["fairface", "utkface"]
    # in domain: Young reads one-to-one, so the shared groups are the run's own (0-39 = Young): 2 and 4 rows
    for result in record.transfer.values():
        assert result.group_names == ["0-39", "40+"]
        (young,) = result.sensitive
        assert (young.source_attribute, young.source_approximate, young.approximate) == (
            "Young",
            YOUNG_AS_UNDER_40,
            None,
        )
        assert result.target.source_classes == {"not_Male": "female", "Male": "male"}
        assert result.target.source_approximate is None and result.target.approximate is None
        assert result.in_domain.metrics == record.metrics["test"]
        assert (result.in_domain.n, result.in_domain.left_out) == (6, 0)
        assert [(g["group"], g["n"]) for g in result.in_domain.per_group["per_group"]] == [("0-39", 2), ("40+", 4)]
    # the model's classes are CelebA's (not_Male 0, Male 1); FairFace rows as in the gender-sensitive test above:
    # 14 faces, age bins 5-8 (4 faces) are 40+
    y, groups, ids = (arrays[f"transfer.fairface.{k}"] for k in ("y", "groups", "ids"))
    expected = {row[0]: (int(row[2] == "Male"), int(AGES.index(row[1]) >= 5)) for row in fairface_rows("val", 1)}
    assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == expected
    fairface = record.transfer["fairface"].transfer
    assert [(g["group"], g["n"]) for g in fairface.per_group["per_group"]] == [("0-39", 10), ("40+", 4)]
    # UTKFace reads age_binary (one-to-one) rather than age_group: each test file [age]_[gender]_[race]_..., gender 0
    # male (-> Male, 1), age 40 and over 40+ (UTK_AGES 45, 65, 80)
    names = registry().dataset("utkface").index(Path(roots["UTKFace"])).tables["test"].files
    expected = {n: (1 - int(n.split("_")[1]), int(int(n.split("_")[0]) >= 40)) for n in names}
    y, groups, ids = (arrays[f"transfer.utkface.{k}"] for k in ("y", "groups", "ids"))
    assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == expected
    utkface = record.transfer["utkface"]
    assert (utkface.sensitive[0].attribute, utkface.transfer.n, utkface.transfer.left_out) == ("age_binary", 20, 0)
    over = Counter(g for _, g in expected.values())
    assert [(g["group"], g["n"]) for g in utkface.transfer.per_group["per_group"]] == [
        ("0-39", over[0]),
        ("40+", over[1]),
    ]
    frame = load_runs(out)
    assert (
        frame["transfer.fairface.flag_details"].tolist()
        == frame["transfer.utkface.flag_details"].tolist()
        == [APPROXIMATE]
    )
    capsys.readouterr()
    assert main(["leaderboard", "tables", str(out)]) == 0
    printed = capsys.readouterr().out
    header, rows = transfer_table(printed)
    assert header[-1] == "flags"
    assert [row[:5] + row[-1:] for row in rows] == [
        ["erm", "fairface", "1", "0-39, 40+", "14 (0)", "approximate-reading"],
        ["erm", "utkface", "1", "0-39, 40+", "20 (0)", "approximate-reading"],
    ]
    for row, result in zip(rows, record.transfer.values()):
        assert row[5].startswith(f"{result.in_domain.metrics['acc']:.3f} [")
        assert row[6].startswith(f"{result.transfer.metrics['acc']:.3f} [")
    assert f"- approximate-reading (erm on fairface, erm on utkface): celeba Young as age_40: {YOUNG_AS_UNDER_40}" in (
        printed
    )


def test_a_utkface_run_with_age_groups_reads_celeba_young_approximately(roots, tmp_path, capsys):
    """UTKFace gender/age_binary on CelebA (Young approximate) and FairFace (exact): the flag on CelebA's line only."""
    out = tmp_path / "runs"
    eval_on = ["--eval-on", f"celeba:{roots['celeba']}", "--eval-on", f"fairface:{roots['fairface']}"]
    record, arrays = one_erm_run("utkface", "gender/age_binary", roots["UTKFace"], out, *eval_on)
    celeba = record.transfer["celeba"]
    (young,) = celeba.sensitive
    assert (young.source_attribute, young.attribute, young.source_approximate, young.approximate) == (
        "age_binary",
        "Young",
        None,
        YOUNG_AS_UNDER_40,
    )
    # the model's classes are UTKFace's (Male 0, Female 1); the groups 0-39 (Young) and 40+ (not_Young)
    y, groups, ids = (arrays[f"transfer.celeba.{k}"] for k in ("y", "groups", "ids"))
    by_hand = {f: (("male", "female").index(g), ("0-39", "40+").index(age)) for f, (g, age) in CELEBA_TEST.items()}
    assert dict(zip(ids, zip(y.tolist(), groups.tolist()))) == by_hand
    assert (celeba.transfer.n, celeba.transfer.left_out) == (6, 0)
    assert [(g["group"], g["n"]) for g in celeba.transfer.per_group["per_group"]] == [("0-39", 2), ("40+", 4)]
    # age_binary reads one-to-one: in domain is the run's own test
    assert celeba.in_domain.metrics == record.metrics["test"]
    assert record.transfer["fairface"].approximations("utkface") == []
    capsys.readouterr()
    assert main(["leaderboard", "tables", str(out)]) == 0
    printed = capsys.readouterr().out
    _, rows = transfer_table(printed)
    assert [row[:5] + row[-1:] for row in rows] == [
        ["erm", "celeba", "1", "0-39, 40+", "6 (0)", "approximate-reading"],
        ["erm", "fairface", "1", "0-39, 40+", "14 (0)", ""],
    ]
    assert f"- approximate-reading (erm on celeba): celeba Young as age_40: {YOUNG_AS_UNDER_40}" in printed


@pytest.mark.parametrize(
    "dataset, task, other, message",
    [
        ("fairface", "gender/race", "celeba", "its sensitive attribute 'race' (race_binary, race4) has no counterpart"),
        ("fairface", "race4/gender", "celeba", "its target 'race4' (race4) has no counterpart in celeba"),
        ("celeba", "Smiling/Male", "fairface", "its target 'Smiling' maps one-to-one onto no shared concept"),
        ("celeba", "Male/Young", "utkface-cb", "its sensitive attribute 'Young' (age_40) has no counterpart"),
        ("celeba", "Young/Male", "utkface-cb", "its target 'Young' (age_40) has no counterpart in utkface-cb"),
    ],
)
def test_pairings_with_celeba_that_do_not_map_are_refused_naming_the_attribute(
    roots, tmp_path, capsys, dataset, task, other, message
):
    root = {"fairface": roots["fairface"], "celeba": roots["celeba"], "utkface-cb": roots["UTKFace"]}
    argv = erm_on(dataset, task, root[dataset], tmp_path / "runs", "--eval-on", f"{other}:{root[other]}")
    assert main([*argv, "--dry-run"]) == 2
    (line,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("fairbench run: error:")]
    assert f"--eval-on {other}: {dataset} task '{task}': {message}" in line


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
