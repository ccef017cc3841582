"""The training input path: the one-gather flip+translate and in-place jitter give the textbook result bit for bit."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fairfacebench.settings import Augment
from fairfacebench.training import augment_batch, normalize, shift_crop, to_tensor


def reference_augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> torch.Tensor:
    """Flip, replicate-pad and crop, jitter, each as its own out-of-place step (the same random draws, in order)."""
    n, _, h, w = x.shape
    if aug.flip:
        flip = torch.rand(n, generator=gen) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    if aug.crop > 0:
        p = aug.crop
        padded = F.pad(x, (p, p, p, p), mode="replicate")
        dy = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=gen)
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if aug.jitter > 0:
        j = aug.jitter
        brightness = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * j
        contrast = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * j
        saturation = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * j
        x = x * brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * contrast + mean
        gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
        x = ((x - gray) * saturation + gray).clamp(0, 1)
    return x


@pytest.fixture
def batch():
    images = np.random.default_rng(0).integers(0, 256, (16, 20, 24, 3), dtype=np.uint8)
    return to_tensor(images, torch.device("cpu"))  # a channels-last view, as the training loop gets it


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("crop", [0, 3])
@pytest.mark.parametrize("jitter", [0.0, 0.25])
def test_augment_batch_equals_the_step_by_step_reference_bit_for_bit(batch, flip, crop, jitter):
    aug = Augment(flip=flip, crop=crop, jitter=jitter)
    before = batch.clone()
    fast = normalize(augment_batch(batch, aug, torch.Generator().manual_seed(5)))
    slow = normalize(reference_augment(batch.clone(), aug, torch.Generator().manual_seed(5)))
    assert torch.equal(fast, slow)
    assert torch.equal(batch, before)  # the caller's tensor is never modified in place


def test_shift_crop_translates_with_replicated_borders_and_mirrors():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    out = shift_crop(x, torch.tensor([1, 0]), torch.tensor([-2, 0]), torch.tensor([False, True]))
    # sample 0: output row r shows source row r+1 (the last repeated), column c source column c-2 (the first repeated)
    assert out[0, 0].tolist() == [[4, 4, 4, 5], [8, 8, 8, 9], [8, 8, 8, 9]]
    assert torch.equal(out[1], x[1].flip(2))
