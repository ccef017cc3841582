"""Exports a plugin cannot turn against their reader (CSV formulas, Markdown columns and HTML), and a site build that
deletes only what an earlier build wrote."""

from __future__ import annotations

import csv
import re

import pytest
from test_site import record

from fairfacebench.cli import main
from fairfacebench.errors import ConfigError
from fairfacebench.leaderboard.site import MARKER, build_site
from fairfacebench.leaderboard.tables import write
from fairfacebench.store import ResultStore

pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")  # tab and CR in the plots' labels

FORMULAS = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tHYPERLINK()", "\r=1"]
MARKDOWN = ["a|b|c", "<script>alert(1)</script>", "two\nlines"]


@pytest.fixture()
def hostile_store(tmp_path):
    store = ResultStore(tmp_path / "runs")
    for i, name in enumerate([*FORMULAS, *MARKDOWN, "erm"]):
        rec = record(name, 0, 0.8, 0.1)
        rec.run_id = f"run-{i}"
        rec.labels_used = "=1+1" if name == "erm" else "y:train"
        store.write(rec.run_id, rec)
    return tmp_path / "runs"


def csv_column(path, column):
    with open(path, newline="") as handle:
        return [row[column] for row in csv.DictReader(handle)]


def test_csv_cells_cannot_start_a_formula_in_the_store_and_site_exports(hostile_store, tmp_path):
    write(hostile_store)
    build_site(hostile_store, tmp_path / "site")
    for path in (hostile_store / "leaderboard.csv", tmp_path / "site" / "leaderboard.csv"):
        methods = csv_column(path, "method")
        assert sorted(methods) == sorted(["'" + f for f in FORMULAS] + MARKDOWN + ["erm"])
        assert csv_column(path, "labels_used").count("'=1+1") == 1
        assert all(not m.startswith(("=", "+", "-", "@", "\t", "\r")) for m in methods)


def test_markdown_cells_are_escaped_and_keep_the_table_shape(hostile_store, tmp_path):
    write(hostile_store)
    build_site(hostile_store, tmp_path / "site")
    for path in (hostile_store / "leaderboard.md", tmp_path / "site" / "leaderboard.md"):
        md = path.read_text()
        assert "<script" not in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
        assert "a\\|b\\|c" in md and "two lines" in md
        table = next(b for b in md.split("\n\n") if b.startswith("| method ")).splitlines()  # the leaderboard
        assert len(table) == 2 + len(FORMULAS) + len(MARKDOWN) + 1
        columns = {len(re.split(r"(?<!\\)\|", line)) for line in table}
        assert columns == {len(re.split(r"(?<!\\)\|", table[0]))}


def test_site_build_refuses_a_folder_it_did_not_make_and_deletes_only_its_own_files(hostile_store, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    assert main(["leaderboard", "build", str(hostile_store), "--out", str(mine)]) == 2
    assert "holds files that `leaderboard build` did not write" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        build_site(hostile_store, tmp_path / "a-file")

    site = tmp_path / "site"
    build_site(hostile_store, site)
    assert (site / MARKER).is_file() and (site / "method-erm.html").is_file()
    (site / "notes.md").write_text("added by hand")
    (site / "plots" / "by-hand.svg").write_text("<svg/>")
    (hostile_store / "run-9").rename(hostile_store / ".gone")  # drop erm from the store
    build_site(hostile_store, site)  # a rebuild of its own site is allowed
    assert not (site / "method-erm.html").exists()  # a stale page it wrote is gone
    assert (site / "notes.md").read_text() == "added by hand" and (site / "plots" / "by-hand.svg").is_file()
    assert build_site(hostile_store, tmp_path / "new" / "site")["index"].is_file()  # a new folder is fine
