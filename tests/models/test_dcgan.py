"""The conditional DCGAN: shapes and ranges, seeded and label-dependent samples, and one step of
each player lowering its own loss."""

import pytest
import torch

from luoxia.config import build_config
from luoxia.errors import ConfigError
from luoxia.models.dcgan import DCGAN, DCGANConfig
from tests.models.test_vae import batch


def tiny_gan(seed: int = 0) -> DCGAN:
    torch.manual_seed(seed)
    return DCGAN(DCGANConfig(image_size=8, num_classes=3, latent_dim=8, width=8, label_dim=4))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_samples_logits_and_losses_have_their_shapes():
    model = tiny_gan()
    images = model.sample(torch.tensor([0, 1, 2, 2]), generator=seeded(0))
    assert images.shape == (4, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    x, labels = batch()
    assert model.discriminator(x, labels).shape == (6,)
    assert model(x, labels, generator=seeded(0)).shape == () and model.generator_loss(6, labels).shape == ()


def test_sampling_uses_the_generator_in_eval_mode_and_leaves_training_mode_alone():
    model = tiny_gan().train()
    running = model.generator.deconvs[0].running_mean.clone()
    first = model.sample(torch.tensor([1, 0, 2, 2]), generator=seeded(3))
    second = model.sample(torch.tensor([1, 2, 0, 0]), generator=seeded(3))  # the same z, other neighbours
    assert torch.allclose(first[0], second[0], atol=1e-6)  # batch norm's running statistics, not the batch's
    assert model.generator.training and torch.equal(model.generator.deconvs[0].running_mean, running)


def test_same_generator_same_samples_and_labels_matter():
    model = tiny_gan()
    draw = lambda labels, seed: model.sample(labels, generator=seeded(seed))  # noqa: E731
    assert torch.equal(draw(torch.tensor([1, 1]), 5), draw(torch.tensor([1, 1]), 5))
    assert not torch.equal(draw(torch.tensor([1, 1]), 5), draw(torch.tensor([1, 1]), 6))
    assert not torch.equal(draw(torch.tensor([0, 0]), 5), draw(torch.tensor([2, 2]), 5))


@pytest.mark.parametrize("player", ["discriminator", "generator"])
def test_one_step_lowers_the_players_loss_with_fixed_noise(player: str):
    # eval mode: batch norm and the spectral norm's power iteration stay put between the two losses
    model = tiny_gan().eval()
    x, labels = batch()
    losses = {"discriminator": lambda: model.discriminator_loss(x, labels, generator=seeded(1)),
              "generator": lambda: model.generator_loss(6, labels, generator=seeded(1))}
    optimizer = torch.optim.Adam(getattr(model, player).parameters(), lr=1e-2)
    before = losses[player]()
    before.backward()
    optimizer.step()
    assert losses[player]().item() < before.item()


def test_without_spectral_norm_the_discriminator_has_plain_weights():
    plain = DCGAN(DCGANConfig(image_size=8, width=8, spectral_norm=False))
    assert "discriminator.head.weight" in plain.state_dict()
    assert "discriminator.head.parametrizations.weight.original" in tiny_gan().state_dict()
    assert abs(plain.discriminator.head.weight.std().item() - 0.02) < 0.005  # DCGAN's N(0, 0.02)


def test_image_size_must_allow_two_halvings():
    with pytest.raises(ConfigError, match="divisible by 4"):
        build_config(DCGANConfig, {"image_size": 10})
