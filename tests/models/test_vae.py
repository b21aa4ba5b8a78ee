"""The conditional VAE: shapes and ranges, a loss that one step lowers, labels that matter."""

import pytest
import torch

from luoxia.config import build_config
from luoxia.errors import ConfigError
from luoxia.models.vae import VAE, VAEConfig


def tiny_vae(seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(image_size=8, num_classes=3, latent_dim=4, width=8, hidden=32))


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(6, 1, 8, 8, generator=generator) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2])


def test_samples_and_decodings_are_images_in_range():
    model = tiny_vae().eval()
    images = model.sample(torch.tensor([0, 1, 2, 2]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (4, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    x, labels = batch()
    mean, logvar = model.encode(x, labels)
    assert mean.shape == logvar.shape == (6, 4)
    path = model.interpolate(x[0], x[1], torch.tensor(1), steps=5)
    assert path.shape == (5, 1, 8, 8)


def test_same_generator_same_samples_and_labels_matter():
    model = tiny_vae().eval()
    draw = lambda labels, seed: model.sample(labels, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(torch.tensor([1, 1]), 5), draw(torch.tensor([1, 1]), 5))
    assert not torch.equal(draw(torch.tensor([0, 0]), 5), draw(torch.tensor([2, 2]), 5))


def test_one_step_lowers_the_loss_on_a_fixed_batch():
    model = tiny_vae()
    x, labels = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_at = lambda: model(x, labels, generator=torch.Generator().manual_seed(1))  # noqa: E731
    before = loss_at()
    before.backward()
    optimizer.step()
    assert loss_at().item() < before.item()


def test_kl_weight_zero_leaves_only_the_reconstruction():
    x, labels = batch()
    model = tiny_vae()
    full = model(x, labels, generator=torch.Generator().manual_seed(1))
    model.config.beta = 0.0
    reconstruction = model(x, labels, generator=torch.Generator().manual_seed(1))
    assert reconstruction < full


def test_image_size_must_allow_two_halvings():
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_config(VAEConfig, {"image_size": 10})
