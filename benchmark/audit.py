"""What a method reaches around its fit context while the conformance kit fits it: files, processes, threads and
the harness's own functions.

Files and processes are watched with a Python audit hook (PEP 578): while a
method fits and predicts in the kit, opening, listing, writing or removing a
path outside the Python installation, the import path, the pretrained weights
and the encoders' own folders raises `ForbiddenAccess` (and is recorded, in
case the method swallows it), as does starting a process or opening a network
connection.  `harness_patches` finds functions of `fairfacebench` replaced by
code of a plugin's package (patched at import).  All of this runs in the
method's own process, so it catches honest mistakes and plain attacks only: a
plugin can remove a hook's effect through ctypes.  Against a hostile plugin
the sealed runner holds instead (docs/ARCHITECTURE.md, "Threat model").
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from typing import Any, Iterator

# The folders of the import package (pyproject.toml's package-dir); sub-folders with neither code nor package
# data (stored results, say) are not part of it.
PACKAGES = (
    "fairfacebench",
    "fairfacebench.datasets",
    "fairfacebench.encoders",
    "fairfacebench.methods",
    "fairfacebench.metrics",
    "fairfacebench.leaderboard",
)
PACKAGE_DATA = ("configs", "templates", "static")
# Audit events on paths -> the position of the path among their arguments (docs.python.org, "Audit events table").
PATH_EVENTS = {
    "open": 0,
    "os.listdir": 0,
    "os.scandir": 0,
    "glob.glob": 0,
    "os.mkdir": 0,
    "os.remove": 0,
    "os.rmdir": 0,
    "os.rename": 0,
    "os.truncate": 0,
    "os.chmod": 0,
    "os.symlink": 1,
    "os.link": 1,
    "shutil.rmtree": 0,
    "shutil.copyfile": 1,
}
PROCESS_EVENTS = (
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "socket.connect",
)
SYSTEM_READS = ("/proc", "/sys", "/dev")  # what torch and the C library read about the machine


class ForbiddenAccess(PermissionError):
    """A method reached a file, a process or the network outside what a fit may use."""


def package_folders() -> list[str]:
    folders = []
    for name in PACKAGES:
        spec = find_spec(name)
        folders += list(spec.submodule_search_locations or []) if spec is not None else []
    return folders


def import_path() -> list[str]:
    """The folders of the import path (`sys.path`), without the script's or the current folder."""
    script = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else None
    skip = {os.getcwd(), os.path.dirname(os.path.abspath(script)) if script else None}
    return [p for p in dict.fromkeys(sys.path) if p and os.path.isabs(p) and os.path.isdir(p) and p not in skip]


def import_folders() -> list[str]:
    """Folders Python imports from: the installation and the import path (not the script's or current folder)."""
    folders = [sys.prefix, sys.base_prefix, *import_path(), *package_folders()]
    cwd = os.getcwd()
    return [f for f in folders if os.path.isdir(f) and f != cwd]


def non_code_folders(folder: str) -> list[str]:
    """Sub-folders of a package folder holding neither Python code nor package data (e.g. stored results)."""
    found = []
    for parent, subdirs, _ in os.walk(folder):
        keep = []
        for name in subdirs:
            path = os.path.join(parent, name)
            if name == "__pycache__" or os.path.isfile(os.path.join(path, "__init__.py")):
                keep.append(name)
            elif name not in PACKAGE_DATA:
                found.append(path)
        subdirs[:] = keep
    return found


def inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@dataclass
class Watch:
    """What a watched method may reach, and what it tried beyond that.

    A file event counts against the method when the innermost frame that is either the method's code (`home`)
    or the harness's (`harness`) is the method's: libraries the method calls act for it, libraries the harness
    calls (torch's lazy imports, its caches) act for the harness, and imports read code.  A process counts
    against it when the method's code starts it itself.
    """

    home: str
    harness: list[str]
    allowed: list[str]
    refused: list[str]  # inside `allowed`, yet not code (e.g. a store inside the package folder)
    seen: list[str] = field(default_factory=list)

    def check(self, event: str, args: tuple) -> None:
        index = PATH_EVENTS.get(event)
        if event in PROCESS_EVENTS and self.started_by_method():
            self.refuse(f"{event} {str(args[0])[:120]!r}" if args else event)
        if index is None or len(args) <= index or isinstance(args[index], int) or args[index] is None:
            return
        path = os.path.abspath(os.fsdecode(args[index]))
        metadata = os.path.basename(os.path.dirname(path)).endswith((".dist-info", ".egg-info"))  # importlib.metadata
        if (not inside(path, self.allowed) or inside(path, self.refused)) and not metadata and self.by_method():
            self.refuse(f"{event} {path}")

    def by_method(self) -> bool:
        """Whether the innermost frame that is the method's or the harness's code is the method's."""
        frame = sys._getframe(3)
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib"):
                return False
            if inside(name, [self.home]):
                return True
            if inside(name, self.harness) and name != __file__:
                return False
            frame = frame.f_back
        return False

    def started_by_method(self) -> bool:
        """Whether the code that starts a process is the method's own: a library may start helpers of its own
        (scikit-learn's process pool asks `lscpu` for the cores), the method may not."""
        frame, stdlib = sys._getframe(3), os.path.dirname(os.__file__)
        while frame is not None and (
            inside(frame.f_code.co_filename, [stdlib]) or frame.f_code.co_filename == __file__
        ):
            frame = frame.f_back
        return frame is not None and inside(frame.f_code.co_filename, [self.home])

    def refuse(self, what: str) -> None:
        self.seen.append(what)
        raise ForbiddenAccess(f"the method reached {what}: a fit reads only what its context hands it")


_current: list[Watch] = []  # the watch in force (at most one), read by the process-wide audit hook


def _hook(event: str, args: tuple) -> None:
    if _current:
        _current[0].check(event, args)


_installed: list[bool] = []


@contextlib.contextmanager
def watching(method_cls: type, allowed: list[str], refused: list[str]) -> Iterator[Watch]:
    """Watch what `method_cls`'s code reaches inside the block (the hook, once added, stays: PEP 578)."""
    if not _installed:
        sys.addaudithook(_hook)
        _installed.append(True)
    watch = Watch(home_of(method_cls), package_folders(), allowed, refused)
    _current.append(watch)
    try:
        yield watch
    finally:
        _current.remove(watch)


def home_of(cls: type) -> str:
    """Where the code of `cls`'s plugin lives: the folder of its top-level package, or for a plugin of this
    repository (its package is fairfacebench itself) the file of its own module."""
    top = cls.__module__.split(".")[0]
    path = list(getattr(sys.modules.get(top), "__path__", []) or [])
    if top == "fairfacebench" or not path:
        return inspect.getsourcefile(cls) or ""
    return path[0]


def harness_patches(method_cls: type) -> list[str]:
    """Functions of the `fairfacebench` modules (and of their classes) that code of the method's package replaced."""
    home = home_of(method_cls)
    found = []
    for name, module in list(sys.modules.items()):
        if not (name == "fairfacebench" or name.startswith("fairfacebench.")) or module is None:
            continue
        if inside(getattr(module, "__file__", None) or "", [home]):  # the method's own code
            continue
        for attr, value in list(vars(module).items()):
            for where, function in functions_of(f"{name}.{attr}", value, name):
                code = getattr(function, "__code__", None)
                if code is not None and inside(code.co_filename, [home]):
                    found.append(where)
    return sorted(found)


def functions_of(where: str, value: Any, module: str) -> list[tuple[str, Any]]:
    """A module attribute's functions: itself, or the methods of a class the module defines."""
    if inspect.isclass(value) and value.__module__ == module:
        return [(f"{where}.{k}", getattr(v, "__func__", v)) for k, v in list(vars(value).items()) if callable(v)]
    return [(where, value)] if callable(value) else []
