"""Methods that game the benchmark, one per behaviour of the red-team round (the sealed runner's tests).

Each trains an honest ERM model first (so it has something to fall back on), then attacks.  An attack that finds
what it looks for leaves a mark in the run log (`ctx.log.stage("attack", found=...)`), so the tests can tell a
blocked attack from one that found nothing to exploit.
"""

import gc
import inspect
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fairfacebench import hookimpl
from fairfacebench.methods.base import LabelUse, Method
from fairfacebench.methods.common import erm_loss
from fairfacebench.training import Predictor, normalize, to_tensor


def honest(ctx, steps=None):
    model = ctx.new_classifier()
    ctx.train_classifier(model, ctx.budget.remaining if steps is None else steps, erm_loss)
    return model


def one_hot(labels, n_classes):
    return np.eye(n_classes)[np.asarray(labels)]


def fields_of(obj):
    """`obj.__dict__`, or None: on some objects any attribute access raises (a weak proxy whose referent is gone
    raises ReferenceError), and whether the process holds one depends on when the garbage collector last ran."""
    try:
        fields = getattr(obj, "__dict__", None)
    except Exception:
        return None
    return fields if isinstance(fields, dict) else None


def matching_labels(obj, images):
    """`obj.y` when `obj` holds exactly these images and a plain label array (a split of the harness)."""
    fields = fields_of(obj)
    if fields is None:
        return None
    held, labels = fields.get("images"), fields.get("y")
    if isinstance(held, np.ndarray) and isinstance(labels, np.ndarray) and held.shape == images.shape:
        if len(labels) == len(images) and np.array_equal(held, images):
            return labels
    return None


def store_roots():
    """Result stores this process can find: the harness's objects, and paths in the frames of the call stack."""
    roots = {Path(o.root) for o in gc.get_objects() if type(o).__name__ == "ResultStore"}
    for frame in inspect.stack():
        for value in frame.frame.f_locals.values():
            if isinstance(value, str) and len(value) < 4096 and os.path.isdir(value):
                roots.add(Path(value))
    return [r for r in roots if any(r.glob("*/record.json"))]


class Attack(Predictor):
    """An honest predictor whose scores an attack may replace."""

    def __init__(self, model, ctx, log):
        super().__init__(model, ctx.device)
        self.n_classes, self.log = ctx.n_classes, log

    def predict(self, images):
        found = self.attack(np.asarray(images))
        self.log.stage("attack", found=found is not None)
        return super().predict(images) if found is None else one_hot(found, self.n_classes)


class GcLabels(Method):
    name = "hostile-gc-labels"
    description = "reads test labels from the objects in its process (gc.get_objects())"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        predictor = Attack(honest(ctx), ctx, ctx.log)
        predictor.attack = lambda images: next(
            (y for y in (matching_labels(o, images) for o in gc.get_objects()) if y is not None), None
        )
        return predictor


class StackLabels(Method):
    name = "hostile-stack-labels"
    description = "reads test labels from the call stack of its own predict"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        def attack(images):
            for frame in inspect.stack():
                for value in frame.frame.f_locals.values():
                    inside = fields_of(value)
                    for obj in (value, *(inside.values() if inside is not None else ())):
                        labels = matching_labels(obj, images)
                        if labels is not None:
                            return labels
            return None

        predictor = Attack(honest(ctx), ctx, ctx.log)
        predictor.attack = attack
        return predictor


class DataRootLabels(Method):
    name = "hostile-data-root"
    description = "re-reads the dataset's label files from the data root and cache it finds in its environment"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        target = ctx.target_attribute.name
        folders = [v for k, v in os.environ.items() if k.startswith("FAIRBENCH") and os.path.isdir(v)]
        folders += [str(Path.home() / ".cache" / "fairbench"), os.getcwd()]

        def attack(images):
            for folder in folders:
                for path in Path(folder).rglob("*.npz"):
                    with np.load(path, allow_pickle=False) as stored:
                        key = f"labels/{target}"
                        if key in stored.files and stored["images"].shape == images.shape:
                            if np.array_equal(stored["images"], images):
                                return stored[key]
            return None

        predictor = Attack(honest(ctx), ctx, ctx.log)
        predictor.attack = attack
        return predictor


class StoredPredictions(Method):
    name = "hostile-stored-predictions"
    description = "reads the test labels another run stored next to its predictions"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        def attack(images):
            for root in store_roots():
                for path in root.glob("*/predictions.npz"):
                    with np.load(path, allow_pickle=False) as stored:
                        if len(stored["test_y"]) == len(images):
                            return stored["test_y"]
            return None

        predictor = Attack(honest(ctx), ctx, ctx.log)
        predictor.attack = attack
        return predictor


class OverwritesSelection(Method):
    name = "hostile-overwrites-selection"
    description = "keeps the validation scores it returned and overwrites them with NaN during the test call"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        class Overwriting(Predictor):
            returned = []

            def predict(self, images):
                for earlier in self.returned:
                    earlier[:] = np.nan
                scores = np.asarray(super().predict(images), dtype=np.float64)
                self.returned.append(scores)
                return scores

        return Overwriting(honest(ctx), ctx.device)


class TrainsInPredict(Method):
    name = "hostile-trains-in-predict"
    description = "trains on the training split inside predict, after the meter closed (plain in-place updates)"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = honest(ctx)
        images, y, device = ctx.train.images, ctx.train.y, ctx.device

        class Training(Predictor):
            def predict(self, images_to_score):
                with torch.inference_mode(False), torch.enable_grad():
                    for start in range(0, 4 * 32, 32):
                        x = normalize(to_tensor(images[start : start + 32], device))
                        loss = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(y[start : start + 32]))
                        grads = torch.autograd.grad(loss, list(model.parameters()))
                        with torch.no_grad():
                            for p, g in zip(model.parameters(), grads):
                                p.sub_(0.01 * g)
                return super().predict(images_to_score)

        return Training(model, device)


class ThreadTrains(Method):
    name = "hostile-thread-trains"
    description = "leaves a thread that keeps training after fit returned; predict waits for it"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = honest(ctx)
        images, y, device = ctx.train.images, ctx.train.y, ctx.device

        def keep_training():
            for start in range(0, 8 * 32, 32):
                x = normalize(to_tensor(images[start : start + 32], device))
                loss = torch.nn.functional.cross_entropy(model(x), torch.as_tensor(y[start : start + 32]))
                grads = torch.autograd.grad(loss, list(model.parameters()))
                with torch.no_grad():
                    for p, g in zip(model.parameters(), grads):
                        p.sub_(0.01 * g)

        thread = threading.Thread(target=keep_training, daemon=True)
        thread.start()

        class Waiting(Predictor):
            def predict(self, images_to_score):
                thread.join()
                return super().predict(images_to_score)

        return Waiting(model, device)


class SubprocessWrites(Method):
    name = "hostile-subprocess-writes"
    description = "starts a detached process that writes into the result store after its run has ended"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = honest(ctx)
        roots = [str(r) for r in store_roots()]
        ctx.log.stage("attack", found=bool(roots))
        late = f"[pathlib.Path(r, 'INTRUDER').write_text('late') for r in {roots!r}]"
        code = f"import time, pathlib; time.sleep(3); {late}"
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        return Predictor(model, ctx.device)


def the_meter(ctx):
    """The harness's meter behind the fit context (out of a method's official reach)."""
    return next(o for o in gc.get_objects() if type(o).__name__ == "BudgetMeter" and o is ctx._meter)


class ResetsMeter(Method):
    name = "hostile-resets-meter"
    description = "trains its budget, resets its meter to zero and trains the budget again"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        model = honest(ctx)
        meter = the_meter(ctx)
        meter.steps, meter.per_stage = 0, {}
        ctx.train_classifier(model, ctx.budget.remaining, erm_loss, stage="again")
        return Predictor(model, ctx.device)


class SwitchesOffMeter(Method):
    name = "hostile-switches-off-meter"
    description = "lifts its meter's limits and closes it, then trains twice its budget"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        meter = the_meter(ctx)
        steps = meter.budget.steps
        meter.budget = replace(meter.budget, steps=10**6)
        meter.forward_limit = None
        model = honest(ctx, steps)
        meter.closed = True
        ctx.train_classifier(model, steps, erm_loss, stage="again")
        return Predictor(model, ctx.device)


class VandalisesStore(Method):
    name = "hostile-vandalises-store"
    description = "deletes other runs' folders, edits a finished record and forges its own ok record, then exits"
    labels = LabelUse(target="train")

    def fit(self, ctx):
        roots = store_roots()
        ctx.log.stage("attack", found=bool(roots))
        for root in roots:
            records = sorted(root.glob("*/record.json"))
            kept, others = records[0], records[1:]
            for path in others:
                shutil.rmtree(path.parent)
            record = json.loads(kept.read_text())
            record["metrics"]["test"]["acc"] = 1.0
            kept.write_text(json.dumps(record))
            run_id = next((f.frame.f_locals["spec"].run_id for f in inspect.stack() if "spec" in f.frame.f_locals), "")
            if run_id:
                (root / run_id).mkdir(exist_ok=True)
                (root / run_id / "record.json").write_text(json.dumps({**record, "run_id": run_id}))
            os._exit(0)
        return Predictor(honest(ctx), ctx.device)


@hookimpl
def fairfacebench_methods():
    return [
        GcLabels,
        StackLabels,
        DataRootLabels,
        StoredPredictions,
        OverwritesSelection,
        TrainsInPredict,
        ThreadTrains,
        SubprocessWrites,
        ResetsMeter,
        SwitchesOffMeter,
        VandalisesStore,
    ]
