import os
from pathlib import Path

import pytest

# Small synthfaces splits keep end-to-end tests to seconds on a 2-core CPU.
TINY_SYNTH = {"n_train": 320, "n_val": 96, "n_test": 160}


@pytest.fixture(scope="session")
def utkface_root() -> Path:
    """The real UTKFace folder, from FAIRBENCH_UTKFACE_ROOT; CI must have it."""
    root = os.environ.get("FAIRBENCH_UTKFACE_ROOT")
    if root and Path(root).is_dir():
        return Path(root)
    message = f"UTKFace folder not found (FAIRBENCH_UTKFACE_ROOT={root!r}); set it to ../shared/data/utkface/UTKFace"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests build caches under a temporary directory unless FAIRBENCH_CACHE is set."""
    if "FAIRBENCH_CACHE" not in os.environ:
        os.environ["FAIRBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield


@pytest.fixture(autouse=True, scope="session")
def _mini_clip_from_user_cache(_isolated_cache):
    """Copy a trained synthfaces mini-CLIP (same config key) from ~/.cache/fairbench, else a session trains it once."""
    import shutil

    from fairfacebench.datasets.synthfaces.mini_clip import MiniClipConfig, cache_path

    source = cache_path(Path.home() / ".cache" / "fairbench", MiniClipConfig())
    target = cache_path(Path(os.environ["FAIRBENCH_CACHE"]), MiniClipConfig())
    if (source / "weights.pt").is_file() and (source / "report.json").is_file() and not target.exists():
        # copied aside, then renamed into place: under pytest-xdist another worker may be doing the same
        aside = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        shutil.copytree(source, aside)
        try:
            os.rename(aside, target)
        except OSError:  # another worker's copy is in place
            shutil.rmtree(aside)


# Test files that start a local Ray cluster: under pytest-xdist they share one worker, so two never start at once.
RAY_FILES = {"test_protocol.py", "test_sharding.py"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which turns the marks into group names
def pytest_collection_modifyitems(config, items):
    """`make test` runs the suite on two pytest-xdist workers with `--dist loadgroup`: each test file stays whole
    in one worker (its module fixtures and test order as in a serial run), files are spread over the workers."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group("ray" if item.path.name in RAY_FILES else item.path.name))
