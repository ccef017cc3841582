"""`fairbench list`: whole descriptions wrapped in narrow tables, the package of every plugin, every task of every
dataset (`list tasks`), and one method or dataset in detail (`list methods erm`)."""

from __future__ import annotations

import json

import pytest

from fairfacebench.cli import main
from fairfacebench.methods.base import choice, log_uniform, uniform
from fairfacebench.plugins import registry


def rows_of(table: str) -> dict[str, list[str]]:
    """A wrapped GitHub table as {first cell: [each cell's lines joined]}; continuation lines have no first cell."""
    rows: dict[str, list[str]] = {}
    key = None
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0]:
            key = cells[0]
            rows[key] = cells
        else:
            rows[key] = [f"{a} {b}".strip() for a, b in zip(rows[key], cells)]
    return rows


def unwrapped(text: str) -> str:
    """Text as a wrapped cell shows it, joined again: hyphenated words broken at the hyphen come back together."""
    return " ".join(text.split()).replace("- ", "-")


def test_list_methods_shows_whole_descriptions_and_the_package(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    table, footer = out.rstrip("\n").rsplit("\n", 1)
    assert footer == "one in full: fairbench list methods NAME"
    assert max(len(line) for line in out.splitlines()) <= 120
    rows = rows_of(table)
    methods = registry().methods
    assert set(rows) == set(methods)
    for name, cls in methods.items():
        if "|" not in cls.description:  # a '|' inside a description splits its cell in this parse
            assert unwrapped(rows[name][3]) == unwrapped(cls.description), name
        assert rows[name][2] == "fairfacebench"
    assert rows["ssl-pipeline"][1] == "y:val, a:val (…); needs VLM, pool"


def test_list_datasets_shows_every_task(capsys):
    assert main(["list", "datasets"]) == 0
    rows = rows_of(capsys.readouterr().out.rstrip("\n").rsplit("\n", 1)[0])
    tasks = [t.name for t in registry().dataset("utkface").tasks]
    assert rows["utkface"][1].split() == tasks and "more" not in rows["utkface"][1]
    assert rows["csv"][1] == "TARGET/SENSITIVE named by options"


def test_list_tasks_has_a_row_per_task_and_one_dataset_on_request(capsys):
    assert main(["list", "tasks"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120
    reg = registry()
    expected = sum(len(d.tasks) or 1 for d in reg.datasets.values())
    assert sum(1 for line in out.splitlines()[2:] if not line.startswith("|  ")) == expected
    assert "| utkface    | gender/race (default)" in out and "| csv        | TARGET/SENSITIVE" in out
    assert main(["list", "tasks", "utkface", "--format", "json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == [t.name for t in reg.dataset("utkface").tasks]
    assert infos[0] == {
        "dataset": "utkface",
        "name": "gender/race",
        "target": "gender",
        "sensitive": ["race"],
        "description": "predict gender; fairness across 5 race groups",
        "default": True,
    }


def test_list_methods_erm_is_a_detail_view(capsys):
    assert main(["list", "methods", "erm"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("erm: Empirical risk minimisation: cross-entropy fine-tuning on target labels\n")
    assert "  paper:        Vapnik, The Nature of Statistical Learning Theory, 1995\n" in out
    assert "  labels used:  y:train\n" in out and "  needs:        -\n" in out
    assert "  package:      fairfacebench 0.1.0 (entry point fairfacebench:erm)\n" in out
    assert "| lr               |    0.001  | log-uniform [0.0003, 0.003] | peak learning rate" in out
    assert main(["list", "methods", "groupdro", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["package"] == {"distribution": "fairfacebench", "version": "0.1.0"}
    assert info["hyperparameters"]["adjustment"] == {
        "default": 0.0,
        "search": "one of 0.0, 1.0, 2.0, 4.0",
        "doc": "group adjustment C (loss + C/sqrt(n_g)); 0 = plain GroupDRO",
    }
    assert main(["list", "datasets", "utkface"]) == 0
    out = capsys.readouterr().out
    assert "| race        | White, Black, Asian, Indian, Others |" in out and "| gender/race (default) |" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["list", "methods", "ermm"], "unknown method 'ermm'; did you mean erm?"),
        (["list", "tasks", "utkfac"], "unknown dataset 'utkfac'; did you mean utkface"),
        (["list", "budgets", "smoke"], "`fairbench list budgets` takes no name"),
    ],
)
def test_list_of_a_wrong_name_is_one_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairbench list: error: ") and message in err and err.count("\n") == 1


def test_search_distributions_name_themselves_and_draw_as_before():
    import numpy as np

    # the draws of the former closures: exp(U(log lo, log hi)), U(lo, hi), options[integers(len)]
    rng, again = np.random.default_rng(7), np.random.default_rng(7)
    assert log_uniform(1e-4, 1e-2)(rng) == float(np.exp(again.uniform(np.log(1e-4), np.log(1e-2))))
    assert uniform(0.5, 0.9)(rng) == float(again.uniform(0.5, 0.9))
    assert choice(["a", "b", "c"])(rng) == ["a", "b", "c"][int(again.integers(3))]
    assert [str(log_uniform(1e-4, 1e-2)), str(uniform(0.5, 0.9)), str(choice([1, 2]))] == [
        "log-uniform [0.0001, 0.01]",
        "uniform [0.5, 0.9]",
        "one of 1, 2",
    ]
