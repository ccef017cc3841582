"""Whole-benchmark config files (TOML): the packaged default plus overrides.

Resolution order: benchmark/configs/default.toml, then `--config FILE`, then
flags given on the command line.  The resolved config is stored in every run
record, so a leaderboard can be reproduced from any of its runs.
"""
from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

from fairfacebench.runner import Grid
from fairfacebench.training import Augment

DEFAULT_CONFIG = files("fairfacebench") / "configs" / "default.toml"


class ConfigError(ValueError):
    """A config file is malformed or names an unknown key."""


def _read(path: Path | Any) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The packaged defaults, updated by the file at `path` and then by `overrides` (None values ignored)."""
    config = _read(DEFAULT_CONFIG)
    if path is not None:
        user = _read(Path(path))
        unknown = sorted(set(user) - set(config))
        if unknown:
            raise ConfigError(f"{path}: unknown key(s) {unknown}; valid keys: {sorted(config)}")
        for key, value in user.items():
            config[key] = {**config[key], **value} if isinstance(config[key], dict) and key == "augment" else value
    for key, value in (overrides or {}).items():
        if value is not None:
            config[key] = value
    return config


def grid_from_config(config: dict[str, Any], method_names: list[str]) -> Grid:
    methods = method_names if config["methods"] == "all" else list(config["methods"])
    return Grid(
        datasets=list(config["datasets"]),
        methods=methods,
        tasks={k: list(v) for k, v in config["tasks"].items()},
        seeds=int(config["seeds"]),
        trials=int(config["hparam_trials"]),
        budget=config["budget"],
        resolution=int(config["resolution"]) or None,
        backbone=config["backbone"],
        weights=config["weights"],
        augment=Augment(**config["augment"]),
        data_roots=dict(config["data_roots"]),
        dataset_options={k: dict(v) for k, v in config["dataset_options"].items()},
        bootstrap=int(config["bootstrap"]),
        vlm=str(config.get("vlm", "auto")),
    )
