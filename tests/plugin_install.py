"""Installing a test plugin package into a directory of its own (the venv itself is not touched)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def install_plugin(pkg: Path, target: Path, **env: str) -> dict[str, str]:
    """`pip install --target` of the package at `pkg` (no dependencies, no build isolation: offline), and the
    environment with `target` on PYTHONPATH (plus `env`) under which a subprocess finds its entry points."""
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target"]
    subprocess.run([*install, str(target), str(pkg)], check=True, capture_output=True)
    return {**os.environ, "PYTHONPATH": str(target), **env}
