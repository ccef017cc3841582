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
        shutil.copytree(source, target)
