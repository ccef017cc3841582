"""scripts/generated_docs.py: the README's and docs' tables are what the scripts print from the committed stores now
(issue 25: README "Results" regenerated from the store), and a stale block fails with a diff."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "generated_docs.py"
spec = importlib.util.spec_from_file_location("generated_docs", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

FREE, TIED = "fairer (eod_max) at no significant accuracy cost", "not distinguishable in eod_max"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md"))]


def board(category):
    table = {"task": "gender/race", "comparison": {"vlm": "none"}, "rows": [], "ablation_verdict": []}
    return {"selection_rule": "val_acc", "tables": [table | {"verdict": [{"category": category, "methods": ["jtt"]}]}]}


def run(monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["generated_docs.py", *map(str, args)])
    script.main()


@pytest.fixture()
def doc(tmp_path):
    """A page with one block comparing two small boards, and prose around it."""
    for name, category in (("a.json", FREE), ("b.json", TIED)):
        (tmp_path / name).write_text(json.dumps(board(category)))
    command = f"python scripts/compare_verdicts.py {tmp_path / 'a.json'} {tmp_path / 'b.json'} --names a b"
    path = tmp_path / "page.md"
    path.write_text(f"# Page\n\nProse.\n\n<!-- generated: {command} -->\nold table\n<!-- end generated -->\n\nMore.\n")
    return path


def test_a_block_is_rewritten_with_what_its_command_prints_and_the_prose_is_kept(doc, monkeypatch, capsys):
    run(monkeypatch, doc)
    text = doc.read_text()
    assert text.startswith("# Page\n\nProse.\n\n<!-- generated: python scripts/compare_verdicts.py ")
    expected = (
        " --names a b -->\n\nSelection rule: a val_acc, b val_acc.\n\n### gender/race, encoder none: against erm\n\n"
        f"| | a | b | |\n|---|---|---|---|\n| jtt | {FREE} | {TIED} | changed |\n\n"
        "0 of 1 methods judged on both boards keep their verdict.\n\n"
        f"- a, {FREE}: jtt.\n- b, {FREE}: none.\n"
        "- a, b: no search on this table, every row at its defaults (trial 0): the verdicts are the defaults' under "
        "that board's rule.\n\n<!-- end generated -->\n\nMore.\n"
    )
    assert text.endswith(expected)
    assert "old table" not in text and f"rewrote {doc}" in capsys.readouterr().out
    run(monkeypatch, "--check", doc)  # current now: nothing to say


def test_a_stale_block_fails_the_check_with_a_diff_and_nothing_is_written(doc, monkeypatch, capsys):
    run(monkeypatch, doc)
    before = doc.read_text()
    (doc.parent / "b.json").write_text(json.dumps(board(FREE)))  # the store moved on
    with pytest.raises(SystemExit, match=f"stale generated blocks in {doc}: run `python scripts/generated_docs.py"):
        run(monkeypatch, "--check", doc)
    diff = capsys.readouterr().out
    assert f"-| jtt | {FREE} | {TIED} | changed |" in diff and f"+| jtt | {FREE} | {FREE} | same |" in diff
    assert doc.read_text() == before


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("rm -rf stores", "is not `python scripts/NAME.py ...`; only this repository's scripts run"),
        ("python /tmp/elsewhere.py", "is not `python scripts/NAME.py ...`"),
        ("python scripts/no_such_script.py", "scripts/no_such_script.py does not exist"),
        ("python scripts/compare_verdicts.py nowhere.json also.json", "exited with"),
    ],
)
def test_a_block_that_cannot_run_names_its_file_and_line(tmp_path, monkeypatch, command, message):
    path = tmp_path / "page.md"
    path.write_text(f"# Page\n\n<!-- generated: {command} -->\n<!-- end generated -->\n")
    with pytest.raises(SystemExit, match=f"{path}:3: .*{message}"):
        run(monkeypatch, path)
    assert path.read_text() == f"# Page\n\n<!-- generated: {command} -->\n<!-- end generated -->\n"


def test_files_without_a_block_are_passed_over_but_not_all_of_them(tmp_path, monkeypatch, doc):
    (tmp_path / "plain.md").write_text("# Page\n")
    with pytest.raises(SystemExit, match="plain.md: no generated block"):
        run(monkeypatch, "--check", tmp_path / "plain.md")
    run(monkeypatch, tmp_path / "plain.md", doc)  # docs/results/*.md: some pages hold no block
    assert "<!-- generated: " in doc.read_text() and "old table" not in doc.read_text()


def test_the_readme_and_the_results_pages_hold_what_the_committed_stores_give_now():
    """The v2 board's tables (defaults, both tasks, intervals, paired differences, verdicts) and the v1 / v2
    verdicts side by side, built from the committed stores with today's leaderboard code."""
    with_blocks = [path for path in DOCS if script.BLOCK.search(path.read_text())]
    assert ROOT / "README.md" in with_blocks and ROOT / "docs" / "results" / "utkface-v2.md" in with_blocks
    with script.shared_boards():
        for path in with_blocks:
            text = path.read_text()
            now = script.regenerate(text, str(path.relative_to(ROOT)))
            assert now == text, f"{path.name}: stale; run `python scripts/generated_docs.py {path.relative_to(ROOT)}`"


def test_while_blocks_run_a_board_is_built_once_however_its_arguments_are_passed(tmp_path):
    from records import fake_record, metrics

    from fairfacebench.leaderboard import tables
    from fairfacebench.store import ResultStore

    store = ResultStore(tmp_path)
    for seed in range(3):
        r = fake_record("erm", seed, test=metrics(0.8))
        store.write(r.run_id, r)
    original = tables.build
    with script.shared_boards():
        first = tables.build(str(tmp_path), "val_acc", defaults_only=True)
        assert tables.build(tmp_path, defaults_only=True) is first
        assert tables.build(str(tmp_path), rule="val_acc", access=None, defaults_only=True) is first
        assert tables.build(str(tmp_path)) is not first  # another board: the searched one
    assert tables.build is original
