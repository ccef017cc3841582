"""The static leaderboard site, from hand-written store records: content, escaping, slugs, plots, CLI."""

import json
import re
import xml.etree.ElementTree as ET

import pytest
from records import fake_record

from fairfacebench.budget import Budget
from fairfacebench.cli import main
from fairfacebench.leaderboard.model import MetricSummary
from fairfacebench.leaderboard.plots import LABEL_HEIGHT_PX, MARKER_PX, overlap, place_labels
from fairfacebench.leaderboard.ranks import pareto_front
from fairfacebench.leaderboard.site import MARKER, Cell, build_site, cell, slugify
from fairfacebench.store import ResultStore

PLANTED = "<script>alert(1)</script>"
BUDGET = Budget("smoke", steps=12, batch_size=32)


def record(method, seed, acc, eod, *, hparams=None, error=None, description="", citation=""):
    """A run record with the fields the leaderboard and the site read."""
    metrics = {
        "acc": acc,
        "wga": acc - 0.2,
        "eod_max": eod,
        "eod_mean": eod / 2,
        "dp_diff": 0.1,
        "bal_acc": acc,
        "eopp_diff": eod,
        "group_acc_std": 0.02,
    }
    groups = [
        {"group": g, "n": 16, "acc": acc - d, "tpr": 0.8, "fpr": 0.1, "selection_rate": 0.5}
        for g, d in (("light", 0.0), ("medium", 0.05), ("dark", 0.1))
    ]
    rec = fake_record(
        method,
        seed,
        run_id=f"{slugify(method)}-{seed}",
        error=error,
        description=description,
        citation=citation,
        val=metrics,
        test=metrics,
        groups=groups,
        dataset="synthfaces",
        task="smiling/skin_tone",
        hparams=hparams or {"lr": 0.001},
        budget=BUDGET,
        resolution=32,
    )
    if not error:
        rec.metric_definitions = {"acc": "P(Ŷ=Y) over all test rows"}
    return rec


@pytest.fixture()
def store(tmp_path):
    s = ResultStore(tmp_path / "runs")
    for seed, (acc, eod) in enumerate([(0.80, 0.30), (0.84, 0.26)]):
        s.write(
            f"erm-{seed}",
            record("erm", seed, acc, eod, description="Empirical risk minimisation", citation="Vapnik 1995"),
        )
    s.write("fair-0", record("fair", 0, 0.78, 0.05))
    s.write("dominated-0", record("dominated", 0, 0.70, 0.40))
    s.write(
        "planted-0",
        record(
            PLANTED,
            0,
            0.75,
            0.20,
            hparams={"note": '"><img src=x onerror=alert(2)>'},
            description="<img src=x onerror=alert(3)>",
            citation="<b>bold</b>",
        ),
    )
    s.write("broken-0", record("broken", 0, 0, 0, error="ValueError: <b>boom</b> & </pre><script>alert(4)</script>"))
    return s.root


def test_pareto_front_keeps_the_undominated_points_in_eod_order():
    points = [(0.30, 0.80), (0.26, 0.84), (0.05, 0.78), (0.40, 0.70), (0.05, 0.70)]
    assert pareto_front(points) == [2, 1]
    assert pareto_front([(0.1, 0.9), (0.1, 0.9)]) == [0, 1]  # ties dominate neither
    assert pareto_front([]) == []


def test_slugs_are_safe_file_names_and_never_collide():
    assert slugify("val-reweight") == "val-reweight"
    names = [PLANTED, "../../etc/passwd", "a b", "a-b", "A-B", "", ".."]
    slugs = [slugify(n) for n in names]
    assert all(re.fullmatch(r"[a-z0-9_-]+", s) for s in slugs) and len(set(slugs)) == len(names)


def test_cells_show_mean_std_and_a_complete_interval():
    assert cell(MetricSummary(0.8, 0.01, 2, [0.7, 0.9])) == Cell("0.800 ± 0.010 [0.700, 0.900]", "0.8")
    assert cell(MetricSummary(0.8, float("nan"), 1, [0.75, None])).text == "0.800"
    assert cell(MetricSummary(float("nan"), float("nan"), 0, None)) == Cell("n/a", "")
    assert cell(MetricSummary(None, None, 0, None)) == Cell("n/a", "")


def test_site_pages_plots_and_data(store, tmp_path):
    out = tmp_path / "site"
    paths = build_site(store, out)
    index = paths["index"].read_text()
    for part in (
        "synthfaces — task smiling/skin_tone — budget smoke",
        "smoke: 12 optimizer steps at batch size 32, 32 px",
        "val_acc: highest validation accuracy",
        "<span>0.820 ± 0.028</span> <span>[",
        "y:train",
        'href="method-erm.html"',
    ):
        assert part in index, part
    assert 'title="P(Ŷ=Y) over all test rows"' in index
    board = json.loads((out / "leaderboard.json").read_text())
    assert {r["method"] for r in board["tables"][0]["rows"]} == {"erm", "fair", "dominated", PLANTED, "broken"}
    assert "acc_mean" in (out / "leaderboard.csv").read_text().splitlines()[0]
    erm = (out / "method-erm.html").read_text()
    for part in ("Empirical risk minimisation", "Vapnik 1995", "<code>lr=0.001</code>", "erm-0", "erm-1", ">dark<"):
        assert part in erm, part
    broken = (out / "method-broken.html").read_text()
    assert (
        "ValueError: &lt;b&gt;boom&lt;/b&gt; &amp; &lt;/pre&gt;&lt;script&gt;" in broken
        and "<summary>traceback</summary>" in broken
    )
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert len(plots) == 2 + 4  # trade-off and per-seed spread (erm has 2 seeds) of the table, group bars per method
    assert {f"plots/{p}" for p in plots} <= set(json.loads((out / MARKER).read_text())["files"])  # a rebuild may delete
    for p in (out / "plots").iterdir():
        svg = ET.parse(p).getroot()  # well-formed XML: plugin text cannot break out of it
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and not list(svg.iter("{http://www.w3.org/2000/svg}script"))
        assert "<script" not in p.read_text()


def test_plugin_strings_are_escaped_everywhere(store, tmp_path):
    out = tmp_path / "site"
    build_site(store, out)
    pages = {p.name: p.read_text() for p in out.glob("*.html")}
    (planted_page,) = [
        n
        for n in pages
        if n not in ("index.html", "method-erm.html", "method-fair.html", "method-dominated.html", "method-broken.html")
    ]
    assert re.fullmatch(r"method-[a-z0-9_-]+\.html", planted_page)
    for name, html in pages.items():
        assert re.findall(r"<script[^>]*>", html) == ['<script src="static/sort.js">'], name
        assert "<img src=x" not in html and "<b>" not in html, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["index.html"]
    page = pages[planted_page]
    assert "&lt;img src=x onerror=alert(3)&gt;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "note=&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in page


def test_cli_builds_the_site_and_still_writes_tables(store, tmp_path, capsys):
    out = tmp_path / "public"
    assert main(["leaderboard", "build", str(store), "--out", str(out)]) == 0
    assert (
        (out / "index.html").is_file() and (out / "static" / "sort.js").is_file() and "site:" in capsys.readouterr().out
    )
    assert main(["leaderboard", "tables", str(store)]) == 0
    assert "# fairbench leaderboard" in capsys.readouterr().out and (store / "leaderboard.md").is_file()
    assert main(["leaderboard", "build", str(store)]) == 0 and (store / "site" / "index.html").is_file()
    with pytest.raises(SystemExit):  # argparse: one store per command
        main(["leaderboard", "tables", str(store), "extra"])
    assert main(["leaderboard", "build", str(tmp_path / "missing")]) == 2
    assert "no result store at" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()


def test_point_numbers_never_overlap_each_other_or_a_marker():
    # erm and val-reweight:uniform-weights have the same numbers: coincident points; three more crowd around them
    anchors = [(100.0, 100.0), (100.0, 100.0), (104.0, 102.0), (96.0, 99.0), (300.0, 50.0)]
    widths = [8.5, 15.0, 15.0, 8.5, 8.5]
    offsets = place_labels(anchors, widths)
    boxes = [
        (x + dx - w / 2, y + dy - LABEL_HEIGHT_PX / 2, x + dx + w / 2, y + dy + LABEL_HEIGHT_PX / 2)
        for (x, y), (dx, dy), w in zip(anchors, offsets, widths)
    ]
    markers = [(x - MARKER_PX, y - MARKER_PX, x + MARKER_PX, y + MARKER_PX) for x, y in anchors]
    assert not any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert not any(overlap(box, marker) for box in boxes for marker in markers)
    assert offsets[4] == (8.5 / 2 + 7.0, 0)  # a lone point's number sits just right of it


def test_a_one_seed_board_has_no_per_seed_plot_and_shows_tier_and_flags(tmp_path):
    s = ResultStore(tmp_path / "runs")
    for method, acc in (("erm", 0.8), ("fair", 0.78)):
        rec = record(method, 0, acc, 0.2)
        rec.supervision = {"target": "train", "sensitive": "", "sensitive_at_inference": False}
        s.write(f"{method}-0", rec)
    out = tmp_path / "site"
    index = build_site(s.root, out)["index"].read_text()
    assert [p.name.endswith("-seeds.svg") for p in (out / "plots").iterdir()].count(True) == 0
    assert "Per-seed spread" not in index and "-tradeoff.svg" in index
    assert '<td data-value="train labels">train labels</td>' in index
    assert '<span class="flag flag-few-seeds" title="1 seed: across-seed intervals' in index
    assert '<span class="flag flag-smoke-budget"' in index and "tiny-groups" not in index  # groups of 16 rows
    page = (out / "method-erm.html").read_text()
    assert '<dd class="tier">train labels</dd>' in page and "flag-few-seeds" in page and "smoke-banner" in page
