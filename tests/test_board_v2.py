"""Board v2 on small hand-written stores: default vs tuned under a search, three selection regimes with the test
oracle as an upper bound, information tiers, paired bootstrap comparisons with Holm, intervals that hold their
estimate, hardware, and every warning as a flag."""

from __future__ import annotations

import dataclasses
import json
import shutil
from types import SimpleNamespace

import pytest
from records import TRAIN_ONLY, fake_record, metrics, predicted_run

from fairfacebench.budget import Budget
from fairfacebench.cli import main
from fairfacebench.flags import information_tier
from fairfacebench.leaderboard.model import PairedDifference
from fairfacebench.leaderboard.paired import holm_family
from fairfacebench.leaderboard.render import difference_text, regime_difference_text, to_frame, to_json, to_markdown
from fairfacebench.leaderboard.search import ORACLE
from fairfacebench.leaderboard.site import build_site
from fairfacebench.leaderboard.tables import build
from fairfacebench.leaderboard.verdict import ablation_verdict, verdict
from fairfacebench.metrics.bootstrap import intervals_from_counts
from fairfacebench.metrics.compare import holm
from fairfacebench.metrics.fairness import confusion_counts
from fairfacebench.plugins import registry
from fairfacebench.provenance import hardware_of
from fairfacebench.record import Isolation
from fairfacebench.results import load_runs
from fairfacebench.store import ResultStore

SEARCH = {"seeds": 3, "search_seeds": 1, "hparam_trials": 4}  # trials 1-3 on seed 0, the picks on seeds 1-2
VAL_ONLY = {"target": "val", "sensitive": "val", "sensitive_at_inference": False}


def searched(method, seed, trial, val_acc, val_wga, test_acc, **fields):
    return fake_record(
        method,
        seed,
        trial,
        val=metrics(val_acc, wga=val_wga),
        test=metrics(test_acc),
        hparams={"trial": trial},
        config=SEARCH,
        supervision=TRAIN_ONLY,
        **fields,
    )


SEARCH_VALUES = {  # (seed, trial): (val_acc, val_wga, test_acc) of `search_store`
    (0, 0): (0.80, 0.5, 0.70),
    (0, 1): (0.70, 0.9, 0.80),
    (0, 2): (0.85, 0.4, 0.75),
    (0, 3): (0.60, 0.1, 0.99),
    (1, 0): (0.90, 0.5, 0.72),
    (1, 2): (0.50, 0.4, 0.78),
    (1, 1): (0.40, 0.9, 0.82),
    (2, 0): (0.90, 0.5, 0.74),
    (2, 2): (0.50, 0.4, 0.80),
    (2, 1): (0.40, 0.9, 0.84),
}


@pytest.fixture()
def search_store(tmp_path):
    """Seed 0 holds trials 0-3; val_acc picks trial 2, val_wga trial 1, the best test accuracy is trial 3's. Seeds 1
    and 2 hold trial 0 and the two rules' picks; trial 0 is best on their validation, so picking per seed (the
    protocol without a search) would take trial 0 there."""
    store = ResultStore(tmp_path)
    for (seed, trial), values in SEARCH_VALUES.items():
        r = searched("m", seed, trial, *values)
        store.write(r.run_id, r)
    return tmp_path


def test_with_a_search_the_row_is_the_tuned_trial_over_every_seed_beside_the_defaults(search_store):
    (row,) = build(search_store, "val_acc").tables[0].rows
    # val_acc picks trial 2 on seed 0 (0.85); the row is trial 2 on seeds 0-2, not the per-seed pick (trial 0 on 1-2)
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 2), (1, 2), (2, 2)]
    assert row.acc.mean == pytest.approx((0.75 + 0.78 + 0.80) / 3)
    default, by_acc, by_wga, oracle = row.regimes
    assert [g.regime for g in row.regimes] == ["default", "val_acc", "val_wga", "test oracle"]
    assert [g.trial for g in row.regimes] == [0, 2, 1, 3]
    assert default.seeds == [0, 1, 2] and default.metrics["acc"].mean == pytest.approx(0.72)
    assert default.minus_default is None and not default.upper_bound
    # tuned − default per seed: 0.05, 0.06, 0.06 (val_acc); 0.10, 0.10, 0.10 (val_wga)
    assert by_acc.minus_default["acc"].mean == pytest.approx(0.17 / 3) and by_acc.minus_default["acc"].seeds == [
        0,
        1,
        2,
    ]
    assert by_wga.minus_default["acc"].mean == pytest.approx(0.10)
    # the oracle reads test accuracy (trial 3: 0.99), which ran on the search seed only: an upper bound
    assert oracle.upper_bound and oracle.seeds == [0] and oracle.metrics["acc"].mean == 0.99
    assert oracle.minus_default["acc"].mean == pytest.approx(0.29) and oracle.minus_default["acc"].n == 1
    # one seed: not judged, and outside the regime's Holm family
    assert oracle.minus_default["acc"].tied is None and oracle.minus_default["acc"].p_holm is None
    table = build(search_store, "val_acc").tables[0]
    assert table.search.search_seeds == [0] and table.search.trials == [0, 1, 2, 3]
    markdown = to_markdown(build(search_store, "val_acc"))
    assert "Default vs tuned." in markdown and "| test oracle (upper bound) |" in markdown
    # a regime's metrics carry the rows' interval (the crossed bootstrap over seeds and test rows), not another
    assert by_acc.metrics["acc"] == row.acc and default.metrics["acc"].interval is not None
    plain = json.loads(to_json(build(search_store, "val_acc")))["tables"][0]
    assert plain["search"]["regimes"] == ["default", "val_acc", "val_wga", "test oracle"]
    frame = to_frame(build(search_store, "val_acc")).iloc[0]
    assert (frame.default_trial, frame.val_wga_trial, frame.test_oracle_trial) == (0, 1, 3)


def test_a_search_that_has_run_only_the_defaults_so_far_shows_no_regimes(tmp_path):
    # a board filled defaults first: its plan has a search, but no trial beyond 0 has run, so there is nothing to
    # tune between and no regime table of identical rows
    store = ResultStore(tmp_path)
    for seed in (0, 1):
        r = searched("m", seed, 0, 0.8, 0.5, 0.7)
        store.write(r.run_id, r)
    table = build(tmp_path, "val_acc").tables[0]
    assert table.search is None and table.rows[0].regimes is None
    assert [(s.seed, s.trial) for s in table.rows[0].selected] == [(0, 0), (1, 0)]
    assert "Default vs tuned." not in to_markdown(build(tmp_path, "val_acc"))
    store.write("m-0-1", searched("m", 0, 1, 0.9, 0.5, 0.6))  # the first trial beyond the defaults
    assert build(tmp_path, "val_acc").tables[0].search.trials == [0, 1, 2, 3]  # the plan's, not those run so far


def test_a_method_whose_search_has_trials_left_keeps_its_defaults_and_says_how_far_its_search_has_come(
    search_store,
):
    # seed 0 lacks trial 3: val_acc among trials 0-2 would pick trial 2 (0.85), a pick among some of the trials
    (search_store / "m-0-3").rename(search_store / ".m-0-3-aside")
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 0), (1, 0), (2, 0)]
    assert row.acc.mean == pytest.approx((0.70 + 0.72 + 0.74) / 3)
    assert [g.regime for g in row.regimes] == ["default"]
    (flag,) = [f for f in row.flags if f.code == "searching"]
    assert flag.detail.startswith("search 3 of 4 trials (the defaults included) on the search seed 0: the row shows")
    board = build(search_store, "val_acc")
    assert board.tables[0].search.trials == [0, 1, 2, 3]
    assert "search 3 of 4 trials (the defaults included) on the search seed 0" in to_markdown(board)
    # a failed trial has run: the search is complete, and the failed run counts as the worst (as `fairbench run`)
    failed = fake_record("m", 0, 3, error="BudgetExceeded", hparams={"trial": 3}, config=SEARCH)
    ResultStore(search_store).write(failed.run_id, failed)
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert {s.trial for s in row.selected} == {2} and not [f for f in row.flags if f.code == "searching"]
    assert [g.trial for g in row.regimes] == [0, 2, 1, 1]  # the oracle: test acc 0.70, 0.80, 0.75 of trials 0-2


def test_a_search_seed_without_its_defaults_run_is_a_search_still_running(search_store):
    # `fairbench run` waits for every run on the search seeds, trial 0 included, before it picks
    (search_store / "m-0-0").rename(search_store / ".m-0-0-aside")
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert {s.trial for s in row.selected} == {0} and [g.regime for g in row.regimes] == ["default"]
    assert row.flagged("searching") and row.search_pending


def test_a_pick_not_yet_run_on_every_seed_leaves_the_row_at_its_defaults_and_says_which_seeds_wait(search_store):
    # val_acc picks trial 2 on seed 0; it has not run on seed 2 yet: a row of the pick would stand on seeds 0-1,
    # beside rows over every seed, so the row stays the defaults until it has run everywhere
    (search_store / "m-2-2").rename(search_store / ".m-2-2-aside")
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 0), (1, 0), (2, 0)] and row.search_pending
    (flag,) = [f for f in row.flags if f.code == "searching"]
    assert flag.detail == (
        "the rule picks trial 2 on the search seed 0, not yet run on seed 2: the row shows the defaults (trial 0) "
        "until it has run on every seed"
    )
    # the search is complete, so every regime reports its pick over the seeds it ran
    assert [(g.regime, g.trial, g.seeds) for g in row.regimes][:3] == [
        ("default", 0, [0, 1, 2]),
        ("val_acc", 2, [0, 1]),
        ("val_wga", 1, [0, 1, 2]),
    ]
    # ... but a rule's pick is tested against the defaults only once it has run on every seed they ran
    _, by_acc, by_wga, _ = row.regimes
    assert by_acc.not_run_on == [2] and by_acc.minus_default is None and not by_wga.not_run_on
    assert regime_difference_text(by_acc, "eod_max") == "not run on seed 2" and by_wga.minus_default["acc"].n == 3
    # val_wga's pick has run everywhere: its board's row is tuned
    (row,) = build(search_store, "val_wga").tables[0].rows
    assert {s.trial for s in row.selected} == {1} and not row.search_pending and not row.flagged("searching")


def test_a_pick_that_failed_on_a_final_seed_leaves_a_row_over_the_other_seeds_flagged_missing_seeds(search_store):
    (search_store / "m-2-2").rename(search_store / ".m-2-2-aside")
    failed = fake_record("m", 2, 2, error="BudgetExceeded", hparams={"trial": 2}, config=SEARCH)
    ResultStore(search_store).write(failed.run_id, failed)
    (row,) = build(search_store, "val_acc").tables[0].rows
    # the pick has run everywhere (it failed on seed 2): the row is tuned, over seeds 0-1, and says so
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 2), (1, 2)] and not row.search_pending
    (flag,) = [f for f in row.flags if f.code == "missing-seeds"]
    assert flag.detail.startswith("no finished run on seed 2, where the method ran")
    assert [f.code for f in row.flags][:2] == ["few-seeds", "missing-seeds"]
    shutil.rmtree(search_store / "m-2-2")  # `--retry-failed`: the run again, finished, replaces the failed one
    (search_store / ".m-2-2-aside").rename(search_store / "m-2-2")
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert not row.flagged("missing-seeds") and row.seeds == 3


def test_a_search_whose_every_trial_failed_leaves_the_defaults_where_they_finished_not_a_failed_row(search_store):
    store = ResultStore(search_store)
    for trial in range(4):  # every trial fails on the search seed: no rule picks anything
        shutil.rmtree(search_store / f"m-0-{trial}")
        failed = fake_record("m", 0, trial, error="RuntimeError: boom", hparams={"trial": trial}, config=SEARCH)
        store.write(failed.run_id, failed)
    (row,) = build(search_store, "val_acc").tables[0].rows
    assert row.ok and [(s.seed, s.trial) for s in row.selected] == [(1, 0), (2, 0)] and not row.search_pending
    assert [g.trial for g in row.regimes] == [0, None, None, None] and row.flagged("missing-seeds")


def test_a_regime_that_picks_the_defaults_is_not_tested_against_them(search_store):
    # seed 0's trial 2 falls to 0.79 validation accuracy: val_acc now picks trial 0 (0.80)
    store = ResultStore(search_store)
    worse = searched("m", 0, 2, 0.79, 0.4, 0.75)
    (search_store / "m-0-2").rename(search_store / ".m-0-2-aside")
    store.write(worse.run_id, worse)
    (row,) = build(search_store, "val_acc").tables[0].rows
    by_acc = next(g for g in row.regimes if g.regime == "val_acc")
    assert by_acc.trial == 0 and by_acc.minus_default is None
    assert [regime_difference_text(by_acc, m) for m in ("acc", "eod_max")] == ["the defaults"] * 2
    assert regime_difference_text(row.regimes[0], "acc") == ""  # the defaults' own line


def test_a_tuned_row_is_not_judged_against_erm_at_its_defaults_nor_the_reverse(search_store, tmp_path_factory):
    store = ResultStore(search_store)
    erm = [searched("erm", 0, t, 0.80 + t / 100, 0.5, 0.60) for t in range(4)]  # val_acc picks erm's trial 3
    erm += [searched("erm", seed, trial, 0.80, 0.5, 0.60 + seed / 100) for seed in (1, 2) for trial in (0, 3)]
    for r in erm:
        store.write(r.run_id, r)
    (search_store / "m-2-2").rename(search_store / ".m-2-2-aside")  # m's pick waits for seed 2: m at its defaults
    table = build(search_store, "val_acc").tables[0]
    rows = {r.method: r for r in table.rows}
    assert rows["m"].search_pending and not rows["erm"].search_pending
    assert {s.trial for s in rows["erm"].selected} == {3} and rows["m"].vs_erm is None
    # the ranks and fronts still set m's defaults beside erm's pick: the table says so
    assert table.stage_note.startswith("the search is still running: 1 of 2 methods are at their defaults (m;")
    assert f"Note: {table.stage_note}." in to_markdown(build(search_store, "val_acc"))
    site = build_site(search_store, tmp_path_factory.mktemp("site"))["index"].read_text()
    assert '<p class="note stage-note">Note: the search is still running: 1 of 2' in site
    assert [(v.category, v.methods) for v in table.verdict] == [
        (
            "not judged (one of it and erm is tuned, the other at its defaults: a search still running)",
            ["m (train labels)"],
        )
    ]
    (search_store / ".m-2-2-aside").rename(search_store / "m-2-2")  # both tuned: compared
    table = build(search_store, "val_acc").tables[0]
    (m,) = [r for r in table.rows if r.method == "m"]
    assert table.stage_note is None and "stage_note" not in json.loads(to_json(build(search_store)))["tables"][0]
    assert m.vs_erm["acc"].mean == pytest.approx((0.75 - 0.60 + 0.78 - 0.61 + 0.80 - 0.62) / 3)
    assert "a search still running" not in to_markdown(build(search_store, "val_acc"))


def test_a_pick_that_is_the_defaults_is_compared_with_a_row_still_at_its_defaults(search_store):
    store = ResultStore(search_store)
    erm = [searched("erm", 0, t, 0.80 - t / 100, 0.5, 0.60) for t in range(4)]  # val_acc keeps erm's defaults
    erm += [searched("erm", seed, 0, 0.80, 0.5, 0.60 + seed / 100) for seed in (1, 2)]
    for r in erm:
        store.write(r.run_id, r)
    (search_store / "m-2-2").rename(search_store / ".m-2-2-aside")  # m at its defaults; erm tuned, to its defaults
    rows = {r.method: r for r in build(search_store, "val_acc").tables[0].rows}
    assert rows["m"].search_pending and not rows["erm"].search_pending
    # trial 0 against trial 0 on every seed: the default board's comparison, valid either way
    assert rows["m"].vs_erm["acc"].mean == pytest.approx((0.70 - 0.60 + 0.72 - 0.61 + 0.74 - 0.62) / 3)


def test_regimes_are_corrected_over_the_methods_that_report_them_while_another_still_searches(search_store):
    store = ResultStore(search_store)
    for seed in (0, 1, 2):  # a second method, at its defaults only so far
        r = searched("k", seed, 0, 0.8, 0.5, 0.7 + seed / 100)
        store.write(r.run_id, r)
    rows = {r.method: r for r in build(search_store, "val_acc").tables[0].rows}
    assert [g.regime for g in rows["k"].regimes] == ["default"] and rows["k"].regimes[0].minus_default is None
    alone = build_only_m(search_store)
    # m's regime − default differences are corrected in a family of one method, as if k were not there
    for mine, single in zip(rows["m"].regimes, alone.regimes, strict=True):
        assert mine.minus_default == single.minus_default


def test_a_regime_that_picks_an_earlier_regimes_trial_is_that_test_not_a_second_one(tmp_path):
    # m: both rules pick trial 1; k: val_acc picks trial 1, val_wga trial 2. m's val_wga is its val_acc's test, so
    # val_wga's Holm family holds k alone, and one difference never reads tied on one line and not on the next
    config = {"seeds": 3, "search_seeds": 1, "hparam_trials": 3}
    store = ResultStore(tmp_path)
    picks = {
        "m": {0: (0.80, 0.5), 1: (0.90, 0.9), 2: (0.70, 0.1)},
        "k": {0: (0.80, 0.5), 1: (0.90, 0.6), 2: (0.85, 0.9)},
    }
    right = {("m", 0): 120, ("m", 1): 170, ("m", 2): 110, ("k", 0): 120, ("k", 1): 126, ("k", 2): 190}
    final = {"m": (0, 1), "k": (0, 1, 2)}  # on seeds 1-2: the defaults and each rule's pick
    for method, trials in picks.items():
        for seed in (0, 1, 2):
            for trial in trials if seed == 0 else final[method]:
                val_acc, val_wga = trials[trial]
                record, arrays = predicted_run(
                    method, seed, Y, A, right_on_first(right[method, trial] + 2 * seed), trial=trial,
                    val=metrics(val_acc, wga=val_wga), hparams={"trial": trial}, config=config, supervision=TRAIN_ONLY,
                )  # fmt: skip
                store.write(record.run_id, record, arrays)
    rows = {r.method: {g.regime: g for g in r.regimes} for r in build(tmp_path, "val_acc").tables[0].rows}
    m, k = rows["m"], rows["k"]
    assert (m["val_acc"].trial, m["val_wga"].trial, k["val_acc"].trial, k["val_wga"].trial) == (1, 1, 1, 2)
    assert m["val_wga"].same_as == "val_acc" and m["val_wga"].minus_default == m["val_acc"].minus_default
    assert regime_difference_text(m["val_wga"], "acc") == "as val_acc" and k["val_wga"].same_as is None
    # val_acc's family: m and k; val_wga's: k alone (its Holm p is its own)
    acc = {name: rows[name]["val_acc"].minus_default["acc"] for name in ("m", "k")}
    assert {n: d.p_holm for n, d in acc.items()} == holm({n: d.p_value for n, d in acc.items()})["adjusted"]
    assert k["val_wga"].minus_default["acc"].p_holm == k["val_wga"].minus_default["acc"].p_value
    markdown = to_markdown(build(tmp_path, "val_acc"))
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in markdown.splitlines() if line.startswith("| m ")]
    assert ["m", "val_wga", "1", "3"] + ["as val_acc"] * 3 in [cells[:4] + cells[-3:] for cells in lines]


def build_only_m(store_dir):
    for path in store_dir.glob("k-*"):
        path.rename(path.with_name("." + path.name))
    (row,) = build(store_dir, "val_acc").tables[0].rows
    return row


def test_the_board_of_the_defaults_reads_trial_0_only_as_if_no_search_had_run(search_store):
    (row,) = build(search_store, "val_acc", defaults_only=True).tables[0].rows
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 0), (1, 0), (2, 0)] and row.regimes is None
    assert row.acc.mean == pytest.approx((0.70 + 0.72 + 0.74) / 3) and row.runs == 3
    assert build(search_store, "val_acc", defaults_only=True).tables[0].search is None


def test_leaderboard_tables_defaults_writes_the_untuned_board_and_says_so(search_store, tmp_path, capsys):
    from fairfacebench.cli import main

    assert main(["leaderboard", "tables", str(search_store), "--out", str(tmp_path / "d"), "--defaults"]) == 0
    board = json.loads((tmp_path / "d" / "leaderboard.json").read_text())
    assert board["selection_rule"] == "default"
    (table,) = board["tables"]
    assert table["selection_rule"].startswith("default: every method at its defaults (trial 0)")
    assert [(s["seed"], s["trial"]) for s in table["rows"][0]["selected"]] == [(0, 0), (1, 0), (2, 0)]
    assert "Model selection: default: every method at its defaults (trial 0)" in capsys.readouterr().out
    assert main(["leaderboard", "tables", str(search_store), "--out", str(tmp_path / "t")]) == 0
    assert json.loads((tmp_path / "t" / "leaderboard.json").read_text())["selection_rule"] == "val_acc"
    code = main(["leaderboard", "tables", str(search_store), "--out", str(tmp_path / "x"), "--defaults",
                 "--selection", "val_wga"])  # fmt: skip
    assert code != 0 and "--defaults and --selection val_wga" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_site_shows_the_regimes_with_the_oracle_marked_as_an_upper_bound(search_store, tmp_path):
    index = build_site(search_store, tmp_path / "site")["index"].read_text()
    assert '<table class="regimes">' in index and '<tr class="upper-bound"><th scope="row">m</th>' in index
    assert "test oracle (upper bound)" in index and "an upper bound on selection for accuracy" in index
    page = (tmp_path / "site" / "method-m.html").read_text()
    assert "<h3>Default vs tuned</h3>" in page and "test oracle (upper bound)" in page


def test_the_tables_rule_decides_the_row_and_any_other_rule_is_one_more_regime(search_store):
    (row,) = build(search_store, "val_wga").tables[0].rows
    assert {s.trial for s in row.selected} == {1} and row.acc.mean == pytest.approx((0.80 + 0.82 + 0.84) / 3)
    (row,) = build(search_store, "val_acc@val_eod_max<=0.5").tables[0].rows
    assert [g.regime for g in row.regimes] == [
        "default",
        "val_acc",
        "val_wga",
        "val_acc@val_eod_max<=0.5",
        "test oracle",
    ]


def test_a_planned_oracle_pick_waits_for_the_final_seeds_then_is_tested_and_can_be_a_boards_rule(tmp_path):
    # the plan names the test oracle in final_selection: its pick (trial 3, best test accuracy on seed 0) runs on
    # seeds 1-2 like a rule's, so the oracle regime waits for it, then is tested over every seed, in its own family
    plan = {**SEARCH, "final_selection": ["val_acc", "val_wga", ORACLE]}
    store = ResultStore(tmp_path)

    def write(method, seed, trial, val_acc, val_wga, test_acc):
        r = fake_record(method, seed, trial, val=metrics(val_acc, wga=val_wga), test=metrics(test_acc),
                        hparams={"trial": trial}, config=plan, supervision=TRAIN_ONLY)  # fmt: skip
        store.write(r.run_id, r)

    for (seed, trial), values in SEARCH_VALUES.items():
        write("m", seed, trial, *values)
    (row,) = build(tmp_path, "val_acc").tables[0].rows
    oracle = row.regimes[-1]
    assert (oracle.regime, oracle.trial, oracle.seeds, oracle.not_run_on) == (ORACLE, 3, [0], [1, 2])
    assert oracle.minus_default is None and regime_difference_text(oracle, "acc") == "not run on seeds 1, 2"
    (pending,) = build(tmp_path, ORACLE).tables[0].rows  # the oracle's board: its rows wait like a rule's
    assert pending.search_pending and {s.trial for s in pending.selected} == {0}
    write("m", 1, 3, 0.55, 0.1, 0.90)
    write("m", 2, 3, 0.55, 0.1, 0.93)
    (row,) = build(tmp_path, "val_acc").tables[0].rows
    oracle = row.regimes[-1]
    assert oracle.seeds == [0, 1, 2] and not oracle.not_run_on and oracle.upper_bound
    # trial 3 − trial 0 per seed: 0.29, 0.18, 0.19; the only method, so its Holm p is its own
    assert oracle.minus_default["acc"].mean == pytest.approx(0.66 / 3) and oracle.minus_default["acc"].n == 3
    assert oracle.minus_default["acc"].p_holm == oracle.minus_default["acc"].p_value
    board = build(tmp_path, ORACLE)
    (row,) = board.tables[0].rows
    assert board.selection_rule == ORACLE and board.tables[0].selection_rule.startswith(f"{ORACLE}: the trial with")
    assert [(s.seed, s.trial) for s in row.selected] == [(0, 3), (1, 3), (2, 3)] and not row.search_pending
    assert [g.regime for g in row.regimes] == ["default", "val_acc", "val_wga", ORACLE]  # listed once
    # ... built in memory only: never written as a leaderboard
    assert main(["leaderboard", "tables", str(tmp_path), "--selection", ORACLE]) == 2
    assert not (tmp_path / "leaderboard.md").exists()
    # a plan that does not name it (the fixture's): the oracle stands on the search seed, untested, never waiting
    for path in tmp_path.iterdir():
        shutil.rmtree(path)
    for (seed, trial), values in SEARCH_VALUES.items():
        r = searched("m", seed, trial, *values)
        store.write(r.run_id, r)
    oracle = build(tmp_path, "val_acc").tables[0].rows[0].regimes[-1]
    assert oracle.seeds == [0] and not oracle.not_run_on and oracle.minus_default["acc"].n == 1


def test_runs_of_one_trial_with_different_hyperparameters_are_flagged(tmp_path):
    # the method's defaults changed without a new method_version: seed 2's run of trial 0 is another configuration
    # than seeds 0-1's, under the same trial number, and a row over the three seeds would mix them silently
    store = ResultStore(tmp_path)
    for seed, lr in ((0, 0.1), (1, 0.1), (2, 0.2)):
        r = fake_record("m", seed, 0, test=metrics(0.8), hparams={"lr": lr})
        store.write(r.run_id, r)
    (row,) = build(tmp_path).tables[0].rows
    (flag,) = [f for f in row.flags if f.code == "mixed-hparams"]
    assert flag.detail.startswith(
        "runs of one trial with different hyperparameters (trial 0: 2 sets, on seeds 0, 1 and on seed 2)"
    )
    shutil.rmtree(tmp_path / f"{r.run_id}")  # the stale run removed: one configuration, no flag
    r = fake_record("m", 2, 0, test=metrics(0.8), hparams={"lr": 0.1})
    store.write(r.run_id, r)
    assert not build(tmp_path).tables[0].rows[0].flagged("mixed-hparams")


def test_the_test_oracle_is_no_selection_rule():
    assert "test oracle" not in registry().selection_rules
    with pytest.raises(KeyError, match="unknown selection rule"):
        registry().selection_rule("test oracle")


def test_information_tier_from_supervision():
    assert information_tier({"target": "train", "sensitive": "train", "sensitive_at_inference": False}) == (
        "train labels"
    )
    assert information_tier({"target": "train", "sensitive": "", "sensitive_at_inference": False}) == "train labels"
    assert information_tier({"target": "val", "sensitive": "val", "sensitive_at_inference": False}) == (
        "+ validation labels"
    )
    assert information_tier({"target": "train", "sensitive": "train+val", "sensitive_at_inference": False}) == (
        "+ validation labels"
    )
    assert information_tier({"target": "train+val", "sensitive": "val", "sensitive_at_inference": True}) == (
        "+ sensitive attribute at inference"
    )
    assert information_tier(None) == "not recorded"


def test_ranks_and_pareto_fronts_are_per_tier_and_per_metric(tmp_path):
    store = ResultStore(tmp_path)
    accs = {"a": (0.90, 0.20, TRAIN_ONLY), "b": (0.80, 0.10, TRAIN_ONLY), "c": (0.95, 0.30, VAL_ONLY)}
    accs["d"] = (0.70, 0.40, VAL_ONLY)
    for method, (acc, eod, supervision) in accs.items():
        for seed in range(3):
            r = fake_record(method, seed, test=metrics(acc + seed / 100, eod=eod), supervision=supervision)
            store.write(r.run_id, r)
    table = build(tmp_path).tables[0]
    assert [r.tier for r in table.rows] == [
        "train labels",
        "train labels",
        "+ validation labels",
        "+ validation labels",
    ]
    rankings = {(k.tier, k.metric): k for k in table.rankings}
    assert sorted({k.tier for k in table.rankings}) == ["+ validation labels", "train labels"]
    # within the train tier a beats b on accuracy and b beats a on eod_max; c and d are ranked apart from them
    assert rankings["train labels", "acc"].ranks == {"a": 1.0, "b": 2.0}
    assert rankings["train labels", "eod_max"].ranks == {"a": 2.0, "b": 1.0}
    assert rankings["+ validation labels", "acc"].ranks == {"c": 1.0, "d": 2.0}
    assert rankings["train labels", "acc"].best == "a" and rankings["+ validation labels", "acc"].best == "c"
    assert not hasattr(table.rows[0], "mean_rank")
    assert [(f.tier, f.methods) for f in table.pareto_fronts] == [
        ("train labels", ["b", "a"]),
        ("+ validation labels", ["c"]),
    ]
    blocks = to_markdown(build(tmp_path)).split("\n\n")
    ranks = next(b for b in blocks if b.startswith("| method ") and "labels used" not in b and "eopp_diff" in b)
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in ranks.splitlines()[2:]}
    # no stored predictions: no paired test, so b is "not compared" with the best, not worse
    assert cells["a"][:3] == ["train labels", "1.00 best", "2.00 not compared"] and cells["c"][:2] == [
        "+ validation labels",
        "1.00 best",
    ]


Y = [0, 1] * 100
A = [0, 0, 1, 1] * 50


def right_on_first(k: int) -> list[int]:
    return [y if i < k else 1 - y for i, y in enumerate(Y)]


def test_paired_tables_are_holm_corrected_per_metric_and_say_when_methods_are_tied(tmp_path):
    store = ResultStore(tmp_path)
    for seed, shift in enumerate([0, 4, 8]):
        for method, right in (("erm", 120 + shift), ("better", 180 + shift), ("same", 121 + shift)):
            record, arrays = predicted_run(method, seed, Y, A, right_on_first(right), supervision=TRAIN_ONLY)
            store.write(record.run_id, record, arrays)
    rows = {r.method: r for r in build(tmp_path).tables[0].rows}
    column = {m: rows[m].vs_erm["acc"] for m in ("better", "same")}
    corrected = holm({m: d.p_value for m, d in column.items()})
    assert {m: d.p_holm for m, d in column.items()} == corrected["adjusted"]
    # better − erm: +0.30 on every seed, far from 0; same − erm: one row of 200 (+0.005), not significant
    assert column["better"].tied is False and column["same"].tied is True
    assert column["same"].ci95[0] <= 0 <= column["same"].ci95[1]
    paired = next(b for b in to_markdown(build(tmp_path)).split("\n\n") if b.startswith("| method − erm"))
    lines = {line.split("|")[1].strip(): line for line in paired.splitlines()[2:]}
    assert lines["same"].split("|")[2].strip().endswith("tied")
    assert not lines["better"].split("|")[2].strip().endswith("tied")


def test_a_one_seed_interval_is_recomputed_from_the_predictions_and_holds_its_estimate(tmp_path):
    store = ResultStore(tmp_path)
    record, arrays = predicted_run("m", 0, Y, A, right_on_first(150), supervision=TRAIN_ONLY)
    # an old record's percentile interval that leaves out its own estimate (acc 0.75)
    record.test_intervals = {
        "method": "percentile bootstrap",
        "intervals": {"acc": [0.76, 0.80], "eod_max": [0.1, 0.2]},
    }
    store.write(record.run_id, record, arrays)
    (row,) = build(tmp_path).tables[0].rows
    counts = confusion_counts(arrays["test_y"], arrays["test_scores"].argmax(1), arrays["test_a"], 2, 2)
    expected = intervals_from_counts(counts, n_resamples=1000, seed=0)
    assert row.acc.interval == expected["intervals"]["acc"] and row.acc.mean == 0.75
    assert row.acc.interval[0] <= 0.75 <= row.acc.interval[1]
    assert "BCa" in row.interval_method and "percentile" not in row.interval_method


def test_tiny_groups_and_their_uninformative_intervals_are_flagged(tmp_path):
    store = ResultStore(tmp_path)
    y = [0, 1] + [0, 1] * 19
    a = [0, 0] + [1] * 38  # group g0 has 2 test rows
    record, arrays = predicted_run("m", 0, y, a, y, supervision=TRAIN_ONLY)
    store.write(record.run_id, record, arrays)
    (row,) = build(tmp_path).tables[0].rows
    flags = {f.code: f.detail for f in row.flags}
    assert flags["tiny-groups"] == "fewer than 10 test rows in g0 (2 rows)"
    # every prediction is right: every TPR is 1 and FPR 0, so eod_max is 0 in every resample, a zero-width interval
    assert row.eod_max.interval == [0.0, 0.0] and "eod_max: zero width" in flags["uninformative-interval"]
    assert "g0: 1 positives" in flags["uninformative-interval"]
    assert list(flags) == ["few-seeds", "tiny-groups", "uninformative-interval"]


def test_a_table_names_its_hardware_and_flags_a_row_that_mixes_machines(tmp_path):
    store = ResultStore(tmp_path)
    epyc = {"cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX512"}
    xeon = {"cpu_model": "Intel Xeon", "torch_cpu_capability": "AVX2"}
    for seed in range(3):
        for method, host in (("same", epyc), ("mixed", epyc if seed < 2 else xeon), ("unknown", None)):
            r = fake_record(method, seed, host=host)
            store.write(r.run_id, r)
    table = build(tmp_path).tables[0]
    rows = {r.method: r for r in table.rows}
    assert rows["mixed"].hardware == ["AMD EPYC (AVX512)", "Intel Xeon (AVX2)"]
    assert {f.code: f.detail for f in rows["mixed"].flags}["mixed-hardware"] == (
        "seeds 0, 1 on AMD EPYC (AVX512); seed 2 on Intel Xeon (AVX2)"
    )
    assert not rows["same"].flagged("mixed-hardware") and rows["unknown"].hardware == ["not recorded"]
    assert [(h.hardware, h.runs, h.methods) for h in table.hardware] == [
        ("AMD EPYC (AVX512)", 5, ["mixed", "same"]),
        ("not recorded", 3, ["unknown"]),
        ("Intel Xeon (AVX2)", 1, ["mixed"]),
    ]
    assert "Hardware of the selected runs (CPU model, torch CPU capability): AMD EPYC (AVX512): 5 runs" in to_markdown(
        build(tmp_path)
    )


def test_one_name_for_a_hosts_hardware_in_the_grid_the_estimate_and_the_tables():
    assert hardware_of({"cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX512"}) == "AMD EPYC (AVX512)"
    assert hardware_of({"cpu_model": "AMD EPYC"}) == "AMD EPYC (capability not recorded)"
    assert hardware_of({"torch_cpu_capability": "AVX2"}) == "unknown CPU (AVX2)"
    assert hardware_of({"platform": "Linux"}) == hardware_of(None) == "not recorded"


def test_the_demonstration_budget_says_what_it_is_on_the_board(tmp_path):
    store = ResultStore(tmp_path)
    r = fake_record("m", 0, budget=Budget("default", steps=70, batch_size=64))
    store.write(r.run_id, r)
    board = build(tmp_path)
    assert board.tables[0].banner.startswith("Budget default: demonstration size (70 steps of 64 images), one seed:")
    assert "> Budget default: demonstration size" in to_markdown(board)
    assert board.tables[0].rows[0].flagged("demonstration-budget")


def test_flags_travel_to_every_output_and_the_method_column_is_the_name(tmp_path):
    store = ResultStore(tmp_path)
    groups = [{"group": g, "n": 1000, "positives": 500, "selection_rate": 0.5} for g in ("a", "b")]
    r = fake_record("shasam", 0, test=metrics(0.526), groups=groups, supervision=TRAIN_ONLY)
    store.write(r.run_id, r)
    board = build(tmp_path)
    (row,) = board.tables[0].rows
    assert [f.code for f in row.flags] == ["near-chance", "few-seeds"]
    leaderboard = next(b for b in to_markdown(board).split("\n\n") if b.startswith("| method "))
    cells = [c.strip() for c in leaderboard.splitlines()[2].strip("|").split("|")]
    assert cells[0] == "shasam" and cells[-1] == "near-chance, few-seeds"
    assert len(leaderboard.splitlines()[0].split("|")[1]) <= len("shasam") + 4  # just the name (and tabulate's padding)
    assert to_frame(board).iloc[0]["flags"] == "near-chance, few-seeds"
    plain = json.loads(to_json(board))["tables"][0]["rows"][0]["flags"]
    assert plain == [dataclasses.asdict(f) for f in row.flags]


def test_where_each_run_ran_is_a_field_of_every_output_and_a_row_that_mixes_them_is_flagged(tmp_path):
    store = ResultStore(tmp_path / "runs")
    sealed, in_process = Isolation("sealed", "namespaces"), Isolation("in-process")
    where = {"sealed": [sealed] * 3, "older": [None] * 3, "mixed": [sealed, sealed, in_process]}  # None: in-process
    for method, isolations in where.items():
        for seed, isolation in enumerate(isolations):
            store.write(f"{method}-{seed}", dataclasses.replace(fake_record(method, seed), isolation=isolation))
    failed = dataclasses.replace(fake_record("broken", 0, error="ValueError: no"), isolation=sealed)
    store.write("broken-0", failed)
    board = build(tmp_path / "runs")
    rows = {r.method: r for r in board.tables[0].rows}
    expected = {"broken": "sealed", "mixed": "mixed", "older": "in-process", "sealed": "sealed"}
    assert {m: r.isolation for m, r in rows.items()} == expected
    assert {f.code: f.detail for f in rows["mixed"].flags}["mixed-isolation"] == "seeds 0, 1 sealed; seed 2 in-process"
    assert not rows["sealed"].flagged("mixed-isolation") and not rows["older"].flagged("mixed-isolation")
    # Markdown (its column before the flags), CSV and pandas frame, JSON
    markdown = to_markdown(board)
    leaderboard = next(b for b in markdown.split("\n\n") if b.startswith("| method "))
    header = [c.strip() for c in leaderboard.splitlines()[0].strip("|").split("|")]
    body = {c[0]: c for c in ([x.strip() for x in line.strip("|").split("|")] for line in leaderboard.splitlines()[2:])}
    assert header[-2:] == ["isolation", "flags"] and {m: body[m][-2] for m in expected} == expected
    assert "Isolation: where each method ran: sealed, in a sandboxed child" in markdown
    assert dict(zip(to_frame(board)["method"], to_frame(board)["isolation"])) == expected
    assert {r["method"]: r["isolation"] for r in json.loads(to_json(board))["tables"][0]["rows"]} == expected
    # one row per run in pandas
    runs = load_runs(tmp_path / "runs")
    found = {(method, seed): mode for method, seed, mode in zip(runs["method"], runs["seed"], runs["isolation"])}
    assert found == {
        **{("sealed", seed): "sealed" for seed in range(3)},
        **{("older", seed): "in-process" for seed in range(3)},  # recorded before sealed runs
        ("mixed", 0): "sealed",
        ("mixed", 1): "sealed",
        ("mixed", 2): "in-process",
        ("broken", 0): "sealed",
    }
    # the site's index and method page
    index = build_site(tmp_path / "runs", tmp_path / "site")["index"].read_text()
    for method, isolation in expected.items():
        assert f'<td class="isolation" data-value="{isolation}">{isolation}</td>' in index, method
    page = (tmp_path / "site" / "method-mixed.html").read_text()
    assert ">mixed</dd>" in page and "mixed-isolation" in page and "seeds 0, 1 sealed; seed 2 in-process" in page


def diff(mean: float | None, tied: bool | None) -> PairedDifference:
    return PairedDifference(mean, 5, None, [0, 1, 2, 3, 4], None, None, tied, "crossed paired bootstrap")


def test_the_verdict_against_erm_sorts_methods_by_their_holm_corrected_differences():
    def row(method, eod, acc, tier="train labels"):
        return SimpleNamespace(ok=True, method=method, tier=tier, vs_erm={"eod_max": eod, "acc": acc})

    rows = [
        row("free", diff(-0.1, False), diff(-0.01, True)),  # fairer, accuracy tied: no significant cost
        row("gains", diff(-0.1, False), diff(+0.02, False)),  # fairer and more accurate: no cost either
        row("costly", diff(-0.1, False), diff(-0.05, False), "+ validation labels"),
        row("worse", diff(+0.1, False), diff(0.0, True)),
        row("same", diff(-0.1, True), diff(-0.05, False)),  # eod_max tied decides, whatever accuracy does
        row("means", diff(-0.1, None), diff(-0.05, None)),  # no predictions: no test
        row("one-seed", dataclasses.replace(diff(-0.1, False), n=1), diff(0.0, True)),  # rows only: not judged
        SimpleNamespace(ok=False, method="failed", tier="train labels", vs_erm=None),
    ]
    assert [(v.category, v.methods) for v in verdict(rows)] == [
        ("fairer (eod_max) at no significant accuracy cost", ["free (train labels)", "gains (train labels)"]),
        ("fairer (eod_max) at a significant accuracy cost", ["costly (+ validation labels)"]),
        ("not distinguishable in eod_max", ["same (train labels)"]),
        ("less fair (eod_max)", ["worse (train labels)"]),
        ("not tested (no stored predictions: means only)", ["means (train labels)"]),
        (
            "not judged (fewer than 3 shared seeds: training randomness unmeasured)",
            ["one-seed (train labels)"],
        ),
    ]


def test_the_verdict_is_in_the_markdown_and_on_the_site(tmp_path):
    store = ResultStore(tmp_path)
    for seed, shift in enumerate([0, 4, 8]):
        for method, right in (("erm", 120 + shift), ("same", 121 + shift)):
            record, arrays = predicted_run(method, seed, Y, A, right_on_first(right), supervision=TRAIN_ONLY)
            store.write(record.run_id, record, arrays)
    assert "- Against erm, not distinguishable in eod_max: same (train labels)" in to_markdown(build(tmp_path))
    index = build_site(tmp_path, tmp_path / "site")["index"].read_text()
    assert '<ul class="verdict"><li>Against erm, not distinguishable in eod_max: same (train labels)</li>' in index


def test_the_ablation_verdict_reads_each_system_against_its_own_ablation():
    def ablation(method, system, eod, acc):
        return SimpleNamespace(
            ok=True,
            method=method,
            ablation_of=system,
            system_vs_ablation={"eod_max": eod, "acc": acc},
            search_pending=False,
        )

    rows = [
        ablation("s:no-x", "s", diff(-0.05, False), diff(0.0, True)),  # the part x makes s fairer, at no cost
        ablation("t:no-y", "t", diff(+0.01, True), diff(0.0, True)),
        SimpleNamespace(ok=True, method="s", ablation_of=None, system_vs_ablation=None, search_pending=False),
    ]
    assert [(v.category, v.methods) for v in ablation_verdict(rows)] == [
        ("fairer (eod_max) at no significant accuracy cost", ["s over s:no-x"]),
        ("not distinguishable in eod_max", ["t over t:no-y"]),
    ]


def test_a_difference_over_fewer_than_3_seeds_is_outside_its_holm_family_and_shown_not_judged():
    def diff(p, n):
        return PairedDifference(-0.1, n, [-0.2, -0.05], list(range(n)), p, None, None, "crossed paired bootstrap")

    family = holm_family({"a": diff(0.5, 1), "b": diff(0.02, 5), "c": diff(0.024, 5)})
    # Holm over b and c only (m = 2): b 0.02 x 2 = 0.04, c max(0.04, 0.024 x 1) = 0.04: both rejected at 0.05.
    # With a in the family (m = 3), b would be 0.02 x 3 = 0.06 and not rejected
    assert family["b"].p_holm == pytest.approx(0.04) and family["c"].p_holm == pytest.approx(0.04)
    assert family["b"].tied is False and family["c"].tied is False
    assert family["a"].p_holm is None and family["a"].tied is None
    assert difference_text(family["a"]) == "-0.100 [-0.200, -0.050] not judged (n=1)"
    assert difference_text(family["b"]) == "-0.100 [-0.200, -0.050]"


def test_a_system_is_not_judged_against_its_ablation_at_another_stage_of_the_search(search_store):
    store = ResultStore(search_store)
    ablation = [searched("m:abl", 0, t, 0.70 + t / 100, 0.5, 0.60, ablation_of="m") for t in range(4)]  # picks 3
    ablation += [searched("m:abl", seed, trial, 0.7, 0.5, 0.6, ablation_of="m") for seed in (1, 2) for trial in (0, 3)]
    for r in ablation:
        store.write(r.run_id, r)
    (search_store / "m-2-2").rename(search_store / ".m-2-2-aside")  # the system waits for its pick on seed 2
    table = build(search_store, "val_acc").tables[0]
    rows = {r.method: r for r in table.rows}
    assert rows["m:abl"].system_vs_ablation is None
    assert [(v.category, v.methods) for v in table.ablation_verdict] == [
        (
            "not judged (one of the system and its ablation is tuned, the other at its defaults: a search still "
            "running)",
            ["m over m:abl"],
        )
    ]
    (search_store / ".m-2-2-aside").rename(search_store / "m-2-2")
    rows = {r.method: r for r in build(search_store, "val_acc").tables[0].rows}
    assert rows["m:abl"].system_vs_ablation["acc"].mean == pytest.approx((0.75 - 0.6 + 0.78 - 0.6 + 0.80 - 0.6) / 3)


def test_a_paired_difference_whose_two_runs_ran_on_different_machines_on_some_seed_is_flagged(search_store):
    # the v2 board's case: the defaults of seed 0 ran on one host, the search's trials and the other seeds on another
    epyc = {"cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX512"}
    xeon = {"cpu_model": "Intel Xeon", "torch_cpu_capability": "AVX512"}
    store = ResultStore(search_store)
    for path in sorted(search_store.glob("m-*")):
        seed, trial = (int(x) for x in path.name.split("-")[1:])
        r = searched("m", seed, trial, *SEARCH_VALUES[seed, trial], host=epyc if (seed, trial) == (0, 0) else xeon)
        store.write(r.run_id, r)
    erm = [searched("erm", 0, t, 0.8 - t / 100, 0.5, 0.6, host=xeon) for t in range(1, 4)]  # erm keeps trial 0
    for r in erm + [searched("erm", seed, 0, 0.8, 0.5, 0.6, host=xeon) for seed in (0, 1, 2)]:
        store.write(r.run_id, r)
    rows = {r.method: r for r in build(search_store, "val_acc").tables[0].rows}
    assert rows["m"].vs_erm is not None  # both tuned
    flag = {f.code: f.detail for f in rows["m"].flags}["cross-hardware"]
    # m's tuned row (trial 2) ran on the Xeon on every seed, as did erm: only regime − default crosses on seed 0
    assert flag == (
        "val_acc − default on seed 0; val_wga − default on seed 0; test oracle − default on seed 0: each such seed's "
        "two runs ran on different machines"
    )
    assert not rows["erm"].flagged("cross-hardware")
    assert "cross-hardware" in to_markdown(build(search_store, "val_acc"))
    erm = searched("erm", 0, 0, 0.8, 0.5, 0.6, host=epyc)  # erm's seed 0 on the other host: m − erm crosses there
    store.write(erm.run_id, erm)
    rows = {r.method: r for r in build(search_store, "val_acc").tables[0].rows}
    assert {f.code: f.detail for f in rows["m"].flags}["cross-hardware"].startswith(
        "against erm on seed 0; val_acc − default on seed 0;"
    )


def test_a_method_sharing_fewer_than_3_seeds_with_the_best_is_neither_tied_nor_worse_and_outside_the_family(tmp_path):
    store = ResultStore(tmp_path)
    runs = [("best", s, 190 + s) for s in range(3)] + [("near", s, 189 + s) for s in range(3)]
    runs += [("worse", s, 120 + s) for s in range(3)] + [("short", 0, 100)]  # short: far worse, on seed 0 only
    for method, seed, right in runs:
        record, arrays = predicted_run(method, seed, Y, A, right_on_first(right), supervision=TRAIN_ONLY)
        store.write(record.run_id, record, arrays)
    table = build(tmp_path).tables[0]
    acc = next(k for k in table.rankings if k.metric == "acc")
    assert acc.best == "best" and acc.tied_with_best == ["best", "near"] and acc.worse_than_best == ["worse"]
    blocks = to_markdown(build(tmp_path)).split("\n\n")
    ranks = next(b for b in blocks if b.startswith("| method ") and "1.00 best" in b)
    cells = {line.split("|")[1].strip(): line.split("|")[3].strip() for line in ranks.splitlines()[2:]}
    assert cells["short"].endswith(" not compared") and cells["worse"] == "3.00" and cells["near"].endswith(" tied")
