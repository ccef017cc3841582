"""Every extension point of fairbench, on one screen.

A plugin is any module or object with functions named like the specs below,
decorated with ``@fairfacebench.hookimpl``, and advertised under the
``fairfacebench`` entry-point group.  The built-in datasets and methods
register exactly this way (see pyproject.toml).  Each hook returns plain
data: a list of plugin objects; the harness concatenates the lists.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("fairfacebench")
hookimpl = pluggy.HookimplMarker("fairfacebench")


@hookspec
def fairfacebench_datasets():
    """Return a list of dataset plugins (subclasses of DatasetPlugin, instantiated)."""


@hookspec
def fairfacebench_methods():
    """Return a list of method classes (subclasses of Method)."""


@hookspec
def fairfacebench_pools():
    """Return a list of unlabeled-pool plugins (folders of images, label-stripped datasets)."""


@hookspec
def fairfacebench_encoders():
    """Return a list of vision-language encoder plugins (open_clip tags, embedded mini-CLIPs)."""


@hookspec
def fairfacebench_selection_rules():
    """Return a list of model-selection rules (name, description, function of validation metrics)."""
