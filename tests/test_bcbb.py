"""BC+BB (Hong & Yang, NeurIPS 2021): the bias-contrastive loss, the bias-balanced shift and the contrastive
sampler's weights by hand, and the method's budget on synthfaces.  Conformance: tests/test_conformance.py."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from fairfacebench.budget import Budget, BudgetMeter
from fairfacebench.context import FitContext, FitSettings
from fairfacebench.data import make_task_data
from fairfacebench.methods.bcbb import BCBB, bias_balanced_logits, bias_prior, contrastive_weights
from fairfacebench.methods.losses import bias_contrastive_loss, supcon_loss
from fairfacebench.plugins import registry
from fairfacebench.testing import SMALL_SYNTHFACES

# Four unit vectors with round dot products (as in test_losses.py):
# u0·u1 = .6, u0·u2 = 0, u0·u3 = -.8, u1·u2 = .8, u1·u3 = 0, u2·u3 = .6
U = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]], dtype=torch.float64)
U_SCALED = U * torch.tensor([[2.0], [3.0], [0.5], [4.0]], dtype=torch.float64)


def test_bias_contrastive_loss_by_hand():
    # τ = .5, so logits are 2·dots.  targets [0,0,0,1], biases [0,1,0,0]:
    #   anchor 0 (y0,b0): P = {1}; sample 2 shares its target *and* bias, so it is no positive
    #   anchor 1 (y0,b1): P = {0, 2}
    #   anchor 2 (y0,b0): P = {1}
    #   anchor 3 (y1,b0): P = {} -> contributes 0 but counts in the mean over all 4 anchors
    # Denominators run over every other sample:
    #   d0 = e^1.2 + e^0 + e^-1.6 = 4.52201,  d1 = d2 = e^1.2 + e^1.6 + e^0 = 9.27315
    #   l0 = -(1.2 - ln d0) = 0.30896
    #   l1 = -((1.2 - ln d1) + (1.6 - ln d1)) / 2 = 0.82712
    #   l2 = -(1.6 - ln d2) = 0.62712
    #   L = (l0 + l1 + l2 + 0) / 4 = 0.44080
    d0 = math.exp(1.2) + 1.0 + math.exp(-1.6)
    d1 = math.exp(1.2) + math.exp(1.6) + 1.0
    expected = (-(1.2 - math.log(d0)) - ((1.2 - math.log(d1)) + (1.6 - math.log(d1))) / 2 - (1.6 - math.log(d1))) / 4
    assert expected == pytest.approx(0.44080, abs=1e-5)
    got = bias_contrastive_loss(U_SCALED, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 1, 0, 0]), temperature=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # SupCon on the same batch pulls sample 2 to anchor 0 (same target): a different number.
    assert abs(supcon_loss(U_SCALED, torch.tensor([0, 0, 0, 1]), 0.5, 0.5).item() - got.item()) > 1e-3


def test_bias_contrastive_views_of_one_image_are_not_positives():
    # Two images of one target and different biases, two views each: each view's positives are the other
    # image's two views, never its own other view (same bias).
    g = torch.Generator().manual_seed(0)
    views = torch.randn(2, 2, 5, generator=g, dtype=torch.float64)
    flat = torch.cat(torch.unbind(views, dim=1))  # view-major: image 0, image 1, image 0, image 1
    y, b = torch.tensor([0, 0]), torch.tensor([0, 1])
    assert bias_contrastive_loss(views, y, b).item() == pytest.approx(
        bias_contrastive_loss(flat, y.repeat(2), b.repeat(2)).item(), rel=1e-12
    )
    # one bias only: no anchor has a positive, the loss is 0 and still backpropagates
    feats = views.clone().requires_grad_(True)
    loss = bias_contrastive_loss(feats, y, torch.tensor([1, 1]))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(feats.grad, torch.zeros_like(feats))
    with pytest.raises(ValueError, match="bias has 6 entries but features hold 4"):
        bias_contrastive_loss(views, y, torch.tensor([0, 1, 1]))


def test_bias_contrastive_loss_decreases_under_sgd():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(12, 2, 6, generator=g, requires_grad=True)
    targets, biases = torch.arange(12) % 2, (torch.arange(12) // 2) % 2
    losses = []
    for _ in range(25):
        feats.grad = None
        loss = bias_contrastive_loss(feats, targets, biases, temperature=0.1)
        loss.backward()
        with torch.no_grad():
            feats -= 0.05 * feats.grad
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_bias_prior_and_bias_balanced_logits_by_hand():
    # group 0 holds targets [0,0,0,1] -> p(y|0) = [.75, .25]; group 1 holds [1,0] -> p(y|1) = [.5, .5];
    # group 2 is absent -> uniform row.
    y, b = np.array([0, 0, 0, 1, 1, 0]), np.array([0, 0, 0, 0, 1, 1])
    prior = bias_prior(y, b, n_classes=2, n_groups=3)
    np.testing.assert_allclose(prior, [[0.75, 0.25], [0.5, 0.5], [0.5, 0.5]])
    # Sample 0 of group 0 with logits [0, 0]: shifted to [ln .75, ln .25] = [-0.28768, -1.38629], whose softmax is
    # the prior itself, so CE for target 1 is -ln .25 = 1.38629.
    # Sample 1 of group 1 with logits [1, -1]: shifted by ln .5 in both classes = [0.30685, -1.69315], the same
    # softmax as [1, -1], so CE for target 0 is ln(1 + e^-2) = 0.12693.
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    shifted = bias_balanced_logits(logits, torch.tensor([0, 1]), torch.as_tensor(prior))
    np.testing.assert_allclose(shifted.numpy(), [[-0.28768, -1.38629], [0.30685, -1.69315]], atol=1e-5)
    ce = torch.nn.functional.cross_entropy(shifted, torch.tensor([1, 0]), reduction="none")
    np.testing.assert_allclose(ce.numpy(), [math.log(4), math.log(1 + math.exp(-2))], rtol=1e-6)
    # a cell absent from training: the floor keeps the shift finite (ln 1e-9 = -20.72)
    empty = bias_balanced_logits(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([[1.0, 0.0]]))
    assert torch.isfinite(empty).all() and empty[0, 1].item() == pytest.approx(math.log(1e-9), rel=1e-6)


def test_contrastive_weights_by_hand():
    # class 0: groups 0,0,0,1 -> 1/p(b|y) = 4/3 for group 0, 4 for group 1; class 1: groups 1,0 -> 2 and 2.
    # Each (class, group) cell then weighs n(class) in all: 4 and 4 within class 0, 2 and 2 within class 1.
    y, b = np.array([0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 1, 1, 0])
    np.testing.assert_allclose(contrastive_weights(y, b, ratio=10), [4 / 3, 4 / 3, 4 / 3, 4, 2, 2])
    # ratio 2 clips at 2 x the smallest weight (8/3): the rare cell's 4 becomes 8/3
    np.testing.assert_allclose(contrastive_weights(y, b, ratio=2), [4 / 3, 4 / 3, 4 / 3, 8 / 3, 2, 2])


@pytest.fixture(scope="module")
def synth_data():
    ds = registry().dataset("synthfaces")
    loaded = ds.load(None, 32, Path(os.environ["FAIRBENCH_CACHE"]), **SMALL_SYNTHFACES)
    return make_task_data(loaded, ds.task("smiling/skin_tone"))


def test_bcbb_spends_two_forward_samples_per_step_image_and_logs_its_prior(synth_data):
    budget = Budget("tiny", steps=4, batch_size=16)
    ctx = FitContext(synth_data, FitSettings(BCBB.default_hparams(), 0, budget), BudgetMeter(budget))
    predictor = BCBB().fit(ctx)
    assert predictor.predict(synth_data.val.images[:3]).shape == (3, 2)
    # each step: 16 images for the bias-balanced CE + 2 views of 8 images for the bias-contrastive loss
    assert ctx.budget.steps_per_stage == {"train": 4}
    assert ctx._meter.forward_per_stage["train"] == {"backbone": 4 * (16 + 2 * 8)}
    prior = bias_prior(synth_data.train.y, synth_data.train.a, 2, synth_data.n_groups)
    np.testing.assert_allclose(ctx.log.stages["bias-prior"]["p_y_given_group"], prior.round(4), atol=1e-6)
    assert ctx._touched == {"train.target", "train.sensitive"}
    bb, bc = ctx.log.stages["losses"]["bb_first_last"], ctx.log.stages["losses"]["bc_first_last"]
    assert all(np.isfinite(bb + bc)) and bc[0] > 0


def test_bcbb_step_loss_is_the_bias_balanced_ce_plus_lambda_times_the_bias_contrastive_loss(synth_data, monkeypatch):
    """One step's loss on a fixed batch against the paper's L = L_BB + λ·L_BC computed here: the cross-entropy of
    the logits shifted by log p(y | b) (written out with log-softmax), plus λ times the bias-contrastive loss (its
    value hand-checked above) of the backbone features of the two views of the contrastive images."""
    import torch.nn.functional as F

    import fairfacebench.methods.bcbb as bcbb

    hp = {**BCBB.default_hparams(), "contrastive_weight": 3.0, "temperature": 0.5}
    budget = Budget("tiny", steps=1, batch_size=8)
    ctx = FitContext(synth_data, FitSettings(hp, 0, budget), BudgetMeter(budget))
    pairs = np.array([0, 1, 2, 3])
    monkeypatch.setattr(bcbb, "BatchSampler", lambda *args, **kwargs: iter([pairs]))  # the contrastive images
    seen = {}

    def recorded_views(*args, **kwargs):
        seen["views"] = views_of(*args, **kwargs)
        return seen["views"]

    views_of = bcbb.views
    monkeypatch.setattr(bcbb, "views", recorded_views)

    def one_step(model, steps, loss_fn, **kwargs):
        model.eval()  # no dropout: the loss and the hand computation see the same network
        seen["batch"] = ctx.batch(np.arange(8), ctx.generator("test"), ctx.rng("test"), mix=False)
        seen["model"], seen["loss"] = model, loss_fn(model, seen["batch"])
        return [float(seen["loss"].detach())]

    monkeypatch.setattr(ctx, "train_classifier", one_step)
    BCBB().fit(ctx)
    model, batch = seen["model"], seen["batch"]
    with torch.no_grad():
        prior = torch.as_tensor(bias_prior(synth_data.train.y, synth_data.train.a, 2, synth_data.n_groups))
        shifted = model(batch.x).double() + torch.log(prior[batch.a] + 1e-9)
        bb = -F.log_softmax(shifted, dim=1)[torch.arange(8), batch.y].mean()
        z = model.features(torch.stack(seen["views"], dim=1).flatten(0, 1)).view(4, 2, -1)
        y, a = torch.as_tensor(synth_data.train.y[pairs]), torch.as_tensor(synth_data.train.a[pairs])
        bc = bias_contrastive_loss(z, y, a, temperature=0.5)
    assert bc.item() > 0.01  # λ is visible in the sum
    assert seen["loss"].item() == pytest.approx(bb.item() + 3.0 * bc.item(), rel=1e-5)
    assert seen["loss"].item() != pytest.approx(bb.item() + bc.item(), rel=1e-5)
