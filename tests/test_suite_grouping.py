"""The suite's own grouping: under `make test` (pytest-xdist, `--dist loadgroup`) each test file stays in one worker.

pytest-xdist names a test's group by appending `@group` to its node id; pytest 9 stopped reading that rewrite, so
files were split across workers and two workers once built tests/hostile_plugin at the same time.  This test fails
whenever the group no longer reaches the node id the scheduler sees.
"""

import pytest


def test_under_loadgroup_this_test_is_scheduled_with_its_files_group(request):
    worker = getattr(request.config, "workerinput", None)  # a worker sees its own `dist` as "no"; the main's argv
    if worker is None or "loadgroup" not in " ".join(worker["mainargv"]):
        pytest.skip("runs under pytest-xdist with --dist loadgroup, as `make test` runs the suite")
    assert request.node.nodeid.endswith("@test_suite_grouping.py"), request.node.nodeid
