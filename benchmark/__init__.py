"""fairbench core (import package `fairfacebench`)."""

from fairfacebench.hookspecs import hookimpl
from fairfacebench.results import load_runs

__version__ = "0.1.0"
__all__ = ["hookimpl", "load_runs", "__version__"]
