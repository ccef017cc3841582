"""One typed board, every format: the JSON, CSV (pandas) and Markdown of a small store show the same rows, the same
numbers and the same flags, because each renders the one `model.Board` that `tables.build` makes."""

from __future__ import annotations

import dataclasses
import json

import pytest
from records import TRAIN_ONLY, fake_record, predicted_run

from fairfacebench.leaderboard.model import Row
from fairfacebench.leaderboard.render import difference_text, summary_text, to_frame, to_json, to_markdown
from fairfacebench.leaderboard.tables import build
from fairfacebench.metrics.hierarchical import crossed_mean, crossed_paired_difference, seed_predictions
from fairfacebench.store import ResultStore

COMPARISON_FIELDS = ("vs_erm", "system_vs_ablation")
Y = [0, 1] * 10
A = [0, 0, 1, 1] * 5


def right_on_first(k: int) -> list[int]:
    """Predictions of Y that are right on the first k of the 20 rows and wrong on the rest."""
    return [y if i < k else 1 - y for i, y in enumerate(Y)]


@pytest.fixture()
def store(tmp_path):
    """erm right on 14, 16, 18 of 20 rows (acc 0.70, 0.80, 0.90) on seeds 0-2; sys on one row more each seed;
    sys:no-x (its ablation) as erm; a failed method."""
    store = ResultStore(tmp_path)
    store.write("dead-0-0", fake_record("dead", 0, error="ValueError: bad input"))
    for seed, k in enumerate([14, 16, 18]):
        for method, right, ablates in (("erm", k, None), ("sys", k + 1, None), ("sys:no-x", k, "sys")):
            record, arrays = predicted_run(
                method, seed, Y, A, right_on_first(right), ablation_of=ablates, supervision=TRAIN_ONLY
            )
            store.write(record.run_id, record, arrays)
    return store


@pytest.fixture()
def board(store):
    return build(store.root)


def test_the_json_is_the_board_field_by_field_in_the_models_order(board):
    (table,) = json.loads(to_json(board))["tables"]
    rows = board.tables[0].rows
    assert [r["method"] for r in table["rows"]] == [r.method for r in rows] == ["dead", "erm", "sys", "sys:no-x"]
    # without a search in the store a row has no regimes key; a failed row is compared with nothing
    names = [f.name for f in dataclasses.fields(Row) if f.name != "regimes"]
    for plain, row in zip(table["rows"], rows):
        assert list(plain) == (names if row.ok else [n for n in names if n not in COMPARISON_FIELDS])
        if row.ok:
            assert plain["acc"] == dataclasses.asdict(row.acc) and plain["per_seed"]["acc"] == {
                str(seed): value for seed, value in row.per_seed["acc"].items()
            }
            assert plain["flags"] == [dataclasses.asdict(f) for f in row.flags] and plain["tier"] == "train labels"
    assert table["rows"][0]["acc"] == {"mean": None, "std": None, "n": 0, "interval": None}  # NaN as null
    assert table["rows"][0]["failed_runs"] == [{"run_id": "dead-0-0", "error": "ValueError: bad input"}]
    assert table["rows"][1]["vs_erm"] is None and table["rows"][3]["system_vs_ablation"]["acc"]["seeds"] == [0, 1, 2]
    assert [(k["tier"], k["metric"]) for k in table["rankings"]][:2] == [
        ("train labels", "acc"),
        ("train labels", "eod_max"),
    ]


def test_csv_and_markdown_show_the_same_rows_numbers_and_flags(board, store):
    rows = {r.method: r for r in board.tables[0].rows}
    frame = to_frame(board)
    assert frame.method.tolist() == list(rows) and frame.status.tolist() == ["failed", "ok", "ok", "ok"]
    # erm over seeds: 0.7, 0.8, 0.9 -> mean 0.8, std 0.1; the interval is the crossed bootstrap's of its predictions
    erm = frame.set_index("method").loc["erm"]
    runs = [store.predictions(f"erm-{s}-0") for s in range(3)]
    expected = crossed_mean(*seed_predictions(runs, 2), 2, 2, 1000, seed=0)["metrics"]["acc"]["interval"]
    assert (erm.acc_mean, erm.acc_std) == (pytest.approx(0.8), pytest.approx(0.1))
    assert [erm.acc_lo, erm.acc_hi] == pytest.approx(expected) and rows["erm"].acc.interval == pytest.approx(expected)
    assert rows["erm"].interval_method.startswith("± is the std over seeds (ddof=1); [lo, hi] the 95% interval of")
    # 20 balanced test rows: se = sqrt(0.25 / 20) = 0.1118, so acc 0.70 < 0.5 + 2 se = 0.724 is at chance (seed 0) and
    # 0.80, 0.90 < 0.5 + 4 se = 0.947 near chance (seeds 1, 2); dp_diff is 0 on every seed, but not on resampled
    # test rows, so its interval has a width (a t-interval over the seeds alone had none)
    assert erm.tier == "train labels" and erm["flags"] == "at-chance, near-chance"
    assert rows["erm"].dp_diff.mean == 0 and rows["erm"].dp_diff.interval[1] > 0
    assert erm["flag_details"].startswith("at-chance: seed 0: test accuracy 0.700 below 0.724")
    markdown = to_markdown(board)
    blocks = markdown.split("\n\n")
    leaderboard = next(b for b in blocks if b.startswith("| method "))  # the first table
    lines = {line.split("|")[1].strip(): line for line in leaderboard.splitlines()[2:]}
    shown = f"0.800 ± 0.100 [{expected[0]:.3f}, {expected[1]:.3f}]"
    assert summary_text(rows["erm"].acc) == shown and shown in lines["erm"]
    assert list(lines) == list(rows) and lines["dead"].count("failed") == 5
    for method, row in rows.items():
        shown = [summary_text(row.summary(m)) in lines[method] for m in ("acc", "eod_max")]
        assert shown == [row.ok, row.ok]  # a failed row shows "failed", not its undefined numbers
        assert lines[method].split("|")[-2].strip() == frame.set_index("method").loc[method]["flags"]
    header = [h.strip() for h in leaderboard.splitlines()[0].strip("|").split("|")]
    assert header[:2] == ["method", "tier"] and header[-1] == "flags"


def test_paired_differences_are_the_crossed_bootstrap_of_the_stored_predictions(board, store):
    rows = {r.method: r for r in board.tables[0].rows}
    # sys − erm: one row more right on every seed, +1/20 = +0.050 per seed; the interval comes from drawing seeds and
    # rows, so it is not the point [+0.050, +0.050] a t-interval over three equal differences would give
    runs = [store.predictions(f"{m}-{s}-0") for m in ("sys", "erm") for s in range(3)]
    y, g, predictions = seed_predictions(runs, 2)
    expected = crossed_paired_difference(y, g, predictions[:3], predictions[3:], 2, 2, 1000, seed=0)["metrics"]["acc"]
    difference = rows["sys"].vs_erm["acc"]
    assert difference.mean == pytest.approx(0.05) and difference.ci95 == expected["interval"]
    assert difference.p_value == expected["p_value"] and difference.method == "crossed paired bootstrap"
    assert difference.ci95[0] <= 0.05 <= difference.ci95[1] and difference.ci95[0] < difference.ci95[1]
    paired = next(b for b in to_markdown(board).split("\n\n") if b.startswith("| method − erm")).splitlines()
    assert [line.split("|")[1].strip() for line in paired[2:]] == ["sys", "sys:no-x"]  # erm is the reference
    assert difference_text(difference) in paired[2]


def test_without_stored_predictions_the_interval_over_seeds_is_a_t_interval_and_says_so(tmp_path):
    store = ResultStore(tmp_path)
    for seed, acc in enumerate([0.7, 0.8, 0.9]):
        store.write(f"erm-{seed}", fake_record("erm", seed, test={"acc": acc}))
    (row,) = build(store.root).tables[0].rows
    # mean 0.8, std 0.1; t_{0.975,2} = 4.3027 -> 0.8 ± 0.2484, clipped to [0.552, 1]
    assert row.acc.interval == [pytest.approx(0.5516, abs=1e-4), 1.0]
    assert "Student-t interval" in row.interval_method and "not counted" in row.interval_method
