"""Plugin discovery through pluggy and the `fairfacebench` entry-point group: the one list of what exists.

Built-in datasets, methods, pools, encoders and selection rules register
exactly like third-party ones.
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

    def method(self, name: str) -> type:
        if name not in self.methods:
            raise UnknownName(
                f"unknown method '{name}'{did_you_mean(name, self.methods)}; installed methods: {sorted(self.methods)}"
            )
        return self.methods[name]

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


def plugin_manager(extra: tuple[Any, ...] = ()) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    for ep in entry_points(group=GROUP):
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


def _collect(pm: pluggy.PluginManager, hook: str, key: str, kind: str, into: dict, sources: dict) -> None:
    for impl in getattr(pm.hook, hook).get_hookimpls():
        for obj in impl.function() or []:
            name = getattr(obj, key)
            if not name:
                raise PluginError(f"a {kind} from plugin '{impl.plugin_name}' has an empty name")
            if name in into:
                raise PluginError(
                    f"{kind} '{name}' is registered twice: by '{sources[f'{kind}:{name}']}' and by '{impl.plugin_name}'"
                )
            into[name] = obj
            sources[f"{kind}:{name}"] = impl.plugin_name


def build_registry(extra: tuple[Any, ...] = ()) -> Registry:
    pm = plugin_manager(extra)
    reg = Registry()
    reg.distributions = {
        f"{ep.dist.name}:{ep.name}": (ep.dist.name, ep.dist.version) for ep in entry_points(group=GROUP) if ep.dist
    }
    _collect(pm, "fairfacebench_datasets", "name", "dataset", reg.datasets, reg.sources)
    _collect(pm, "fairfacebench_methods", "name", "method", reg.methods, reg.sources)
    _collect(pm, "fairfacebench_pools", "name", "pool", reg.pools, reg.sources)
    _collect(pm, "fairfacebench_encoders", "name", "encoder", reg.encoders, reg.sources)
    _collect(pm, "fairfacebench_selection_rules", "name", "selection rule", reg.selection_rules, reg.sources)
    return reg


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The registry of installed plugins (built once per process)."""
    return build_registry()
