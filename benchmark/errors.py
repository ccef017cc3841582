"""Errors shared across the package."""
from __future__ import annotations


class UnknownName(KeyError):
    """A name (method, dataset, task, budget, backbone, selection rule) that nothing installed provides.

    A KeyError, so lookups behave like a mapping's; its message prints as written, without KeyError's quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
