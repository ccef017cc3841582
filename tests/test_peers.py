"""The real-data board's protocol and peers: the controlled-bias split, undersampling, domain-independent heads,
gradient reversal and equalized-odds post-processing, each checked by hand."""

import numpy as np
import pytest
import torch

from fairfacebench.datasets.utkface import controlled_bias_split
from fairfacebench.methods.adversarial import ramp, reverse_gradient
from fairfacebench.methods.domain_independent import own_group_loss, summed_over_groups
from fairfacebench.methods.threshold_optimizer import fit_thresholds
from fairfacebench.methods.undersample import UndersampledEpochs


def population(n_per_cell: dict[tuple[int, int], int]) -> tuple[np.ndarray, np.ndarray]:
    """Rows with (y, a) cell sizes given, in a fixed shuffled order."""
    y = np.concatenate([np.full(n, c[0]) for c, n in n_per_cell.items()])
    a = np.concatenate([np.full(n, c[1]) for c, n in n_per_cell.items()])
    order = np.random.default_rng(7).permutation(len(y))
    return y[order], a[order]


@pytest.mark.parametrize("rho", [0.9, 0.99, 0.5])
def test_controlled_bias_split_follows_rho_exactly_and_leaves_val_and_test_unskewed(rho):
    y, a = population({(0, 0): 3000, (1, 0): 2500, (0, 1): 2800, (1, 1): 3100})
    codes = controlled_bias_split(y, a, rho, seed=3)
    n = len(y)
    assert (codes >= 0).sum() == n - (codes == -1).sum() and ((codes == 1) | (codes == 2)).sum() == n - int(0.8 * n)
    assert abs((codes == 1).sum() - (codes == 2).sum()) <= 1
    train = codes == 0
    for group, majority in ((0, 0), (1, 1)):
        major = (train & (a == group) & (y == majority)).sum()
        minor = (train & (a == group) & (y != majority)).sum()
        assert minor == round((1 - rho) * major)  # all of the majority, (1 - rho) x that of the minority
        dropped = ((codes == -1) & (a == group) & (y == majority)).sum()
        assert dropped == 0
    for split in (1, 2):  # an unskewed random fifth: cell shares as in the population
        rows = codes == split
        for cell in ((0, 0), (1, 0), (0, 1), (1, 1)):
            share = (y == cell[0]) & (a == cell[1])
            assert abs(share[rows].mean() - share.mean()) < 0.03
    np.testing.assert_array_equal(codes, controlled_bias_split(y, a, rho, seed=3))  # the seed fixes it
    with pytest.raises(ValueError, match="'rho' must be in"):
        controlled_bias_split(y, a, 1.5, 0)


def test_undersampled_epochs_have_equal_cells_and_are_redrawn():
    cells = np.repeat([0, 1, 2, 3], [50, 7, 20, 9])
    sampler = UndersampledEpochs(cells, batch_size=4, gen=torch.Generator().manual_seed(0))
    first, second = sampler.epoch(), sampler.epoch()
    for epoch in (first, second):
        assert len(epoch) == 4 * 7 and len(set(epoch)) == len(epoch)
        assert np.bincount(cells[epoch]).tolist() == [7, 7, 7, 7]
    assert set(first) != set(second)  # larger cells are redrawn each epoch
    batches = [next(sampler) for _ in range(14)]  # 56 rows: two epochs, batches may cross an epoch boundary
    assert all(len(b) == 4 for b in batches) and np.bincount(cells[np.concatenate(batches)]).tolist() == [14] * 4


def test_domain_independent_scores_each_image_by_its_own_group_and_sums_groups_at_inference():
    scores = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [3.0, -1.0]]])  # (B=2, G=2, C=2)
    np.testing.assert_allclose(summed_over_groups(scores).numpy(), [[2.0, 1.0], [3.5, -0.5]])
    y, a = torch.tensor([1, 0]), torch.tensor([1, 0])
    expected = [np.log(1 + np.exp(-1.0)), np.log(2.0)]  # CE of group 1's [0, 1] for class 1; group 0's [.5, .5]
    np.testing.assert_allclose(own_group_loss(scores, y, a).numpy(), expected, rtol=1e-6)


def test_gradient_reversal_flips_and_scales_the_gradient_only():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    out = reverse_gradient(x, 0.7)
    assert torch.equal(out, x)
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-0.7, -1.4, -2.1])
    assert ramp(0.0) == 0.0 and 0.99 < ramp(1.0) < 1.0


def test_threshold_optimizer_matches_fairlearns_own_on_fixed_scores():
    from fairlearn.postprocessing import ThresholdOptimizer
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 2000
    a = rng.integers(0, 3, n)
    y = (rng.random(n) < 0.3 + 0.2 * (a == 0)).astype(int)
    x = np.stack([y + 0.8 * rng.normal(size=n) + 0.5 * a, rng.normal(size=n)], axis=1)
    model = LogisticRegression().fit(x, y)
    theirs = ThresholdOptimizer(
        estimator=model,
        constraints="equalized_odds",
        objective="accuracy_score",
        prefit=True,
        predict_method="predict_proba",
        grid_size=500,
    ).fit(x, y, sensitive_features=a)
    scores = model.predict_proba(x)[:, 1]
    ours = fit_thresholds(scores, y, a, "equalized_odds", 500)
    np.testing.assert_array_equal(
        ours.predict(scores[:, None], sensitive_features=a, random_state=3),
        theirs.predict(x, sensitive_features=a, random_state=3),
    )
