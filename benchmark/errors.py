"""Errors shared across the package: each names what was wrong and what to do."""

from __future__ import annotations


class UnknownName(KeyError):
    """A name (method, dataset, task, budget, backbone, selection rule) that nothing installed provides.

    A KeyError, so lookups behave like a mapping's; its message prints as written, without KeyError's quotes.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(ValueError):
    """A config file or flag has an unknown key or a value of the wrong type or range."""


class DataError(ValueError):
    """Bad input data: the message names the file, row and value and what to do."""


class PluginError(RuntimeError):
    """A plugin could not be loaded or clashes with another one."""


class VLMUnavailable(RuntimeError):
    """A VLM was required but none could be loaded; the message says what to pass."""


class WeightsError(RuntimeError):
    """Pretrained weights were asked for but none could be found."""


# What the user passed (a flag, a config, a data folder, a plugin) was wrong: a one-line message, never a traceback.
USER_ERRORS = (ConfigError, DataError, PluginError, UnknownName, VLMUnavailable, WeightsError)
