"""Prints each benchmark's verdict line after its test and a summary table at the end (`make benchmarks`).

A test reports through the `verdict` fixture: `verdict(Verdict(...))` or `verdict(rounds.verdict(...))`.
The verdict is printed whether or not it met its target; a missed target then fails the test.
"""

from __future__ import annotations

import pytest
from verdicts import Verdict


class VerdictReporter:
    """Collects verdicts per test id; prints them after each test (outside output capture) and as a table."""

    def __init__(self, config):
        self.config = config
        self.verdicts: dict[str, list[Verdict]] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        """A missed target fails the test, after every verdict of the test was recorded."""
        result = yield
        missed = [v.line() for v in self.verdicts.get(item.nodeid, []) if not v.passed]
        if missed:
            raise AssertionError("target missed: " + " | ".join(missed))
        return result

    def pytest_runtest_logreport(self, report):
        if report.when != "teardown":
            return
        writer = self.config.pluginmanager.get_plugin("terminalreporter")
        for v in self.verdicts.get(report.nodeid, []):
            writer.ensure_newline()
            writer.write_line(f"VERDICT {v.line()}", bold=True, red=not v.passed, green=v.passed)

    def pytest_terminal_summary(self, terminalreporter):
        rows = [v for vs in self.verdicts.values() for v in vs]
        if not rows:
            return
        terminalreporter.section("benchmark verdicts")
        name_w = max(len("benchmark"), *(len(v.name) for v in rows))
        value_w = max(len("value"), *(len(v.value_text()) for v in rows))
        target_w = max(len("target"), *(len(v.target_text()) for v in rows))
        header = f"{'benchmark':<{name_w}}  {'value':>{value_w}}  {'target':<{target_w}}  {'':<6}  measured"
        terminalreporter.write_line(header)
        terminalreporter.write_line("-" * (len(header) + 40))
        for v in rows:
            terminalreporter.write_line(
                f"{v.name:<{name_w}}  {v.value_text():>{value_w}}  {v.target_text():<{target_w}}  {v.status:<6}  "
                f"{v.measured()}",
                red=not v.passed,
            )
        missed = sum(not v.passed for v in rows)
        terminalreporter.write_line(f"{len(rows)} verdicts: {len(rows) - missed} met their target, {missed} missed")


def pytest_configure(config):
    config.pluginmanager.register(VerdictReporter(config), "fairbench-verdicts")


@pytest.fixture
def verdict(request):
    """Record a Verdict for this test: printed after it and in the summary table; a missed target fails the test."""
    reporter = request.config.pluginmanager.get_plugin("fairbench-verdicts")
    recorded = reporter.verdicts.setdefault(request.node.nodeid, [])

    def record(v: Verdict) -> Verdict:
        recorded.append(v)
        benchmark = request.node.funcargs.get("benchmark")
        if benchmark is not None:
            benchmark.extra_info.setdefault("verdicts", []).append(v.line())
        return v

    return record
