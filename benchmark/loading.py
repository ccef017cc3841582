"""Data, pools and VLMs for run specs, loaded once per process; the device a run computes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fairfacebench.data import LoadedDataset, TaskData, UnlabeledPool, make_task_data
from fairfacebench.plugins import Registry
from fairfacebench.spec import RunSpec
from fairfacebench.vlm import load_vlm


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device(name)


class DataLoaderCache:
    """Loaded datasets, pools and VLMs, shared by the runs of one process."""

    def __init__(self, cache_dir: Path, reg: Registry):
        self.cache_dir, self.reg = cache_dir, reg
        self._datasets: dict[str, LoadedDataset] = {}
        self._pools: dict[str, UnlabeledPool | None] = {}
        self._vlms: dict[str, Any] = {}

    def vlm(self, value: str, device: torch.device | str) -> Any:
        """The encoder a spec's resolved `vlm` names (loaded once per process); None for 'none'."""
        if value not in self._vlms:
            self._vlms[value] = load_vlm(value, self.reg.encoders, self.cache_dir, device)
        return self._vlms[value]

    def task_data(self, spec: RunSpec, with_pool: bool) -> TaskData:
        plugin = self.reg.dataset(spec.dataset)
        root = Path(spec.data_root) if spec.data_root else None
        per_task = spec.task if plugin.splits_per_task else None
        ds = self.dataset(spec.dataset, root, spec.resolution, spec.dataset_options, per_task)
        pool = self.pool(spec, root) if with_pool else None
        return make_task_data(ds, plugin.task(spec.task), pool)

    def dataset(
        self, name: str, root: Path | None, resolution: int, options: dict[str, Any], task: str | None
    ) -> LoadedDataset:
        """A dataset loaded once per process (`task`: for a dataset whose splits depend on it, else None)."""
        per_task = {"task": task} if task is not None else {}
        key = f"{name}|{resolution}|{root}|{sorted(options.items())}|{per_task}"
        if key not in self._datasets:
            plugin = self.reg.dataset(name)
            self._datasets[key] = plugin.load(root, resolution, self.cache_dir, **per_task, **options)
        return self._datasets[key]

    def pool(self, spec: RunSpec, root: Path | None) -> UnlabeledPool | None:
        """The unlabeled pool a spec names: its dataset's own, none, or one from a pool plugin."""
        pool = spec.pool
        if pool.kind == "none":
            return None
        plugin = self.reg.dataset(spec.dataset)
        per_task = {"task": spec.task} if plugin.splits_per_task else {}
        key = f"{spec.resolution}|{pool}|{sorted(spec.dataset_options.items())}|{per_task}"
        if key not in self._pools:
            pool_root = Path(pool.root) if pool.root else None
            size = spec.resolution
            if pool.kind == "dataset":
                found = plugin.pool(root, size, self.cache_dir, **per_task, **spec.dataset_options)
            elif pool.kind == "dataset-train":
                source = self.reg.dataset(pool.source)
                found = self.reg.pools[pool.kind].load(source, size, self.cache_dir, root=pool_root)
            else:
                found = self.reg.pools[pool.kind].load(pool_root or pool.source, size, self.cache_dir)
            self._pools[key] = found
        return self._pools[key]
