"""scripts/board_compute.py: the compute a store holds, by task, phase of the protocol and host."""

import dataclasses
import importlib.util
import sys
from pathlib import Path

from records import fake_record, metrics

from fairfacebench.store import ResultStore

SCRIPT = Path(__file__).parents[1] / "scripts" / "board_compute.py"
spec = importlib.util.spec_from_file_location("board_compute", SCRIPT)
script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = script  # its dataclass looks its module up
spec.loader.exec_module(script)

PLAN = {"seeds": 3, "search_seeds": 1, "hparam_trials": 3}
AMD = {"cpu_model": "AMD EPYC", "torch_cpu_capability": "AVX512"}
INTEL = {"cpu_model": "Intel Xeon", "torch_cpu_capability": "AVX512"}


def run(seed, trial, minutes, host=INTEL, **fields):
    record = fake_record("m", seed, trial, config=PLAN, host=host, hparams={"trial": trial}, **fields)
    return dataclasses.replace(record, wall_time_s=minutes * 60)


def test_runs_are_counted_by_task_phase_and_host_and_their_time_summed(tmp_path):
    runs = [run(0, 0, 30, AMD), run(1, 0, 30), run(2, 0, 30)]  # the defaults on every seed
    runs += [run(0, 1, 60), run(0, 2, 90)]  # the search: trials 1-2 on seed 0
    runs += [run(1, 2, 90), dataclasses.replace(fake_record("m", 2, 2, error="BudgetExceeded", config=PLAN))]  # a pick
    runs += [run(0, 0, 45, vlm="face-descriptor", run_id="m-0-0-face")]
    store = ResultStore(tmp_path)
    for r in runs:
        store.write(r.run_id, r)
    lines = script.report(list(store.records()))
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[0].splitlines()[2:]]
    assert rows == [
        ["t", "defaults", "3", "0", "1.5", "AMD EPYC (AVX512): 1; Intel Xeon (AVX512): 2"],
        ["t", "search", "2", "0", "2.5", "Intel Xeon (AVX512): 2"],
        ["t", "picks", "2", "1", "1.5", "Intel Xeon (AVX512): 1; not recorded: 1"],
        ["t", "defaults, encoder face-descriptor", "1", "0", "0.8", "Intel Xeon (AVX512): 1"],
    ]
    assert lines[-1] == "In all: 8 runs (1 failed), 6.2 run hours summed: about 3.1 wall hours at 2 runs at a time."


def test_without_a_search_every_trial_beyond_the_defaults_is_a_trial_not_a_pick(tmp_path):
    store = ResultStore(tmp_path)
    for seed in (0, 1):
        for trial in (0, 1):
            record = fake_record("m", seed, trial, config={"seeds": 2, "hparam_trials": 2}, hparams={"trial": trial})
            store.write(record.run_id, dataclasses.replace(record, wall_time_s=3600.0))
    assert [script.phase(r) for r in sorted(store.records(), key=lambda r: (r.seed, r.trial))] == [
        ("defaults", "none"),
        ("trials", "none"),
        ("defaults", "none"),
        ("trials", "none"),
    ]


def test_a_pick_only_the_test_oracle_makes_is_counted_apart(tmp_path):
    # val_acc picks trial 1 on the search seed, the oracle (best test accuracy) trial 2: on seed 1, trial 1's run is
    # a rule's pick, trial 2's what running the oracle on the final seeds costs
    plan = {**PLAN, "final_selection": ["val_acc", "test oracle"]}
    scores = {0: (0.70, 0.70), 1: (0.90, 0.75), 2: (0.80, 0.85)}  # trial: (val acc, test acc)
    store = ResultStore(tmp_path)
    for seed, trial in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]:
        val, test = scores[trial]
        record = fake_record("m", seed, trial, config=plan, hparams={"trial": trial}, val=metrics(val),
                             test=metrics(test))  # fmt: skip
        store.write(record.run_id, dataclasses.replace(record, wall_time_s=1800.0))
    records = list(store.records())
    picked = script.rules_picks(records)
    assert list(picked.values()) == [{1}]
    phases = {(r.seed, r.trial): script.phase(r, picked)[0] for r in records}
    assert phases == {(0, 0): "defaults", (0, 1): "search", (0, 2): "search", (1, 0): "defaults", (1, 1): "picks",
                      (1, 2): "oracle picks"}  # fmt: skip
    assert script.phase(next(r for r in records if (r.seed, r.trial) == (1, 2)))[0] == "picks"  # without `picked`
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in script.report(records)[0].splitlines()[2:]]
    assert [row[1:3] for row in rows] == [["defaults", "2"], ["search", "2"], ["picks", "1"], ["oracle picks", "1"]]
