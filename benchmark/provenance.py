"""Where and when a run was computed: package versions, the source commit, the host's CPU, when it started and ended
(every record carries them; the method's code: `method_code`)."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "fairfacebench",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "numpy",
    "fairlearn",
    "faiss-cpu",
    "pandas",
)


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in TRACKED_PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    src = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """The CPU model and instruction-set flags (/proc/cpuinfo) and the SIMD level torch dispatches to."""
    import torch  # here, not at the top: the leaderboard reads `hardware_of` without importing torch

    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("model name", "flags", "Features") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return {
        "cpu_model": fields.get("model name") or platform.processor() or None,
        "cpu_flags": sorted((fields.get("flags") or fields.get("Features") or "").split()),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


NOT_RECORDED = "not recorded"


def hardware_of(host: dict[str, Any] | None) -> str:
    """The hardware that decides a run's numbers, as a record's host states it: 'CPU model (the instruction set
    torch dispatches to)', or 'not recorded' when the host states neither."""
    host = host or {}
    model, capability = host.get("cpu_model"), host.get("torch_cpu_capability")
    if not model and not capability:
        return NOT_RECORDED
    return f"{model or 'unknown CPU'} ({capability or 'capability not recorded'})"


def host_info() -> dict[str, Any]:
    """The host as a record states it: platform, this process's torch threads, the CPU model and flags."""
    import torch

    return {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), **cpu_info()}


def utc_now() -> str:
    """The time now as ISO 8601 in UTC, to the millisecond (e.g. '2025-05-01T12:00:00.123+00:00')."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def machine_folders() -> dict[str, str]:
    """This machine's folders a traceback names, and what a record writes instead: the source checkout (when the
    package runs from one), the environment, the Python installation and the home folder."""
    source = Path(__file__).parent.parent
    checkout = [(source, "<fairbench>")] if (source / "pyproject.toml").is_file() else []
    named = [*checkout, (Path(sys.prefix), "<env>"), (Path(sys.base_prefix), "<python>"), (Path.home(), "~")]
    # as written and resolved: a traceback names a file by the path it was imported from
    return {str(form): name for folder, name in reversed(named) for form in (folder.absolute(), folder.resolve())}


def portable(text: str, folders: dict[str, str] | None = None) -> str:
    """`text` (a failed run's traceback or error line) with each of `folders` (default: `machine_folders()`) written
    as its name, the longest folder first, so a committed record names no folder of the machine it ran on;
    '<env>/lib/python3.11/site-packages/torch/nn/modules/module.py' still says which file and line failed."""
    folders = machine_folders() if folders is None else folders
    for folder in sorted((f for f in folders if f not in ("", "/")), key=len, reverse=True):
        text = text.replace(folder.rstrip("/") + "/", folders[folder] + "/")
    return text
