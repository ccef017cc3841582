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


TIER_COLORS = {
    "train labels": "#2c6fbb",
    "+ validation labels": "#d35400",
    "+ sensitive attribute at inference": "#7d3c98",
}
OTHER_COLOR = "#7f8c8d"
LABEL_HEIGHT_PX = 12.0
LABEL_CHAR_PX = 6.5
MARKER_PX = 5.0
LABEL_DISTANCES_PX = (7.0, 12.0, 18.0, 26.0, 36.0, 50.0)


@dataclass(frozen=True)
class Point:
    """One method on the accuracy-vs-eod_max plot; the errors (std over seeds) may be undefined."""

    label: str
    acc: float | None
    eod_max: float | None
    acc_err: float | None
    eod_err: float | None
    degenerate: bool  # drawn hollow; the table keeps it off the Pareto front
    tier: str = ""
    on_front: bool = False  # on its tier's Pareto front (`Table.pareto_fronts`)


def plain(text: str) -> str:
    """A label matplotlib draws literally (a '$' would otherwise start mathtext)."""
    return text.replace("$", r"\$")


def save(fig: Figure, path: Path) -> Path:
    with mpl.rc_context(SVG_RC):
        fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    return path


def tier_color(tier: str) -> str:
    return TIER_COLORS.get(tier, OTHER_COLOR)


def place_labels(anchors: Sequence[tuple[float, float]], widths: Sequence[float]) -> list[tuple[float, float]]:
    """Offsets (display pixels) of one label per anchor such that no two labels overlap and no label covers a
    marker: for each anchor in turn, the first of eight directions at growing distances (LABEL_DISTANCES_PX) whose
    box (width from `widths`, height LABEL_HEIGHT_PX, centred on anchor + offset) is free; if none is, the last."""
    placed: list[tuple[float, float, float, float]] = []
    markers = [(x - MARKER_PX, y - MARKER_PX, x + MARKER_PX, y + MARKER_PX) for x, y in anchors]
    offsets = []
    for (x, y), width in zip(anchors, widths):
        for dx, dy in candidate_offsets(width):
            box = (x + dx - width / 2, y + dy - LABEL_HEIGHT_PX / 2, x + dx + width / 2, y + dy + LABEL_HEIGHT_PX / 2)
            if not any(overlap(box, other) for other in placed + markers):
                break
        placed.append(box)
        offsets.append((dx, dy))
    return offsets


def candidate_offsets(width: float) -> list[tuple[float, float]]:
    """Label centres around a marker: right, above, left, below and the diagonals, nearest first."""
    out = []
    for r in LABEL_DISTANCES_PX:
        half_w, half_h = width / 2 + r, LABEL_HEIGHT_PX / 2 + r
        out += [(half_w, 0), (0, half_h), (-half_w, 0), (0, -half_h)]
        out += [(half_w, half_h), (-half_w, half_h), (-half_w, -half_h), (half_w, -half_h)]
    return out


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tradeoff(points: list[Point], path: Path, title: str) -> Path:
    """Test accuracy against eod_max, one numbered point per method coloured by its information tier (error bars:
    std over seeds), each tier's Pareto front dashed in its colour; a degenerate predictor is drawn hollow. The
    numbers (in the key's order: by tier, then as given) are placed apart from each other and from the markers; the
    key beside the plot names them."""
    tiers = list(TIER_COLORS)
    shown = sorted(
        (p for p in points if defined(p.acc) and defined(p.eod_max)),
        key=lambda p: tiers.index(p.tier) if p.tier in tiers else len(tiers),
    )
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(6.4, 4.2))
        ax = fig.add_subplot()
        for p in shown:
            draw_point(ax, p)
        for tier in dict.fromkeys(p.tier for p in shown):
            draw_front(ax, [p for p in shown if p.tier == tier and p.on_front], tier_color(tier))
        ax.set_xlabel("eod_max on test (lower is fairer)")
        ax.set_ylabel("accuracy on test (higher is better)")
        ax.set_title(plain(title))
        ax.grid(alpha=0.3)
        number_points(ax, shown)
        draw_key(fig, ax, shown)
    return save(fig, path)


def draw_point(ax: Axes, p: Point) -> None:
    color = tier_color(p.tier)
    ax.errorbar(
        p.eod_max,
        p.acc,
        xerr=_err(p.eod_err),
        yerr=_err(p.acc_err),
        fmt="o",
        color=color,
        mfc="none" if p.degenerate else color,
        ecolor=color,
        elinewidth=0.8,
        alpha=0.9,
        capsize=2,
    )


def number_points(ax: Axes, shown: list[Point]) -> None:
    """Each point's number (its line in the key), placed by `place_labels` in display space."""
    ax.set_xlim(*ax.get_xlim())
    ax.set_ylim(*ax.get_ylim())
    anchors = [tuple(ax.transData.transform((p.eod_max, p.acc))) for p in shown]
    numbers = [str(i + 1) for i in range(len(shown))]
    offsets = place_labels(anchors, [LABEL_CHAR_PX * len(n) + 2 for n in numbers])
    for p, number, (dx, dy) in zip(shown, numbers, offsets):
        ax.annotate(
            number,
            (p.eod_max, p.acc),
            textcoords="offset pixels",
            xytext=(dx, dy),
            ha="center",
            va="center",
            fontsize=8,
            color=tier_color(p.tier),
        )


def draw_key(fig: Figure, ax: Axes, shown: list[Point]) -> None:
    """The numbered methods, by tier, beside the axes; front and hollow markers explained under them."""
    lines, colors = [], []
    for tier in dict.fromkeys(p.tier for p in shown):
        lines.append(tier or "tier not recorded")
        colors.append(tier_color(tier))
        for i, p in enumerate(shown):
            if p.tier == tier:
                lines.append(f"  {i + 1}  {plain(p.label)}" + (" (degenerate)" if p.degenerate else ""))
                colors.append(tier_color(tier))
    lines.append("dashed: Pareto front per tier")
    colors.append("#333333")
    top = ax.get_position().y1
    for j, (line, color) in enumerate(zip(lines, colors)):
        fig.text(ax.get_position().x1 + 0.02, top - j * 0.04, line, color=color, fontsize=8, va="top")


def draw_front(ax: Axes, front: list[Point], color: str) -> None:
    """A tier's Pareto front as a dashed step line through circled points (nothing when empty)."""
    if not front:
        return
    front = sorted(front, key=lambda p: (p.eod_max, -p.acc))
    x, y = [p.eod_max for p in front], [p.acc for p in front]
    ax.step(x, y, where="post", color=color, linestyle="--", linewidth=1)
    ax.scatter(x, y, s=110, facecolors="none", edgecolors=color, zorder=3)


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


def equal_fairness_curve(
    raw: tuple[float | None, float | None],
    points: list[tuple[float, float | None, float | None]],
    path: Path,
    title: str,
) -> Path:
    """One method's test accuracy against its achieved test eod_max: raw (hollow square) and post-processed to each
    tolerance t (dots joined in order of t, each labelled '≤t'); dotted vertical lines mark the tolerances.

    raw: (eod_max, acc); points: (tolerance, achieved eod_max, acc), means over seeds.
    """
    shown = [p for p in points if defined(p[1]) and defined(p[2])]
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(5.2, 3.6))
        ax = fig.add_subplot()
        for tolerance, _, _ in points:
            ax.axvline(tolerance, color="#999999", linestyle=":", linewidth=0.8)
        if shown:
            ax.plot([p[1] for p in shown], [p[2] for p in shown], "-o", color=POINT_COLOR, markersize=5)
            for i, (tolerance, eod, acc) in enumerate(shown):  # labels stepped down, so neighbours do not overlap
                ax.annotate(
                    f"≤{tolerance:g}", (eod, acc), textcoords="offset points", xytext=(5, 4 - 9 * i), fontsize=7
                )
        if defined(raw[0]) and defined(raw[1]):
            ax.plot([raw[0]], [raw[1]], "s", mfc="none", color=FRONT_COLOR, markersize=7)
            ax.annotate(
                "raw", raw, textcoords="offset points", xytext=(-6, 6), fontsize=7, color=FRONT_COLOR, ha="right"
            )
        ax.set_xlabel("achieved eod_max on test (dotted: the tolerances)")
        ax.set_ylabel("accuracy on test")
        ax.set_title(plain(title))
        ax.grid(alpha=0.3)
    return save(fig, path)


def equal_fairness_curves(series: dict[str, list[tuple[str, float | None]]], path: Path, title: str) -> Path:
    """Test accuracy of each method (one numbered line each, the key beside the plot names them) raw and at each
    tolerance. series: label -> [(x label, mean accuracy)], the same x labels in the same order for every method."""
    labels = list(series)
    ticks = [x for x, _ in next(iter(series.values()), [])]
    colors = mpl.colormaps["tab20"]
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(6.4, 4.4))
        ax = fig.add_subplot()
        for i, label in enumerate(labels):
            values = [v if defined(v) else float("nan") for _, v in series[label]]
            ax.plot(range(len(values)), values, "-o", color=colors(i % 20), markersize=3, linewidth=1)
            ax.annotate(
                str(i + 1),
                (len(values) - 1, values[-1]),
                textcoords="offset points",
                xytext=(4, 0),
                fontsize=7,
                color=colors(i % 20),
                va="center",
            )
        ax.set_xticks(range(len(ticks)), [plain(t) for t in ticks])
        ax.set_ylabel("accuracy on test (mean over seeds)")
        ax.set_title(plain(title))
        ax.grid(alpha=0.3)
        top = ax.get_position().y1
        for i, label in enumerate(labels):
            fig.text(
                ax.get_position().x1 + 0.03,
                top - i * 0.035,
                f"{i + 1}  {plain(label)}",
                color=colors(i % 20),
                fontsize=7,
                va="top",
            )
    return save(fig, path)


def reliability(groups: list[tuple[str, int, float | None, list[dict]]], path: Path, title: str) -> Path:
    """A reliability diagram per sensitive group (Guo et al. 2017, Fig. 1): accuracy per bin of top-label confidence
    as bars (empty bins left blank), the diagonal of perfect calibration, the group's rows and ECE in its title.

    groups: (name, rows, ECE, bins as `calibration.reliability_bins` rows: lower, upper, count, confidence, accuracy).
    """
    columns = min(len(groups), 4)
    rows = -(-len(groups) // columns)
    with mpl.rc_context(SVG_RC):
        fig = Figure(figsize=(2.7 * columns, 2.7 * rows + 0.4))
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, (name, n, ece, bins) in zip(axes, groups):
            filled = [b for b in bins if b["count"]]
            ax.bar(
                [(b["lower"] + b["upper"]) / 2 for b in filled],
                [b["accuracy"] for b in filled],
                width=[b["upper"] - b["lower"] for b in filled],
                color=POINT_COLOR,
                edgecolor="white",
                alpha=0.85,
            )
            ax.plot([0, 1], [0, 1], "--", color="#555555", linewidth=0.8)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(plain(f"{name} (n={n}, ECE {ece:.3f})" if defined(ece) else f"{name} (n={n})"), fontsize=8)
            ax.set_xlabel("confidence", fontsize=8)
            ax.set_ylabel("accuracy", fontsize=8)
        for ax in axes[len(groups) :]:
            ax.set_visible(False)
        fig.suptitle(plain(title), fontsize=9)
        fig.tight_layout()
    return save(fig, path)
