"""Benchmark verdicts: a headline number against its target, and ratios measured in interleaved rounds.

A verdict is one printed line per benchmark (conftest.py prints it after the test and a table at the end of
the session).  Ratios of two timings are taken round by round with the two sides alternating, so a burst of
load from another process hits both sides of a round; the verdict is the median over rounds, and rounds go
on until the spread (interquartile range over the median) is small or the round limit is reached.
"""

from __future__ import annotations

import operator
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

OPS = {">=": operator.ge, "<=": operator.le}


@dataclass
class Verdict:
    """A headline value, its target and how it was measured; `line()` is what the benchmark prints."""

    name: str
    value: float
    target: float
    op: str = ">="
    unit: str = ""
    spread: float | None = None  # interquartile range / median of the rounds
    rounds: int | None = None
    note: str = ""
    rounds_are: str = "interleaved rounds"
    load: float = field(default_factory=lambda: os.getloadavg()[0])  # the 1-minute load when the verdict was made

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"verdict {self.name}: op must be one of {sorted(OPS)}, got {self.op!r}")

    @property
    def passed(self) -> bool:
        return bool(OPS[self.op](self.value, self.target))

    def measured(self) -> str:
        """How the value was measured: its spread over rounds, if it comes from rounds."""
        load = f"load {self.load:.2f} on {os.cpu_count()} CPUs"
        if self.rounds is None:
            return f"single measurement, {load}"
        return f"median of {self.rounds} {self.rounds_are}, spread {100 * self.spread:.1f}%, {load}"

    @property
    def status(self) -> str:
        return "ok" if self.passed else "MISSED"

    def value_text(self) -> str:
        return f"{_fmt(self.value)}{self.unit}"

    def target_text(self) -> str:
        return f"{self.op} {_fmt(self.target)}{self.unit}"

    def line(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"{self.name} {self.value_text()} (target {self.target_text()}) {self.status} [{self.measured()}{note}]"


def _fmt(x: float) -> str:
    """Three significant digits, without exponent notation for the sizes benchmarks report."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def relative_spread(values: list[float]) -> float:
    """Interquartile range over the median: robust to the one disturbed round a shared machine produces."""
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float((q75 - q25) / abs(q50)) if q50 else float("inf")


@dataclass
class Rounds:
    """The per-round values of an interleaved measurement and their median."""

    ratios: list[float] = field(default_factory=list)
    numerators: list[float] = field(default_factory=list)
    denominators: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return float(np.median(self.ratios))

    @property
    def spread(self) -> float:
        return relative_spread(self.ratios)

    def verdict(self, name: str, target: float, op: str = ">=", unit: str = "", note: str = "") -> Verdict:
        return Verdict(name, self.median, target, op, unit, self.spread, len(self.ratios), note)


def interleaved(
    numerator: Callable[[], float],
    denominator: Callable[[], float],
    min_rounds: int = 5,
    max_rounds: int = 15,
    max_spread: float = 0.05,
) -> Rounds:
    """Ratios numerator()/denominator() measured alternately, the order swapped every round.

    Stops after `min_rounds` once the spread is at most `max_spread`, else at `max_rounds`.
    """
    if not 1 <= min_rounds <= max_rounds:
        raise ValueError(f"need 1 <= min_rounds <= max_rounds, got {min_rounds}, {max_rounds}")
    out = Rounds()
    while len(out.ratios) < max_rounds:
        if len(out.ratios) % 2:
            b = denominator()
            a = numerator()
        else:
            a = numerator()
            b = denominator()
        out.numerators.append(a)
        out.denominators.append(b)
        out.ratios.append(a / b)
        if len(out.ratios) >= min_rounds and out.spread <= max_spread:
            break
    return out


def seconds(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
