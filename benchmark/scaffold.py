"""`fairbench new-method NAME`: scaffold an installable method plugin package.

The package registers its method under the `fairfacebench` entry-point
group, exactly like the built-ins, ships a working minimal method (ERM with
one hyperparameter) as the contract filled in, and a test that runs the
conformance kit on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from fairfacebench.plugins import registry

NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")

PYPROJECT = Template("""\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A fairbench method plugin: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["fairfacebench"]

[project.optional-dependencies]
test = ["pytest>=7"]

# fairbench discovers plugins through this entry-point group, the same one its built-in methods use.
[project.entry-points.fairfacebench]
$name = "$module"

[tool.setuptools.packages.find]
where = ["src"]
""")

METHOD = Template('''\
"""$name: a fairbench method plugin.

Replace the body of `fit` with your algorithm; keep the shape.  The fit
context `ctx` is the only door to the data: ctx.train / ctx.val (images,
.y target labels, .a sensitive groups), ctx.test_images (no labels),
ctx.pool / ctx.vlm when declared, ctx.new_classifier(), the metered loops
ctx.train_classifier / ctx.optimize, the shared parts in
fairfacebench.methods.common, and seeded ctx.generator / ctx.rng.
Declare every label you read in `labels` (or `label_use`): the leaderboard
shows it and the conformance kit checks it.
"""
from __future__ import annotations

from fairfacebench import hookimpl
from fairfacebench.methods.base import Hparam, LabelUse, Method, choice
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import Predictor


class $cls(Method):
    name = "$name"
    description = "Cross-entropy fine-tuning on the target labels (scaffold: replace with your method)"
    citation = "Your Name et al., Title, Venue Year"
    labels = LabelUse(target="train")  # add sensitive="train" if fit reads ctx.train.a
    needs_vlm = False  # True if fit reads ctx.vlm (a vision-language encoder)
    needs_pool = False  # True if fit reads ctx.pool (unlabeled images)
    # Part of every run id: bump it whenever a change alters results (fit, the loss, a default, the space), so
    # `fairbench run` computes afresh instead of reusing runs of the old code (README: "Changing your method").
    version = 1
    # Defaults are trial 0; the samplers draw the other trials.  lr and weight_decay come with Method.
    space = {
        "freeze_backbone": Hparam(False, choice([False, True]), "train only the linear head on frozen features"),
    }

    def fit(self, ctx):
        model = ctx.new_classifier()
        if ctx.hparams["freeze_backbone"]:
            for p in model.backbone.parameters():
                p.requires_grad_(False)
        # Every optimizer step is charged to the shared budget (ctx.budget counts it); spend what remains, never more.
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss)
        return Predictor(model, ctx.device)


@hookimpl
def fairfacebench_methods():
    return [$cls]
''')

TEST = Template('''\
"""The fairbench conformance kit: budget, test-label isolation, determinism, predictions, declared requirements."""
from fairfacebench.testing import check_method

from $module import $cls


def test_${module}_conforms():
    # check_method($cls, hparams={...}) checks another configuration, e.g. one your label_use depends on
    report = check_method($cls)
    assert not report.failures, str(report)
''')

README = Template("""\
# $dist

A fairbench method plugin providing the method `$name`.

## Install and run

```bash
pip install -e .                 # registers `$name` under the fairfacebench entry-point group
fairbench list methods           # $name is listed with its description and labels used
fairbench run --methods $name,erm --datasets synthfaces --budget smoke
```

## Test

```bash
pip install -e '.[test]'
pytest                           # runs fairfacebench.testing.check_method on $cls
```

The conformance kit trains the method on a tiny synthfaces task under the
smoke budget and checks that it stays inside its budget, never reads test
labels, is deterministic under a fixed seed, returns probabilities of shape
(N, n_classes), and reads only the labels, pool and VLM it declares.

## Changing your method

Every run id includes the method's `version`. When you change what `fit`
computes (the loss, a default, the search space), bump `version` in
`src/$module/__init__.py`: `fairbench run` then computes the runs afresh
instead of reusing those of the old code, and the leaderboard tables only the
newest version. Each run record also stores a fingerprint of your package's
code; when it differs from the installed code, `fairbench run` and
`--dry-run` name those runs and `--rerun-changed` recomputes them.

## Where things go

- `src/$module/__init__.py`: the method (metadata, hyperparameter space, `fit`).
- `tests/test_conformance.py`: the conformance test; add unit tests of your loss next to it.
""")


def names(name: str) -> dict[str, str]:
    """The method name and what is derived from it: distribution, module and class names."""
    if not NAME.match(name):
        raise ValueError(
            f"method name '{name}' is not valid: use lowercase letters, digits and single hyphens, e.g. 'my-method'"
        )
    module = "fairbench_" + name.replace("-", "_")
    return {
        "name": name,
        "dist": f"fairbench-{name}",
        "module": module,
        "cls": "".join(p.title() for p in name.split("-")),
    }


def new_method(name: str, parent: Path | str = ".") -> Path:
    """Write the plugin package `fairbench-NAME` under `parent` and return its folder."""
    values = names(name)
    if name in registry().methods:
        raise ValueError(
            f"a method named '{name}' is already installed (from {registry().sources[f'method:{name}']}); "
            "pick another name"
        )
    root = Path(parent) / values["dist"]
    if root.exists():
        raise FileExistsError(f"{root} already exists; remove it or pass --out to scaffold elsewhere")
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{values['module']}/__init__.py": METHOD,
        "tests/test_conformance.py": TEST,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))
    return root
