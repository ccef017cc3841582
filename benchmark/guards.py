"""Compute a method spends outside the meter, caught while it fits: optimizer steps and unmetered image forwards.

Inside `watch(meter)`, two process-wide torch hooks look at every optimizer
step and every convolution.  The guard counts every optimizer step itself, in
state no method can reach through the fit context: more steps than the meter
charged (`FitContext.optimize`, plus `inner_step`s) is a violation, whatever a
method did to the meter.  A convolution over images outside a metered network
(the context's backbones and VLM) is one too.  The runner fails such a run; the
conformance kit reports it.  Networks on images are recognised by their
convolutions (CNNs, and the patch embedding of vision transformers).
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from fairfacebench.budget import BudgetMeter


class UnmeteredCompute(RuntimeError):
    """A method trained or embedded images outside the meter (its own optimizer, its own network)."""


class PredictorChanged(RuntimeError):
    """A predictor's tensors or arrays changed while it predicted: it trained or adapted on the images it scored."""


@dataclass
class Violations:
    """Unmetered compute seen while a method fitted."""

    optimizer_steps: int = 0  # steps the meter did not charge
    unmetered_forwards: dict[str, int] = field(default_factory=dict)  # module class -> images

    def __bool__(self) -> bool:
        return bool(self.optimizer_steps or self.unmetered_forwards)

    def describe(self) -> str:
        parts = []
        if self.optimizer_steps:
            parts.append(f"{self.optimizer_steps} optimizer step(s) the meter did not charge (outside ctx.optimize)")
        if self.unmetered_forwards:
            seen = ", ".join(f"{n} images through a {name}" for name, n in sorted(self.unmetered_forwards.items()))
            parts.append(f"unmetered forwards ({seen}) outside the networks of ctx.new_classifier and ctx.vlm")
        return "; ".join(parts) + ": train and embed only through the fit context, so the budget counts it"


def state_digest(obj: Any, limit: int = 100_000) -> dict[str, str]:
    """A digest of every tensor and array reachable from `obj` (a predictor), by attribute path.

    Compared before and after prediction: a predictor whose parameters, buffers (batch-norm statistics) or
    arrays changed while it predicted has trained on the images it was asked to score.
    """
    digests: dict[str, str] = {}
    seen: set[int] = set()
    queue: list[tuple[Any, str]] = [(obj, "predictor")]
    while queue and len(seen) < limit:
        item, path = queue.pop()
        if id(item) in seen or isinstance(item, (str, bytes, int, float, bool, type, type(None), torch.device)):
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            flat = item.detach().cpu().contiguous().reshape(-1)
            digests[path] = hashlib.blake2b(flat.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()
        elif isinstance(item, np.ndarray):
            digests[path] = hashlib.blake2b(np.ascontiguousarray(item).tobytes(), digest_size=16).hexdigest()
        elif isinstance(item, nn.Module):
            queue += [(t, f"{path}.{k}") for k, t in item.state_dict(keep_vars=True).items()]
            queue += [(v, f"{path}.{k}") for k, v in vars(item).items() if not k.startswith("_")]
        elif isinstance(item, dict):
            queue += [(v, f"{path}[{k!r}]") for k, v in item.items()]
        elif isinstance(item, (list, tuple)):
            queue += [(v, f"{path}[{i}]") for i, v in enumerate(item)]
        else:
            queue += [(v, f"{path}.{k}") for k, v in (getattr(item, "__dict__", None) or {}).items()]
    return digests


def changed_state(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Paths of tensors and arrays whose contents differ between two `state_digest`s (new ones are not counted)."""
    return sorted(path for path, digest in before.items() if path in after and after[path] != digest)


@contextlib.contextmanager
def watch(meter: BudgetMeter) -> Iterator[Violations]:
    """Record optimizer steps and image forwards the meter does not see, while the block runs."""
    found = Violations()
    taken = [0]  # every optimizer step while the block runs, counted here only
    charged_before = meter.steps + meter.inner_steps  # a meter reopened for prediction has charged steps already

    def on_step(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        if not meter.closed:
            taken[0] += 1

    def on_forward(module: nn.Module, args: tuple) -> None:
        if meter.closed or meter.inside_metered or not isinstance(module, nn.Conv2d) or not args:
            return
        x = args[0]
        if isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 3:  # a network's first layer: images in
            name = type(module).__name__
            found.unmetered_forwards[name] = found.unmetered_forwards.get(name, 0) + len(x)

    step_hook = register_optimizer_step_pre_hook(on_step)
    forward_hook = nn.modules.module.register_module_forward_pre_hook(on_forward)
    try:
        yield found
    finally:
        step_hook.remove()
        forward_hook.remove()
        found.optimizer_steps = max(0, taken[0] - (meter.steps + meter.inner_steps - charged_before))
