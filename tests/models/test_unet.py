import pytest
import torch
from pydantic import ValidationError

from luoxia.models.ddpm import NoiseScheduler
from luoxia.models.unet import UNet, UNetConfig, norm_groups


def tiny_unet(seed: int = 0, **options) -> UNet:
    config = dict(image_size=8, base_channels=16, channel_mults=[1, 2], num_classes=3)
    config.update(options)
    torch.manual_seed(seed)
    return UNet(UNetConfig(**config))


def perturb_output_conv(model: UNet) -> UNet:
    """The last conv starts at zero (ε = 0 everywhere); give it weights to see the rest of the net."""
    torch.nn.init.normal_(model.conv_out.weight, std=0.1)
    return model


@pytest.mark.parametrize("options", [
    dict(image_size=8, channel_mults=[1, 2]),
    dict(image_size=16, channel_mults=[1, 2, 2], channels=2, attention_resolution=8),
    dict(image_size=28, channel_mults=[1, 2, 2], num_res_blocks=2, attention_resolution=7),
], ids=["8x8", "16x16-attn", "28x28-attn"])
def test_output_shape_equals_input_shape(options):
    model = perturb_output_conv(tiny_unet(**options))
    c = model.config
    x = torch.randn(2, c.channels, c.image_size, c.image_size)
    eps = model(x, torch.tensor([0, 999]), torch.tensor([1, c.num_classes]))
    assert eps.shape == x.shape
    assert torch.isfinite(eps).all()


def test_starts_by_predicting_zero():
    model = tiny_unet()
    eps = model(torch.randn(2, 1, 8, 8), torch.tensor([3, 500]), torch.tensor([0, 2]))
    assert torch.equal(eps, torch.zeros_like(eps))


def test_config_validation():
    with pytest.raises(ValidationError, match="divisible"):
        UNetConfig(image_size=28, channel_mults=[1, 2, 2, 2])  # 28 / 8 is not whole
    with pytest.raises(ValidationError, match="attention_resolution"):
        UNetConfig(image_size=16, channel_mults=[1, 2], attention_resolution=4)
    with pytest.raises(ValidationError, match="positive"):
        UNetConfig(channel_mults=[1, 0])
    assert UNetConfig(base_channels=16).time_embed_dim == 64
    assert UNetConfig(image_size=28).resolutions == [28, 14, 7]


def test_wrong_image_shape_is_an_error():
    with pytest.raises(ValueError, match="expected images"):
        tiny_unet()(torch.randn(1, 1, 16, 16), torch.tensor([0]), torch.tensor([0]))


def test_norm_groups_divide_channels():
    assert [norm_groups(c) for c in (1, 4, 8, 12, 16, 48)] == [1, 4, 8, 6, 8, 8]


def test_labels_and_the_null_class_change_the_prediction():
    model = perturb_output_conv(tiny_unet()).eval()
    x, t = torch.randn(1, 1, 8, 8).expand(4, -1, -1, -1), torch.full((4,), 100)
    eps = model(x, t, torch.tensor([0, 1, 2, 3]))  # 3 = num_classes: the null label
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(eps[i], eps[j], atol=1e-4), (i, j)
    with pytest.raises(IndexError):
        model(x[:1], t[:1], torch.tensor([4]))


def test_timestep_changes_the_prediction():
    model = perturb_output_conv(tiny_unet()).eval()
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    eps = model(x, torch.tensor([10, 900]), torch.tensor([1, 1]))
    assert not torch.allclose(eps[0], eps[1], atol=1e-4)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
@pytest.mark.parametrize("zero_init", [True, False], ids=["zero-init", "perturbed"])
def test_one_adam_step_lowers_the_loss_on_the_same_batch(zero_init, prediction):
    model = tiny_unet(image_size=16, channel_mults=[1, 2, 2], attention_resolution=8)
    if not zero_init:
        perturb_output_conv(model)
    scheduler = NoiseScheduler(100, prediction=prediction)
    x0 = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:  # the same t, noise and dropped labels every time
        return scheduler.training_loss(model, x0, labels, generator=torch.Generator().manual_seed(0))

    before = loss()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()
