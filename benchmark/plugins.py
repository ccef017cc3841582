"""Plugin discovery through pluggy and the `fairfacebench` entry-point group: the one list of what exists.

Built-in datasets, methods, pools, encoders and selection rules register
exactly like third-party ones.  `registry()` imports every installed plugin;
`trusted_registry()` only this repository's own (modules under
`fairfacebench.`), and `listed_plugins()` reads the entry points' metadata
without importing anything: the sealed runner's parent process uses these two,
so code from outside the repository never runs in it (`sealed.py`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

import pluggy

from fairfacebench import hookspecs
from fairfacebench.errors import PluginError, UnknownName

GROUP = "fairfacebench"


@dataclass
class Registry:
    datasets: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, type] = field(default_factory=dict)
    pools: dict[str, Any] = field(default_factory=dict)
    encoders: dict[str, Any] = field(default_factory=dict)
    selection_rules: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # 'kind:name' -> the plugin that registered it
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)  # plugin -> (distribution, version)
    modules: dict[str, str] = field(default_factory=dict)  # 'method:erm' -> the module that registers it

    def method(self, name: str) -> type:
        if name not in self.methods:
            raise UnknownName(
                f"unknown method '{name}'{did_you_mean(name, self.methods)}; installed methods: {sorted(self.methods)}"
            )
        return self.methods[name]

    def heavy(self, name: str) -> bool:
        """Whether method `name`'s runs read a pool or a VLM: the most work per step (executors start them first)."""
        cls = self.method(name)
        return bool(cls.needs_pool or cls.needs_vlm)

    def dataset(self, name: str) -> Any:
        if name not in self.datasets:
            raise UnknownName(
                f"unknown dataset '{name}'{did_you_mean(name, self.datasets)}; installed datasets: "
                f"{sorted(self.datasets)}"
            )
        return self.datasets[name]

    def provider(self, kind: str, name: str) -> tuple[str, str] | None:
        """(distribution, version) of the installed package that registered plugin `name` of `kind` ('method',
        'dataset', ...); None for a plugin registered in this process only (`build_registry(extra=...)`)."""
        return self.distributions.get(self.sources.get(f"{kind}:{name}", ""))

    def selection_rule(self, name: str) -> Any:
        """An installed rule by name, or a member of an installed family of rules (one with `parse(name)`, which
        returns the rule a name stands for, or None)."""
        families = [rule for rule in self.selection_rules.values() if hasattr(rule, "parse")]
        if name in self.selection_rules and not hasattr(self.selection_rules[name], "parse"):
            return self.selection_rules[name]
        for family in families:
            rule = family.parse(name)
            if rule is not None:
                return rule
        examples = "".join(f" (e.g. {f.example})" for f in families if getattr(f, "example", None))
        raise UnknownName(f"unknown selection rule '{name}'; use one of {sorted(self.selection_rules)}{examples}")


def did_you_mean(name: str, known: Any) -> str:
    """'; did you mean X?' naming the installed names closest to a mistyped one (empty when none is close)."""
    close = difflib.get_close_matches(name, sorted(known), n=3)
    return f"; did you mean {' or '.join(close)}?" if close else ""


@dataclass(frozen=True)
class ListedPlugin:
    """An installed entry point as its metadata gives it: nothing of it is imported."""

    name: str
    module: str
    distribution: str
    version: str

    @property
    def builtin(self) -> bool:
        """Part of this repository (its modules live under `fairfacebench.`), so trusted like the core."""
        return self.module == "fairfacebench" or self.module.startswith("fairfacebench.")


def listed_plugins() -> list[ListedPlugin]:
    """Every entry point of the `fairfacebench` group, read from installed metadata only."""
    return [
        ListedPlugin(ep.name, ep.module, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else "?")
        for ep in entry_points(group=GROUP)
    ]


def plugin_manager(extra: tuple[Any, ...] = (), builtin_only: bool = False) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for ep in entry_points(group=GROUP):
        if builtin_only and not ListedPlugin(ep.name, ep.module, "", "").builtin:
            continue
        try:
            module = ep.load()
        except Exception as exc:
            raise PluginError(
                f"entry point '{ep.name} = {ep.value}' (group '{GROUP}', from {ep.dist.name if ep.dist else '?'}) "
                f"failed to import: {type(exc).__name__}: {exc}. Fix or uninstall that package."
            ) from exc
        if pm.is_registered(module):
            continue
        pm.register(module, name=f"{ep.dist.name if ep.dist else '?'}:{ep.name}")
    for plugin in extra:
        pm.register(plugin)
    return pm


def _collect(pm: pluggy.PluginManager, hook: str, key: str, kind: str, into: dict, reg: Registry) -> None:
    for impl in getattr(pm.hook, hook).get_hookimpls():
        for obj in impl.function() or []:
            name = getattr(obj, key)
            if not name:
                raise PluginError(f"a {kind} from plugin '{impl.plugin_name}' has an empty name")
            if name in into:
                raise PluginError(
                    f"{kind} '{name}' is registered twice: by '{reg.sources[f'{kind}:{name}']}' and by "
                    f"'{impl.plugin_name}'"
                )
            into[name] = obj
            reg.sources[f"{kind}:{name}"] = impl.plugin_name
            reg.modules[f"{kind}:{name}"] = getattr(impl.plugin, "__name__", "")


def build_registry(extra: tuple[Any, ...] = (), builtin_only: bool = False) -> Registry:
    pm = plugin_manager(extra, builtin_only)
    reg = Registry()
    reg.distributions = {
        f"{ep.dist.name}:{ep.name}": (ep.dist.name, ep.dist.version) for ep in entry_points(group=GROUP) if ep.dist
    }
    _collect(pm, "fairfacebench_datasets", "name", "dataset", reg.datasets, reg)
    _collect(pm, "fairfacebench_methods", "name", "method", reg.methods, reg)
    _collect(pm, "fairfacebench_pools", "name", "pool", reg.pools, reg)
    _collect(pm, "fairfacebench_encoders", "name", "encoder", reg.encoders, reg)
    _collect(pm, "fairfacebench_selection_rules", "name", "selection rule", reg.selection_rules, reg)
    return reg


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The registry of installed plugins (built once per process)."""
    return build_registry()


@lru_cache(maxsize=1)
def trusted_registry() -> Registry:
    """The plugins of this repository only (built once per process): what a sealed run's parent imports."""
    return build_registry(builtin_only=True)


def selection_rule(name: str) -> Any:
    """A selection rule by name: this repository's rules without importing any other plugin; a rule only a
    plugin from outside the repository provides is looked up in the full registry (which imports them all)."""
    try:
        return trusted_registry().selection_rule(name)
    except UnknownName:
        return registry().selection_rule(name)
