"""The code of a run's method: a fingerprint of the sources it runs and the distribution that provided it.

Every record stores it (`record.MethodCode`), outside the run id: `fairbench
run` compares a stored run's fingerprint with the installed code's and names
the runs made with other code (`--rerun-changed` recomputes them).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import sys
import tokenize
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fairfacebench.plugins import trusted_registry

if TYPE_CHECKING:
    from fairfacebench.record import RunRecord


@dataclass(frozen=True)
class MethodCode:
    """The code of a run's method (`method_code.method_code`): a fingerprint of the sources of the method's module
    and of the modules of its package that module imports, and the installed distribution that provided it.  Not
    part of the run id: a run whose fingerprint differs from the installed code's was made with other code."""

    fingerprint: str  # sha256 (16 hex digits) of the modules' tokens, comments, layout and docstrings left out
    modules: list[str]  # the modules it covers, e.g. ['fairfacebench.methods.base', 'fairfacebench.methods.erm']
    distribution: str | None = None  # e.g. 'fairfacebench', 'fairbench-my-method'; None: registered in-process
    version: str | None = None  # the distribution's version


def method_code(cls: type, provider: tuple[str, str] | None) -> MethodCode | None:
    """The fingerprint of a method's code and the distribution that provided it (`Registry.provider`).

    It covers the module defining the method class and every module of the same package that module imports,
    directly or through one another (for a built-in: `fairfacebench.methods.*`, so the shared `base`, `common` and
    `losses`; for a plugin package: its own modules).  The core is left out: every record names its version and
    commit, and a harness refactor must not mark every stored run as made with other code.  Each module counts by
    its tokens without comments, layout and docstrings, and the fingerprint does not depend on module names: moving
    or reformatting a file changes nothing, editing what it executes does.  None for a method whose module has no
    source file (defined interactively): its code cannot be told apart.  A method from outside this repository that
    the harness does not import (`sealed.described`) carries the fingerprint its sandboxed describing child took.
    """
    distribution, dist_version = provider or (None, None)
    if hasattr(cls, "described_code"):
        known = cls.described_code
        return None if known is None else replace(known, distribution=distribution, version=dist_version)
    modules = code_modules(cls.__module__)
    if not modules:
        return None
    digests = sorted(module_digest(name) for name in modules)
    return MethodCode(
        fingerprint=hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16],
        modules=list(modules),
        distribution=distribution,
        version=dist_version,
    )


def installed_code(method: str, reg: Any) -> MethodCode | None:
    """The installed code of method `method` (None when it is not installed)."""
    cls = reg.methods.get(method)
    return None if cls is None else method_code(cls, reg.provider("method", method))


def results_code(method: str, reg: Any) -> tuple[str, ...] | None:
    """The fingerprints whose runs count as made with the installed code of method `method`: the installed code's,
    then those the method declares in `same_results_as` (None when it is not installed or its code is unknown).

    A method declares an earlier fingerprint there only when its code computes exactly what that code computed on
    every run that finished: a refactor, or a fix of a path that could only fail before.  The method's docs name the
    evidence.  A change of what a finished run computes bumps `version` instead."""
    code = installed_code(method, reg)
    if code is None:
        return None
    return (code.fingerprint, *getattr(reg.methods[method], "same_results_as", ()))


def installed_fingerprints(record: RunRecord) -> tuple[str, ...] | None:
    """`results_code` of a run's method as installed here, for records that carry a fingerprint to compare with
    (None otherwise: then the installed plugins are not even loaded).  Only this repository's methods are looked
    at: a method from outside it is not imported here (docs/ARCHITECTURE.md, "Threat model"), so its installed code
    is unknown to the leaderboard (`fairbench run` compares it through the method's sandboxed description)."""
    if record.method_code is None:
        return None
    return results_code(record.method, trusted_registry())


def made_with_other_code(record: RunRecord, accepted: tuple[str, ...] | None) -> bool | None:
    """Whether a stored run's method code is none of the `accepted` fingerprints (`results_code`): None when either
    is unknown (a record from before code fingerprints, or a method no longer installed)."""
    if record.method_code is None or accepted is None:
        return None
    return record.method_code.fingerprint not in accepted


@lru_cache(maxsize=None)
def code_modules(module: str) -> tuple[str, ...]:
    """`module` and the modules of its package it imports, directly or through one another, sorted."""
    package = package_of(module)
    scope = package if package != module or is_package(module) else ""

    def inside(name: str) -> bool:
        return name == module or bool(scope) and (name == scope or name.startswith(scope + "."))

    found, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in found or source_path(name) is None:
            continue
        found.add(name)
        todo += [m for m in imported_modules(name) if inside(m)]
    return tuple(sorted(found))


def imported_modules(module: str) -> set[str]:
    """Every module `module` imports, at its top or inside functions (`from X import Y` names X.Y when that is a
    module, else X)."""
    found = set()
    for node in ast.walk(ast.parse(source_of(module))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package_of(module))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base)
    return found


def is_module(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent that is a module, not a package
        return False


def is_package(name: str) -> bool:
    if name in sys.modules:
        return hasattr(sys.modules[name], "__path__")
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.submodule_search_locations is not None


def package_of(module: str) -> str:
    """The package a module belongs to: itself for a package (its `__init__`), else its parent ('' at the top)."""
    return module if is_package(module) else module.rpartition(".")[0]


def source_path(module: str) -> Path | None:
    """The source file of a module (None without one: a built-in, an extension, a namespace, an interactive
    session)."""
    origin = getattr(sys.modules.get(module), "__file__", None)
    if origin is None:
        try:
            origin = getattr(importlib.util.find_spec(module), "origin", None)
        except (ImportError, ValueError):
            return None
    return Path(origin) if origin and origin.endswith(".py") and Path(origin).is_file() else None


def source_of(module: str) -> bytes:
    path = source_path(module)
    if path is None:
        raise FileNotFoundError(f"module {module} has no Python source file to fingerprint")
    return path.read_bytes()


def module_digest(module: str) -> str:
    """sha256 of a module's `code_tokens`, tokenized once per version of its file (path, modification time, size):
    a store's check looks at every run's method, and each would tokenize the same files again."""
    path = source_path(module)
    if path is None:
        raise FileNotFoundError(f"module {module} has no Python source file to fingerprint")
    stat = path.stat()
    return _file_digest(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=None)
def _file_digest(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(code_tokens(Path(path).read_bytes())).hexdigest()


def code_tokens(source: bytes) -> bytes:
    """A module's tokens, space-separated, without comments, blank lines, layout and docstrings (statements that
    are a lone string): what Python executes, so reformatting or documenting a method is not a change of code."""
    kept: list[str] = []
    statement: list[tokenize.TokenInfo] = []
    for token in tokenize.tokenize(io.BytesIO(source).readline):
        if token.type in (tokenize.ENCODING, tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
            continue
        if token.type in (tokenize.INDENT, tokenize.DEDENT):
            kept.append(tokenize.tok_name[token.type])
        elif token.type == tokenize.NEWLINE:
            if not all(t.type == tokenize.STRING for t in statement):
                kept += [t.string for t in statement] + [";"]
            statement = []
        else:
            statement.append(token)
    kept += [t.string for t in statement]
    return " ".join(kept).encode()
