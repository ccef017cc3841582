"""One typed board, every format: the JSON, CSV (pandas) and Markdown of a small store show the same rows and the
same numbers, because each renders the one `model.Board` that `tables.build` makes."""

from __future__ import annotations

import dataclasses
import json

import pytest
from records import fake_record, metrics

from fairfacebench.leaderboard.model import Row
from fairfacebench.leaderboard.render import difference_text, summary_text, to_frame, to_json, to_markdown
from fairfacebench.leaderboard.tables import build
from fairfacebench.store import ResultStore

COMPARISON_FIELDS = ("vs_erm", "system_vs_ablation", "mean_rank")


@pytest.fixture()
def board(tmp_path):
    store = ResultStore(tmp_path)
    records = [fake_record("dead", 0, error="ValueError: bad input")]
    for seed, acc in enumerate([0.70, 0.80, 0.90]):
        records += [
            fake_record("erm", seed, test=metrics(acc, eod=0.2)),
            fake_record("sys", seed, test=metrics(acc + 0.05, eod=0.1)),
            fake_record("sys:no-x", seed, test=metrics(acc, eod=0.1), ablation_of="sys"),
        ]
    for record in records:
        store.write(record.run_id, record)
    return build(tmp_path)


def test_the_json_is_the_board_field_by_field_in_the_models_order(board):
    (table,) = json.loads(to_json(board))["tables"]
    rows = board.tables[0].rows
    assert [r["method"] for r in table["rows"]] == [r.method for r in rows] == ["dead", "erm", "sys", "sys:no-x"]
    names = [f.name for f in dataclasses.fields(Row)]
    for plain, row in zip(table["rows"], rows):
        # a failed row is compared with nothing: it has no comparison keys at all (a finished one has them, or null)
        assert list(plain) == (names if row.ok else [n for n in names if n not in COMPARISON_FIELDS])
        if row.ok:
            assert plain["acc"] == dataclasses.asdict(row.acc) and plain["per_seed"]["acc"] == {
                str(seed): value for seed, value in row.per_seed["acc"].items()
            }
    assert table["rows"][0]["acc"] == {"mean": None, "std": None, "n": 0, "interval": None}  # NaN as null
    assert table["rows"][0]["failed_runs"] == [{"run_id": "dead-0-0", "error": "ValueError: bad input"}]
    assert table["rows"][1]["vs_erm"] is None and table["rows"][3]["system_vs_ablation"]["acc"]["seeds"] == [0, 1, 2]


def test_csv_and_markdown_show_the_same_rows_and_numbers(board):
    rows = {r.method: r for r in board.tables[0].rows}
    frame = to_frame(board)
    assert frame.method.tolist() == list(rows) and frame.status.tolist() == ["failed", "ok", "ok", "ok"]
    # erm over seeds: 0.7, 0.8, 0.9 -> mean 0.8, std 0.1; t_{0.975,2} = 4.3027 -> 0.8 ± 0.2484, clipped to [0.552, 1]
    erm = frame.set_index("method").loc["erm"]
    assert (erm.acc_mean, erm.acc_std, erm.acc_hi) == (pytest.approx(0.8), pytest.approx(0.1), 1.0)
    assert erm.acc_lo == pytest.approx(rows["erm"].acc.interval[0]) == pytest.approx(0.5516, abs=1e-4)
    markdown = to_markdown(board)
    blocks = markdown.split("\n\n")
    leaderboard = next(b for b in blocks if b.startswith("| method "))  # the first table
    lines = {line.split("|")[1].strip(): line for line in leaderboard.splitlines()[2:]}
    assert (
        summary_text(rows["erm"].acc) == "0.800 ± 0.100 [0.552, 1.000]"
        and "0.800 ± 0.100 [0.552, 1.000]" in lines["erm"]
    )
    assert list(lines) == list(rows) and lines["dead"].count("failed") == 5
    for method, row in rows.items():
        shown = [summary_text(row.summary(m)) in lines[method] for m in ("acc", "eod_max")]
        assert shown == [row.ok, row.ok]  # a failed row shows "failed", not its undefined numbers
    # sys − erm is +0.05 on every seed: std 0, so the t-interval is the point [+0.050, +0.050]
    paired = next(b for b in blocks if b.startswith("| method − erm")).splitlines()
    assert difference_text(rows["sys"].vs_erm["acc"]) == "+0.050 [+0.050, +0.050]"
    assert [line.split("|")[1].strip() for line in paired[2:]] == ["sys", "sys:no-x"]  # erm is the reference
    assert "+0.050 [+0.050, +0.050]" in paired[2]
    assert any(b.startswith("| system − ablation ") and "| sys − sys:no-x " in b for b in blocks)
