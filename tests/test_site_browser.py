"""The leaderboard site in a real browser: Debian's headless Chromium driven by Python Playwright.

A small store of smoke runs on tiny synthfaces (with a planted plugin whose
name and metadata are markup, and one that fails) is rendered, opened from
file://, sorted by clicking a header, followed to method pages, and checked
for script execution and, at 1,280 and 1,920 px, for table columns past the
right edge of the window.  Screenshots go to artifacts/ (gitignored).
"""

import os
import types
from pathlib import Path

import numpy as np
import pytest

from fairfacebench import hookimpl
from fairfacebench.grid import execute
from fairfacebench.leaderboard.site import build_site
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.plan import expand, load_plan
from fairfacebench.plugins import build_registry
from fairfacebench.runner import SpecRunner
from fairfacebench.store import ResultStore
from fairfacebench.testing import SMALL_SYNTHFACES as TINY_SYNTH
from fairfacebench.testing import single_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PLANTED = "<script>alert(1)</script>"


class Prior:
    def __init__(self, probs):
        self.probs = probs

    def predict(self, images):
        return np.tile(self.probs, (len(images), 1))


class Planted(Method):
    """Markup in every string a plugin controls; predicts the training class frequencies."""

    name = PLANTED
    description = '<img src=x onerror="window.__pwned = 1">'
    citation = "<script>window.__pwned = 2</script>"
    # as long as the longest built-in disclosure (ssl-pipeline's), so the layout is tested with it
    labels = LabelUse(target="train", note="pseudo-labels for training; the meta set: y,a of a few val images per cell")

    def fit(self, ctx):
        return Prior(np.bincount(ctx.train.y, minlength=ctx.n_classes) / len(ctx.train))


class Broken(Method):
    name = "broken"
    description = "fails inside fit with markup in its error"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        raise ValueError('<img src=x onerror="window.__pwned = 3">')


PLUGIN = types.SimpleNamespace(__name__="planted_plugin", fairfacebench_methods=hookimpl(lambda: [Planted, Broken]))


def browser_or_fail():
    """Playwright's sync API, or a skip (a failure under CI=true) saying what to install."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"Debian's chromium at {CHROMIUM} (apt-get install -y chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing.append("the Python package playwright (pip install -e '.[test]'; never `playwright install`)")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def sync_playwright():
    """Checked before the store is built, so a missing browser costs no training."""
    return browser_or_fail()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Smoke runs of erm and reweight (2 seeds), the planted plugin and a failing one, rendered as a site."""
    root = tmp_path_factory.mktemp("browser")
    reg = build_registry(extra=(PLUGIN,))
    grid = load_plan(
        flags={
            "datasets": ["synthfaces"],
            "methods": ["erm", "reweight", PLANTED, "broken"],
            "seeds": 2,
            "budget": "smoke",
            "bootstrap": 200,
            "dataset_options": {"synthfaces": dict(TINY_SYNTH)},
        }
    )
    specs = [s for s in expand(grid, reg) if not (s.method == "broken" and s.seed == 1)]
    store = ResultStore(root / "runs")
    with single_thread():
        counts = execute(specs, store, SpecRunner("cpu", reg=reg))
    assert counts == {"ok": 6, "failed": 1, "skipped": 0}
    return build_site(store.root, root / "site")["index"]


def column(page, metric):
    """The sort values of a metric column, top to bottom."""
    return page.eval_on_selector_all(
        "table.leaderboard tbody tr td:nth-child("
        f"{page.eval_on_selector(f'th[data-metric={metric}]', 'th => th.cellIndex') + 1})",
        "cells => cells.map(c => c.dataset.value)",
    )


WIDTHS = (1280, 1920)
OVERFLOW = """() => {
  const page = document.documentElement, width = page.clientWidth, out = [];
  if (page.scrollWidth > width) out.push(`the page scrolls sideways to ${page.scrollWidth}`);
  for (const th of document.querySelectorAll("table thead th")) {
    const right = Math.round(th.getBoundingClientRect().right);
    if (right > width) out.push(`${th.closest("table").className}: "${th.textContent.trim()}" ends at ${right}`);
  }
  return out;
}"""


def overflowing(page):
    """Header cells of any table whose right edge lies past the window, and a page that scrolls sideways."""
    return page.evaluate(OVERFLOW)


def pwned(page):
    """What a planted handler would have set on this page's window (None: nothing ran)."""
    return page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")


def test_site_in_headless_chromium(sync_playwright, site):
    ARTIFACTS.mkdir(exist_ok=True)
    dialogs, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(site.as_uri())

        rows = page.locator("table.leaderboard tbody tr")
        assert rows.count() == 4
        assert page.locator("th[data-metric] button").count() == 5  # sort.js ran and made headers clickable
        board = page.locator("table.leaderboard")
        assert (
            board.get_by_role("link", name=PLANTED, exact=True).count() == 1
        )  # the planted name is link text, not markup
        assert page.locator("tr.failed").get_by_text("failed").count() >= 1
        images = page.eval_on_selector_all(
            "img", "imgs => imgs.map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        )
        assert len(images) == 2 and all(ok for _, ok in images), images  # trade-off and per-seed spread
        # a smoke table says it is not a comparison; two seeds are too few for intervals to mean anything
        assert "not a comparison" in page.locator(".smoke-banner").inner_text()
        assert "not meaningful below 3 seeds" in page.locator(".seed-note").inner_text()
        # the planted method predicts the training prior: one class for everyone, flagged on its row (the detail in the
        # flag's title and in the list under the table); its name is the method cell's only text
        planted_row = board.locator("tr", has=page.get_by_role("link", name=PLANTED, exact=True))
        assert planted_row.locator(".flag-degenerate").inner_text() == "degenerate"
        assert planted_row.locator(".flag-degenerate").get_attribute("title") == "one class for everyone"
        assert planted_row.locator("th").inner_text() == PLANTED
        assert "smoke-budget" in planted_row.locator("td.flags").inner_text()
        assert "one class for everyone" in page.locator("ul.flag-list").inner_text()
        # two-seed t-intervals overshoot [0, 1] (t = 12.7); shown clipped to the metric's range
        bounds = [
            float(v)
            for text in board.locator("td.num").all_inner_texts()
            if "[" in text
            for v in text.split("[")[1].rstrip("]").split(",")
        ]
        assert bounds and min(bounds) >= 0.0 and max(bounds) <= 1.0, bounds
        assert page.locator("table.paired tbody tr").count() == 2  # reweight and the planted method against erm

        before = column(page, "eod_max")
        page.click("th[data-metric=eod_max] button")
        first = column(page, "eod_max")
        assert first != before and sorted(first) == sorted(before)  # rows moved, none lost
        assert page.get_attribute("th[data-metric=eod_max]", "aria-sort") == "ascending"
        assert [float(v) for v in first[:3]] == sorted(float(v) for v in first[:3]) and first[3] == "", first
        page.click("th[data-metric=acc] button")
        page.click("th[data-metric=acc] button")
        accs = column(page, "acc")
        assert page.get_attribute("th[data-metric=acc]", "aria-sort") == "descending"
        assert [float(v) for v in accs[:3]] == sorted((float(v) for v in accs[:3]), reverse=True) and accs[3] == "", (
            accs
        )
        assert rows.first.locator("th a").inner_text() in ("erm", "reweight", PLANTED)
        page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
        assert pwned(page) is None
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for name in ("index.html", "method-erm.html", "method-reweight.html"):
                page.goto(site.with_name(name).as_uri())
                assert overflowing(page) == [], (width, name)
            page.screenshot(path=str(ARTIFACTS / f"leaderboard-method-{width}.png"), full_page=True)
        page.goto(site.as_uri())

        board.get_by_role("link", name="erm", exact=True).click()
        assert page.url.endswith("/method-erm.html")
        assert page.locator("h1").inner_text() == "erm"
        assert page.locator("table.trials tbody tr").count() == 2 and page.locator("table.groups tbody tr").count() == 3
        record_link = page.locator("table.trials tbody tr a").first
        assert (
            record_link.get_attribute("href").startswith("records/")
            and "seed 0: " in page.locator("details.config").text_content()
        )
        assert page.eval_on_selector("figure img", "i => i.complete && i.naturalWidth > 0")

        page.go_back()
        board.get_by_role("link", name=PLANTED, exact=True).click()
        assert page.locator("h1").inner_text() == PLANTED
        assert page.locator("dd.citation").inner_text() == Planted.citation
        assert page.locator("dd.description").inner_text() == Planted.description
        assert pwned(page) is None
        page.screenshot(path=str(ARTIFACTS / "leaderboard-planted-method.png"), full_page=True)
        page.goto(site.with_name("method-broken.html").as_uri())
        assert page.locator(".failures .error").inner_text() == 'ValueError: <img src=x onerror="window.__pwned = 3">'
        assert pwned(page) is None
        browser.close()
    assert dialogs == [], dialogs
    assert errors == [], errors
