"""Leaderboard plots, written as SVG files with matplotlib's object API (no pyplot state).

Text is rendered as paths (``svg.fonttype = "path"``), so a plugin's name can
never become markup inside an SVG, and dates/ids are fixed so the same
store always gives byte-identical plots.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fairfacebench.leaderboard.model import GroupMetrics, defined

SVG_RC = {"svg.fonttype": "path", "svg.hashsalt": "fairbench", "font.size": 9}
FRONT_COLOR = "#c0392b"
POINT_COLOR = "#2c6fbb"


@dataclass(frozen=True)
class Point:
    """One method on the accuracy-vs-eod_max plot; the errors (std over seeds) may be undefined."""

    label: str
    acc: float | None
    eod_max: float | None
    acc_err: float | None
    eod_err: float | None
    degenerate: bool  # drawn hollow and kept off the Pareto front


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (eod_max, acc) points no other point dominates, sorted by eod_max.

    q dominates p when q has eod_max <= p's and acc >= p's, one of them
    strictly: lower unfairness at no loss of accuracy, or the converse.
    """
    front = []
    for i, (eod, acc) in enumerate(points):
        dominated = any(e <= eod and a >= acc and (e < eod or a > acc) for j, (e, a) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def plain(text: str) -> str:
    """A label matplotlib draws literally (a '$' would otherwise start mathtext)."""
    return text.replace("$", r"\$")


def save(fig: Figure, path: Path) -> Path:
    with mpl.rc_context(SVG_RC):
        fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return path


def tradeoff(points: list[Point], path: Path, title: str) -> Path:
    """Test accuracy against eod_max, one point per method (error bars: std over seeds), Pareto front marked; a
    degenerate predictor is drawn hollow and kept off the front."""
    shown = [p for p in points if defined(p.acc) and defined(p.eod_max)]
    eligible = [p for p in shown if not p.degenerate]
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        for p in shown:
            draw_point(ax, p)
        draw_front(ax, [eligible[i] for i in pareto_front([(p.eod_max, p.acc) for p in eligible])])
        ax.set_xlabel("eod_max on test (lower is fairer)")
        ax.set_ylabel("accuracy on test (higher is better)")
        ax.set_title(plain(title))
        ax.grid(alpha=0.3)
    return save(fig, path)


def draw_point(ax: Axes, p: Point) -> None:
    ax.errorbar(
        p.eod_max,
        p.acc,
        xerr=_err(p.eod_err),
        yerr=_err(p.acc_err),
        fmt="o",
        color=POINT_COLOR,
        mfc="none" if p.degenerate else POINT_COLOR,
        ecolor="#9bb7d9",
        capsize=2,
    )
    ax.annotate(plain(p.label), (p.eod_max, p.acc), textcoords="offset points", xytext=(5, 4))


def draw_front(ax: Axes, front: list[Point]) -> None:
    """The Pareto front as a dashed step line through circled points (nothing when empty)."""
    if not front:
        return
    x, y = [p.eod_max for p in front], [p.acc for p in front]
    ax.step(x, y, where="post", color=FRONT_COLOR, linestyle="--", label="Pareto front")
    ax.scatter(x, y, s=110, facecolors="none", edgecolors=FRONT_COLOR, zorder=3)
    ax.legend(loc="lower right")


def _err(value: float | None) -> float | None:
    return value if defined(value) else None


def group_bars(groups: list[GroupMetrics], path: Path, title: str) -> Path:
    """Test accuracy per sensitive group (mean over the selected runs), with the group sizes."""
    names = [plain(f"{g.group} (n={g.n})") for g in groups]
    accs = [g.acc if defined(g.acc) else 0.0 for g in groups]
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(5.6, 0.45 * len(groups) + 1.2))
        ax = fig.add_subplot()
        bars = ax.barh(range(len(groups)), accs, color=POINT_COLOR)
        ax.bar_label(bars, labels=[f"{a:.3f}" if defined(g.acc) else "n/a" for a, g in zip(accs, groups)], padding=3)
        ax.set_yticks(range(len(groups)), names)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.1)
        ax.set_xlabel("test accuracy in the group")
        ax.set_title(plain(title))
    return save(fig, path)


def seed_spread(series: dict[str, dict[str, list[float]]], metrics: tuple[str, ...], path: Path, title: str) -> Path:
    """Per-seed test values of each metric, one column of dots per method, a bar at the mean.

    series: method label -> metric -> values of the selected run of each seed.
    """
    labels = list(series)
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.0 * len(metrics)))
        axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
        for ax, metric in zip(axes, metrics):
            for x, label in enumerate(labels):
                values = [v for v in series[label].get(metric, []) if defined(v)]
                ax.scatter([x] * len(values), values, color=POINT_COLOR, alpha=0.7, s=18)
                if values:
                    ax.hlines(sum(values) / len(values), x - 0.25, x + 0.25, color=FRONT_COLOR)
            ax.set_xticks(range(len(labels)), [plain(lbl) for lbl in labels], rotation=20, ha="right")
            ax.set_xlim(-0.6, len(labels) - 0.4)
            ax.set_ylabel(f"test {metric}")
            ax.grid(alpha=0.3, axis="y")
        axes[0].set_title(plain(title))
        fig.tight_layout()
    return save(fig, path)


def critical_difference_plot(ranks: dict[str, float], cd: float | None, path: Path, title: str) -> Path:
    """Mean ranks on one axis (1 = best), with a bar as long as the Nemenyi critical difference (Demšar 2006)."""
    items = sorted(((r, m) for m, r in ranks.items() if defined(r)))
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(6.4, 0.9 + 0.22 * len(items)))
        ax = fig.add_subplot()
        for y, (rank, method) in enumerate(items):
            ax.plot([rank], [y], "o", color=POINT_COLOR)
            ax.annotate(plain(f"{method} {rank:.2f}"), (rank, y), textcoords="offset points", xytext=(6, -3))
        if defined(cd) and items:
            ax.plot([items[0][0], items[0][0] + cd], [-0.8, -0.8], color=FRONT_COLOR, linewidth=3)
            ax.annotate(f"critical difference {cd:.2f}", (items[0][0], -0.8), textcoords="offset points", xytext=(0, 4))
        if items:
            right = max(items[-1][0], items[0][0] + (cd if defined(cd) else 0.0))
            ax.set_xlim(min(1.0, items[0][0]) - 0.1, right + 0.6 * (right - items[0][0] + 0.5))
            ax.set_ylim(len(items) - 0.4, -1.6)
        ax.set_xlabel("mean rank (1 = best)")
        ax.set_yticks([])
        ax.set_title(plain(title), fontsize=9, pad=12)
        return save(fig, path)
