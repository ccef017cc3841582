"""fairbench core (import package `fairfacebench`)."""

from fairfacebench.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
