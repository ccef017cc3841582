"""fairbench core (import package `fairfacebench`).

`load_runs` is loaded on first use, so importing a plugin (`fairfacebench.methods.erm`) loads only what it uses.
"""

from typing import Any

from fairfacebench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "load_runs", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "load_runs":
        from fairfacebench.results import load_runs

        return load_runs
    raise AttributeError(f"module 'fairfacebench' has no attribute {name!r}")
