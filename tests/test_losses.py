"""Contrastive losses: hand-computed values on four 2-d unit vectors, and that they train."""

import math

import pytest
import torch

from fairfacebench.methods.losses import fair_supcon_loss, nt_xent_loss, supcon_loss

# Four unit vectors with round dot products:
# u0·u1 = .6, u0·u2 = 0, u0·u3 = -.8, u1·u2 = .8, u1·u3 = 0, u2·u3 = .6
U = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.8, 0.6]], dtype=torch.float64)
# The same directions at other lengths: every loss must normalise inside.
U_SCALED = U * torch.tensor([[2.0], [3.0], [0.5], [4.0]], dtype=torch.float64)


def test_supcon_matches_hand_computed_l_out():
    # τ = .5 so logits are 2·dots; labels [0,0,0,1]: anchors 0,1,2 have two positives, anchor 3 none (left out).
    d0 = math.exp(1.2) + math.exp(0.0) + math.exp(-1.6)  # anchor 0 against u1, u2, u3
    d1 = math.exp(1.2) + math.exp(1.6) + math.exp(0.0)  # anchor 1 against u0, u2, u3
    d2 = math.exp(0.0) + math.exp(1.6) + math.exp(1.2)  # anchor 2 against u0, u1, u3
    term0 = -0.5 * ((1.2 - math.log(d0)) + (0.0 - math.log(d0)))
    term1 = -0.5 * ((1.2 - math.log(d1)) + (1.6 - math.log(d1)))
    term2 = -0.5 * ((0.0 - math.log(d2)) + (1.6 - math.log(d2)))
    expected = (0.5 / 0.25) * (term0 + term1 + term2) / 3
    got = supcon_loss(U_SCALED, torch.tensor([0, 0, 0, 1]), temperature=0.5, base_temperature=0.25)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    # The "sum inside the log" variant would give a different number on this example.
    l_in = (
        -(
            math.log((math.exp(1.2) + math.exp(0.0)) / 2 / d0)
            + math.log((math.exp(1.2) + math.exp(1.6)) / 2 / d1)
            + math.log((math.exp(0.0) + math.exp(1.6)) / 2 / d2)
        )
        / 3
        * 2
    )
    assert abs(got.item() - l_in) > 1e-3


def _nt_xent_by_hand():
    # views [u0, u1 | u2, u3], partners 0<->2 and 1<->3, τ = .5
    l02 = -(0.0 - math.log(math.exp(1.2) + math.exp(0.0) + math.exp(-1.6)))
    l13 = -(0.0 - math.log(math.exp(1.2) + math.exp(1.6) + math.exp(0.0)))
    l20 = -(0.0 - math.log(math.exp(0.0) + math.exp(1.6) + math.exp(1.2)))
    l31 = -(0.0 - math.log(math.exp(-1.6) + math.exp(0.0) + math.exp(1.2)))
    return (l02 + l13 + l20 + l31) / 4


def test_nt_xent_matches_hand_computed():
    got = nt_xent_loss(U_SCALED[:2], U_SCALED[2:], temperature=0.5)
    assert got.item() == pytest.approx(_nt_xent_by_hand(), rel=1e-12)


def test_supcon_without_labels_is_simclr():
    views = torch.stack([U_SCALED[:2], U_SCALED[2:]], dim=1)  # image 0 = (u0, u2), image 1 = (u1, u3)
    got = supcon_loss(views, temperature=0.5, base_temperature=0.5)
    assert got.item() == pytest.approx(_nt_xent_by_hand(), rel=1e-12)
    z1, z2 = torch.randn(2, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert supcon_loss(torch.stack([z1, z2], 1), None, 0.3, 0.3).item() == pytest.approx(
        nt_xent_loss(z1, z2, 0.3).item(), rel=1e-12
    )


def test_supcon_views_equal_flattened_samples_with_repeated_labels():
    g = torch.Generator().manual_seed(1)
    views = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1])
    flat = torch.cat(torch.unbind(views, dim=1))
    assert supcon_loss(views, labels).item() == pytest.approx(supcon_loss(flat, labels.repeat(3)).item(), rel=1e-12)


def test_supcon_needs_views_or_labels():
    with pytest.raises(ValueError, match="views"):
        supcon_loss(torch.randn(4, 3))


def test_fair_supcon_matches_hand_computed():
    # targets [0,0,1,1], sensitive [0,1,1,0]; τ = .5 (logits 2·dots), τ_base = .25.
    # Each anchor: one positive, one negative with a different target and the same sensitive attribute.
    term0 = -(1.2 - (-1.6))  # anchor 0: positive u1 (1.2), fair negative u3 (-1.6)
    term1 = -(1.2 - 1.6)  # anchor 1: positive u0 (1.2), fair negative u2 (1.6)
    term2 = -(1.2 - 1.6)  # anchor 2: positive u3 (1.2), fair negative u1 (1.6)
    term3 = -(1.2 - (-1.6))  # anchor 3: positive u2 (1.2), fair negative u0 (-1.6)
    expected = 2.0 * (term0 + term1 + term2 + term3) / 4
    got = fair_supcon_loss(U_SCALED, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 0]), 0.5, 0.25)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_fair_supcon_group_norm_matches_official_formula():
    # targets [0,0,0,1], sensitive [0,0,1,0], τ = τ_base = .5, M = 4 samples -> factor M/8 = .5.
    # anchor 0: P = {1, 2}, same-group positives c = 1, fair negative u3: log-denominator -1.6
    term0 = -0.5 * ((1.2 + 1.6) + (0.0 + 1.6)) / (1 * 2)
    # anchor 1: P = {0, 2}, c = 1, fair negative u3: log-denominator 0
    term1 = -0.5 * ((1.2 - 0.0) + (1.6 - 0.0)) / (1 * 2)
    # anchor 2 has c = 0 and anchor 3 no positive: both left out
    got = fair_supcon_loss(U_SCALED, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 0]), 0.5, 0.5, group_norm=True)
    assert got.item() == pytest.approx((term0 + term1) / 2, rel=1e-12)
    plain = fair_supcon_loss(U_SCALED, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 0]), 0.5, 0.5)
    # anchors 0 and 1 only (anchor 2 has no same-sensitive negative)
    assert plain.item() == pytest.approx((-(2.8 + 1.6) / 2 - (1.2 + 1.6) / 2) / 2, rel=1e-12)


def test_fair_supcon_ignores_negatives_from_other_sensitive_groups():
    # Sample 4 has a unique target and a unique sensitive group: it is nobody's positive and, for FSCL,
    # in nobody's denominator, so moving it must not change the loss; SupCon sees it as a negative.
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(5, 2, 3, generator=g, dtype=torch.float64)
    targets = torch.tensor([0, 0, 1, 1, 2])
    sensitive = torch.tensor([0, 1, 0, 1, 2])
    moved = feats.clone()
    moved[4] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert fair_supcon_loss(moved, targets, sensitive).item() == pytest.approx(
        fair_supcon_loss(feats, targets, sensitive).item(), rel=1e-12
    )
    assert abs(supcon_loss(moved, targets).item() - supcon_loss(feats, targets).item()) > 1e-6


def test_fair_supcon_cross_group_positives_drop_same_group_pairs():
    # targets [0,0,0,1], sensitive [0,0,1,0]: cross-group positives of anchor 0 are {2} only.
    got = fair_supcon_loss(
        U_SCALED, torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 1, 0]), 0.5, 0.5, cross_group_positives=True
    )
    term0 = -(0.0 + 1.6)  # anchor 0: positive u2 (0), fair negative u3 (-1.6)
    term1 = -(1.6 - 0.0)  # anchor 1: positive u2 (1.6), fair negative u3 (0)
    # anchor 2 (group 1): cross-group positives {0, 1} but no same-group negative -> left out
    assert got.item() == pytest.approx((term0 + term1) / 2, rel=1e-12)
    with pytest.raises(ValueError, match="group_norm"):
        fair_supcon_loss(
            U_SCALED,
            torch.tensor([0, 0, 0, 1]),
            torch.tensor([0, 0, 1, 0]),
            cross_group_positives=True,
            group_norm=True,
        )


def _train(loss_fn, param, steps=25, lr=0.05):
    """Plain gradient descent on one learnable tensor; returns the loss at every step."""
    losses = []
    for _ in range(steps):
        param.grad = None
        loss = loss_fn()
        loss.backward()
        assert torch.isfinite(param.grad).all()
        with torch.no_grad():
            param -= lr * param.grad
        losses.append(loss.item())
    return losses


def _toy(seed, n=12, views=2, dim=6):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, views, dim, generator=g, requires_grad=True)
    targets = torch.arange(n) % 2
    sensitive = (torch.arange(n) // 2) % 2
    return feats, targets, sensitive


@pytest.mark.parametrize("name", ["supcon", "simclr_supcon", "nt_xent", "fair_supcon", "fair_supcon_plus"])
def test_losses_decrease_under_sgd(name):
    feats, targets, sensitive = _toy(3)
    fns = {
        "supcon": lambda: supcon_loss(feats, targets),
        "simclr_supcon": lambda: supcon_loss(feats),
        "nt_xent": lambda: nt_xent_loss(feats[:, 0], feats[:, 1]),
        "fair_supcon": lambda: fair_supcon_loss(feats, targets, sensitive),
        "fair_supcon_plus": lambda: fair_supcon_loss(feats, targets, sensitive, group_norm=True),
    }
    losses = _train(fns[name], feats)
    assert losses[-1] < losses[0] - 0.1
