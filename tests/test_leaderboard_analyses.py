"""The board's analyses beyond its columns, end to end from a store of hand-made predictions on small synthfaces:
accuracy at equal fairness, calibration per group, intersectional gaps (labels read back through the dataset plugin)
and in-domain vs transfer, in the Markdown, CSV, JSON, pandas and site outputs; numbers checked by hand."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from records import fake_record

import fairfacebench
from fairfacebench.cli import main
from fairfacebench.data import make_task_data
from fairfacebench.errors import DataError
from fairfacebench.leaderboard.render import to_frame, to_json, to_markdown
from fairfacebench.leaderboard.site import build_site
from fairfacebench.leaderboard.tables import build
from fairfacebench.metrics.fairness import compute_metrics
from fairfacebench.metrics.unprocessing import accuracy_at_equal_odds
from fairfacebench.plain import nan_to_none
from fairfacebench.plugins import registry
from fairfacebench.readback import DataAccess, Intersect
from fairfacebench.record import SharedAttribute, SharedGroupsScore, TransferResult
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES

TASK = "smiling/skin_tone"
GROUPS = ["light", "medium", "dark"]
# Generated data needs no root: an empty DataAccess reads labels back; --intersect over the two synthfaces attributes.
ACCESS = DataAccess({}, Intersect("synthfaces", ("skin_tone", "hair_length"), min_cell=10))
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # error-parity's solver stack


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    plugin = registry().dataset("synthfaces")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRBENCH_CACHE", str(cache))
        ds = plugin.load(None, 32, cache, **SMALL_SYNTHFACES)
    return cache, ds, make_task_data(ds, plugin.task(TASK))


def perfect(y: np.ndarray) -> np.ndarray:
    """P(Y=1) 0.9 for every positive and 0.1 for every negative: always right, always 0.9 confident."""
    return np.where(y == 1, 0.9, 0.1)


def biased(y: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Right with confidence 0.7, but every other dark positive scored 0.2, below the negatives' 0.3 (missed)."""
    p = np.where(y == 1, 0.7, 0.3)
    return np.where((a == 2) & (y == 1) & (np.arange(len(y)) % 2 == 0), 0.2, p)


def run(method: str, seed: int, data, p_test: np.ndarray, p_val: np.ndarray, **fields):
    """A finished run on the synthfaces task whose stored predictions are the given P(Y=1) (test and selection)."""
    td = data[2]
    scores = np.stack([1 - p_test, p_test], axis=1).astype(np.float32)
    report = compute_metrics(td.test.y, scores.argmax(1), td.test.a, GROUPS)
    record = fake_record(
        method,
        seed,
        test=nan_to_none(report.summary),
        groups=nan_to_none(report.per_group),
        group_names=GROUPS,
        dataset="synthfaces",
        task=TASK,
        resolution=32,
        dataset_options=SMALL_SYNTHFACES,
        bootstrap=200,
        **fields,
    )
    arrays = {
        "test_scores": scores,
        "test_y": td.test.y,
        "test_a": td.test.a,
        "test_ids": td.test.ids.astype(str),
        "val_scores": np.stack([1 - p_val, p_val], axis=1).astype(np.float32),
        "val_ids": td.val_select.ids.astype(str),
    }
    return record, arrays


@pytest.fixture()
def store(tmp_path, data, monkeypatch):
    monkeypatch.setenv("FAIRBENCH_CACHE", str(data[0]))
    td = data[2]
    store = ResultStore(tmp_path / "store")
    for seed in (0, 1):
        for method, p_test, p_val in (
            ("perfect", perfect(td.test.y), perfect(td.val_select.y)),
            ("erm", biased(td.test.y, td.test.a), biased(td.val_select.y, td.val_select.a)),
        ):
            record, arrays = run(method, seed, data, p_test, p_val)
            store.write(record.run_id, record, arrays)
    return store


def rows(board):
    (table,) = board.tables
    return table, {r.method: r for r in table.rows}


def test_accuracy_at_equal_fairness_by_hand_and_as_error_parity_gives_it(store, data):
    table, by = rows(build(store.root, access=ACCESS))
    # perfect predictions are already at eod_max 0: at every tolerance the thresholds keep every row right
    for point in by["perfect"].equal_fairness:
        assert (point.acc.mean, point.eod_max.mean, point.acc.std) == (1.0, 0.0, 0.0)
    assert [p.tolerance for p in by["erm"].equal_fairness] == [0.02, 0.05, 0.10]
    # erm: the board's numbers are error-parity's on the stored scores, fitted with the selection half's labels
    td = data[2]
    stored = [store.predictions(f"erm-{seed}-0") for seed in (0, 1)]
    direct = [
        accuracy_at_equal_odds(
            a["val_scores"], td.val_select.y, td.val_select.a, a["test_scores"], td.test.y, td.test.a, seed=seed
        )
        for seed, a in enumerate(stored)
    ]
    for i, point in enumerate(by["erm"].equal_fairness):
        assert point.acc.mean == pytest.approx(np.mean([d[i]["test_acc"] for d in direct]), abs=1e-6)
        assert point.eod_max.mean == pytest.approx(np.mean([d[i]["test_eod_max"] for d in direct]), abs=1e-6)
    # orders: perfect is the most accurate raw and at every tolerance (Kendall's tau 1); erm stays below it
    assert all(p.acc.mean < 1 for p in by["erm"].equal_fairness)
    assert [(o.order[0], o.raw_order[0], o.kendall_tau) for o in table.equal_fairness_orders] == [
        ("perfect",) * 2 + (1.0,)
    ] * 3
    assert any("uses the sensitive attribute at inference" in n for n in table.analysis_notes)


def test_calibration_per_group_by_hand(store):
    _, by = rows(build(store.root))
    c = by["perfect"].calibration
    # every row right at confidence 0.9: |1 - 0.9| = 0.1 in the one filled bin of every group; Brier (1 - 0.9)² = 0.01
    assert (c.ece.mean, c.ece_gap.mean) == (pytest.approx(0.1), pytest.approx(0.0))
    assert (c.brier.mean, c.brier_max.mean) == (pytest.approx(0.01), pytest.approx(0.01))
    assert [g.group for g in c.per_group] == GROUPS and all(g.ece == pytest.approx(0.1) for g in c.per_group)
    # the diagram pools both seeds' rows: confidence 0.9 lies in bin 14 of 15, (13/15, 14/15] = (0.867, 0.933]
    light = c.per_group[0]
    filled = [b for b in light.reliability if b["count"]]
    assert len(filled) == 1 and filled[0]["count"] == 2 * light.n and filled[0]["accuracy"] == 1.0
    assert filled[0]["lower"] == pytest.approx(13 / 15)
    # erm, light and medium: right at 0.7 -> ECE 0.3 each; dark also has rows wrong at confidence 0.8: the worst ECE
    erm = by["erm"].calibration
    assert erm.per_group[0].ece == pytest.approx(0.3) and erm.ece_max.mean == pytest.approx(erm.per_group[2].ece)


def test_intersectional_cells_merge_and_perfect_predictions_have_no_gap_by_hand(store, data):
    # The small synthfaces test split has 14 smiling and 14 not in each light and medium cell, 12 and 12 in each dark
    # cell. With a minimum of 13 per class the two dark cells are small; pooled, dark has 24 and 24: one cell
    # "dark|other hair_length" of 48 rows.
    test = data[1].splits["test"]
    cells = test.labels["skin_tone"] * 2 + test.labels["hair_length"]
    counts = np.bincount(cells * 2 + test.labels["smiling"], minlength=12).reshape(6, 2)
    assert counts.tolist() == [[14, 14]] * 4 + [[12, 12]] * 2
    access = replace(ACCESS, intersect=replace(ACCESS.intersect, min_cell=13))
    table, by = rows(build(store.root, access=access))
    x = table.intersectional
    assert (x.dataset, x.attributes, x.min_cell) == ("synthfaces", ["skin_tone", "hair_length"], 13)
    assert x.groups == [
        ("light|short", 28),
        ("light|long", 28),
        ("medium|short", 28),
        ("medium|long", 28),
        ("dark|other hair_length", 48),
    ]
    assert x.merged == [
        {"cell": "dark|short", "count": 12, "rows": 24, "into": "dark|other hair_length"},
        {"cell": "dark|long", "count": 12, "rows": 24, "into": "dark|other hair_length"},
    ]
    assert x.left_out == [] and "13 rows of some target class" in x.rule
    # perfect predictions: TPR 1 and FPR 0 in every cell -> eod_max 0, wga 1; every cell is half smiling, so every
    # selection rate is 0.5 and dp_diff 0
    got = by["perfect"].intersectional
    assert (got["eod_max"].mean, got["wga"].mean, got["dp_diff"].mean) == (0.0, 1.0, 0.0)
    # erm misses every other dark positive and no negative: every cell has FPR 0 and the light and medium cells TPR 1;
    # the merged dark cell is all of dark, so the intersectional eod_max is 1 - TPR(dark) of the per-group table
    (dark,) = [g for g in by["erm"].per_group if g.group == "dark"]
    assert 0 < dark.tpr < 1 and by["erm"].intersectional["eod_max"].mean == pytest.approx(1 - dark.tpr)


def test_every_output_shows_the_analyses(store, tmp_path):
    board = build(store.root, access=ACCESS)
    markdown = to_markdown(board)
    for heading in (
        "### Accuracy at equal fairness (uses the sensitive attribute at inference)",
        "### Calibration per group",
        "### Intersectional groups: skin_tone × hair_length",
        "Order by mean test accuracy",
    ):
        assert heading in markdown
    assert "pooled per first-attribute value" in markdown
    frame = to_frame(board).set_index("method")
    assert frame.loc["perfect", "at_eod0.05_acc_mean"] == 1.0 and frame.loc["perfect", "ece_mean"] == pytest.approx(0.1)
    assert "sensitive attribute at inference" in frame.loc["perfect", "at_eod_uses"]
    assert (
        frame.loc["perfect", "intersectional_eod_max_mean"] == 0.0
        and "of some target class" in frame.loc["perfect", "intersectional_rule"]
    )
    plain = json.loads(to_json(board))["tables"][0]
    perfect_row = next(r for r in plain["rows"] if r["method"] == "perfect")
    assert perfect_row["equal_fairness"][1]["acc"]["mean"] == 1.0 and plain["intersectional"]["rule"]
    assert perfect_row["calibration"]["per_group"][0]["ece"] == pytest.approx(0.1)
    runs = fairfacebench.load_runs(store.root, ACCESS).set_index(["method", "seed"])
    assert runs.loc[("perfect", 0), "test.at_eod_0.05.acc"] == 1.0
    assert runs.loc[("perfect", 0), "test.calibration.ece"] == pytest.approx(0.1)
    assert runs.loc[("perfect", 0), "test.intersectional.eod_max"] == 0.0
    assert runs.loc[("perfect", 0), "analyses_not_made"] == ""
    out = tmp_path / "site"
    build_site(store.root, out, access=ACCESS)
    index = (out / "index.html").read_text()
    assert "Accuracy at equal fairness (uses the sensitive attribute at inference)" in index
    assert "Intersectional groups" in index and "-equal-fairness.svg" in index
    page = (out / "method-perfect.html").read_text()
    assert "-reliability.svg" in page and "-equal-fairness.svg" in page and "Calibration per group" in page


def test_without_labels_the_outputs_say_what_was_not_made(store):
    table, by = rows(build(store.root))
    assert by["erm"].equal_fairness is None and by["erm"].intersectional is None and by["erm"].calibration
    notes = "\n".join(table.analysis_notes)
    assert "accuracy at equal fairness not computed (every row): needs labels the store does not hold" in notes
    assert "intersectional gaps not computed (every row)" in notes
    assert "accuracy at equal fairness not computed" in to_markdown(build(store.root))


def test_labels_the_data_contradicts_are_an_error_naming_the_dataset(store, data):
    record, arrays = run("liar", 0, data, perfect(data[2].test.y), perfect(data[2].val_select.y))
    arrays["test_y"] = 1 - arrays["test_y"]
    store.write(record.run_id, record, arrays)
    with pytest.raises(DataError, match="synthfaces at \\(generated\\): 160 of 160 test images have other labels"):
        build(store.root, access=ACCESS)


def shared(n: int, acc: float, eod: float) -> SharedGroupsScore:
    return SharedGroupsScore(n=n, left_out=2, metrics={"acc": acc, "eod_max": eod, "wga": acc - 0.2}, per_group={})


def test_in_domain_vs_transfer_over_seeds_by_hand(tmp_path):
    store = ResultStore(tmp_path)
    attribute = SharedAttribute("gender", "gender", {"Male": "male"}, "gender", {"Male": "male"})
    for seed, (own, other) in enumerate(((0.90, 0.70), (0.80, 0.60))):
        result = TransferResult(
            dataset="fairface",
            data_fingerprint="f",
            dataset_options={},
            loaded_task=None,
            target=attribute,
            sensitive=[attribute],
            group_names=["white", "non-white"],
            in_domain=shared(100, own, 0.1),
            transfer=shared(50, other, 0.3),
            eval_time_s=1.0,
        )
        store.write(f"erm-{seed}", replace(fake_record("erm", seed), transfer={"fairface": result}))
    table, by = rows(build(tmp_path))
    (x,) = by["erm"].transfer
    # in domain 0.90, 0.80 -> mean 0.85, std 0.0707; transfer 0.70, 0.60 -> 0.65; eod_max 0.1 and 0.3 on both seeds
    assert (x.dataset, x.seeds, x.n, x.left_out) == ("fairface", [0, 1], 50, 2)
    assert x.in_domain["acc"].mean == pytest.approx(0.85) and x.transfer["acc"].mean == pytest.approx(0.65)
    assert x.in_domain["acc"].std == pytest.approx(0.0707, abs=1e-4) and x.transfer["eod_max"].mean == pytest.approx(
        0.3
    )
    markdown = to_markdown(build(tmp_path))
    assert "### In-domain vs transfer" in markdown
    line = next(li for li in markdown.splitlines() if li.startswith("| erm ") and "fairface" in li)
    assert "0.850 ± 0.071" in line and "0.650 ± 0.071" in line and "50 (2)" in line
    frame = to_frame(build(tmp_path)).set_index("method")
    assert frame.loc["erm", "transfer_fairface_acc_mean"] == pytest.approx(0.65)
    assert frame.loc["erm", "transfer_fairface_acc_in_domain_mean"] == pytest.approx(0.85)


def test_an_approximate_reading_flags_its_transfer_line_in_every_output(tmp_path):
    """Runs of d read on celeba with an approximate sensitive reading and on fairface exactly: the celeba line (not
    the fairface one) carries 'approximate-reading' with the plugin's note, in every output."""
    store = ResultStore(tmp_path / "runs")
    gender = SharedAttribute("gender", "gender", {"Male": "male"}, "gender", {"Male": "male"})
    young = replace(gender, concept="age_40", attribute="Young", approximate="an impression, read as under 40")
    for seed in (0, 1):
        results = {
            dataset: TransferResult(
                dataset=dataset,
                data_fingerprint="f",
                dataset_options={},
                loaded_task=None,
                target=gender,
                sensitive=[sensitive],
                group_names=["0-39", "40+"],
                in_domain=shared(100, 0.9, 0.1),
                transfer=shared(50, 0.7, 0.3),
                eval_time_s=1.0,
            )
            for dataset, sensitive in (("celeba", young), ("fairface", gender))
        }
        store.write(f"erm-{seed}", replace(fake_record("erm", seed), transfer=results))
    detail = "celeba Young as age_40: an impression, read as under 40"
    board = build(store.root)
    _, by = rows(board)
    flagged, exact = by["erm"].transfer
    assert [(f.code, f.detail) for f in flagged.flags] == [("approximate-reading", detail)] and not exact.flags
    markdown = to_markdown(board)
    header = next(li for li in markdown.splitlines() if li.startswith("| method ") and "evaluated on" in li)
    assert header.rstrip(" |").endswith("flags")
    lines = [li for li in markdown.splitlines() if li.startswith("| erm ") and ("celeba" in li or "fairface" in li)]
    assert lines[0].rstrip(" |").endswith("approximate-reading") and "approximate" not in lines[1]
    assert f"- approximate-reading (erm on celeba): {detail}" in markdown
    frame = to_frame(board).set_index("method")
    assert frame.loc["erm", "transfer_celeba_flags"] == "approximate-reading"
    assert frame.loc["erm", "transfer_celeba_flag_details"] == f"approximate-reading: {detail}"
    assert frame.loc["erm", "transfer_fairface_flags"] == ""
    plain = json.loads(to_json(board))["tables"][0]["rows"][0]["transfer"]
    assert plain[0]["flags"] == [{"code": "approximate-reading", "detail": detail}] and plain[1]["flags"] == []
    runs = fairfacebench.load_runs(store.root).set_index("seed")
    assert runs.loc[0, "transfer.celeba.flag_details"] == f"approximate-reading: {detail}"
    assert runs.loc[0, "transfer.fairface.flags"] == ""
    build_site(store.root, tmp_path / "site")
    assert f"Flags: approximate-reading (erm on celeba): {detail}." in (tmp_path / "site" / "index.html").read_text()


def test_the_command_line_reads_labels_back_and_refuses_a_malformed_intersect(store, tmp_path, capsys):
    argv = ["leaderboard", "tables", str(store.root), "--out", str(tmp_path / "lb")]
    assert main([*argv, "--intersect", "synthfaces:skin_tone+hair_length", "--min-cell", "13"]) == 0
    markdown = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert "dark\\|short (size 12) into dark\\|other hair_length" in markdown
    assert "### Accuracy at equal fairness (uses the sensitive attribute at inference)" in markdown
    capsys.readouterr()
    assert main([*argv, "--intersect", "synthfaces:skin_tone"]) == 2
    assert "--intersect synthfaces:skin_tone: expected DATASET:ATTRIBUTE+ATTRIBUTE" in capsys.readouterr().err


def test_stage_diagnostics_over_seeds_by_hand(tmp_path):
    store = ResultStore(tmp_path)
    reports = [
        {
            "clusters": {"ami_with_true_groups": 0.2, "true_groups_per_part": {"0": {"a": 3}}},
            "4-pseudo-labels": {"accuracy_all_per_group": {"a": 0.5, "b": None}, "rule": "text"},
        },
        {
            "clusters": {"ami_with_true_groups": 0.4, "true_groups_per_part": {"1": {"a": 3}}},
            "4-pseudo-labels": {"accuracy_all_per_group": {"a": 0.9, "b": 0.6}, "with_truth": 7},
        },
    ]
    for seed, report in enumerate(reports):
        store.write(f"ssl-{seed}", replace(fake_record("ssl", seed), diagnostics=report))
    store.write("erm-0", fake_record("erm", 0))
    _, by = rows(build(tmp_path))
    found = {(m.stage, m.quantity): (m.mean, m.low, m.high, m.seeds) for m in by["ssl"].mechanisms}
    # AMI 0.2 and 0.4 -> mean 0.3; accuracy of group a 0.5, 0.9 -> 0.7; b and with_truth only on seed 1;
    # text, None and the per-run cluster make-up (arbitrary part numbers) are not summarised
    assert found == {
        ("clusters", "ami_with_true_groups"): (pytest.approx(0.3), 0.2, 0.4, 2),
        ("4-pseudo-labels", "accuracy_all_per_group.a"): (pytest.approx(0.7), 0.5, 0.9, 2),
        ("4-pseudo-labels", "accuracy_all_per_group.b"): (0.6, 0.6, 0.6, 1),
        ("4-pseudo-labels", "with_truth"): (7.0, 7.0, 7.0, 1),
    }
    assert by["erm"].mechanisms is None
    markdown = to_markdown(build(tmp_path))
    line = next(li for li in markdown.splitlines() if "ami_with_true_groups" in li)
    assert "| ssl " in line and "0.200 – 0.400" in line
    assert json.loads(to_json(build(tmp_path)))["tables"][0]["rows"][1]["mechanisms"][0]["quantity"] == (
        "ami_with_true_groups"
    )
    build_site(tmp_path, tmp_path / "site")
    page = (tmp_path / "site" / "method-ssl.html").read_text()
    assert "How the stages worked" in page and "0.200 – 0.400" in page
    assert "How the stages worked" not in (tmp_path / "site" / "method-erm.html").read_text()


def test_a_pretrained_encoders_shared_preparation_counts_each_embedded_array_once(tmp_path):
    store = ResultStore(tmp_path)

    def vlm(arrays):
        report = {"trained_on": "faces", "captions_name": [], "samples": 0, "train_time_s": 0, "arrays": arrays}
        return {"id": "face-x", "provenance": {"licence": "CC0 1.0"}, "report": report}

    a, b, c = {"images": 100, "seconds": 10.0}, {"images": 20, "seconds": 2.5}, {"images": 5, "seconds": 0.5}
    store.write("m-0", replace(fake_record("m", 0), vlm=vlm({"a": a, "b": b})))
    store.write("m-1", replace(fake_record("m", 1), vlm=vlm({"a": a, "c": c})))  # array a again: counted once
    store.write("e-0", fake_record("e", 0))  # read no encoder
    (prep,) = build(tmp_path).tables[0].shared_preparation
    assert (prep.encoder, prep.samples, prep.train_time_s) == ("face-x", 125, 13.0)
    assert "embedded 125 images once each in 13.0 s" in prep.description and "licence: CC0 1.0" in prep.description
    assert prep.description in to_markdown(build(tmp_path))
    assert prep.description in build_site(tmp_path, tmp_path / "site")["index"].read_text()
