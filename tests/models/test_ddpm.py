import copy
import math

import pytest
import torch

from luoxia.models.ddpm import NoiseScheduler, cosine_alpha_bars, ema_update
from luoxia.models.unet import UNet, UNetConfig

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def model() -> UNet:
    """A tiny untrained U-Net whose output conv is non-zero, so labels and noise matter."""
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, base_channels=16, channel_mults=[1, 2], num_classes=3)).eval()
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    return net


def sample(model, seed: int = 0, labels=(0, 1, 2), **options) -> torch.Tensor:
    scheduler = NoiseScheduler(options.pop("num_train_steps", 100))
    options.setdefault("steps", 5)
    return scheduler.ddim_sample(model, torch.tensor(labels), SHAPE, generator=torch.Generator().manual_seed(seed),
                                 **options)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_alpha_bars_decrease_within_zero_one(schedule):
    scheduler = NoiseScheduler(1000, schedule)
    a = scheduler.alpha_bars
    assert a.dtype == torch.float64 and a.shape == (1000,)
    assert (a > 0).all() and (a <= 1).all()
    assert (a[1:] < a[:-1]).all()
    assert a[0] > 0.999 and a[-1] < 1e-4
    assert torch.allclose(torch.cumprod(scheduler.alphas, 0), a, rtol=1e-12)
    assert (scheduler.betas > 0).all() and (scheduler.betas <= 0.999 + 1e-12).all()


def test_cosine_schedule_matches_the_formula():
    T, s = 1000, 0.008
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2  # noqa: E731
    a = cosine_alpha_bars(T, s)
    for t in (1, 10, 500, 900):  # paper step t is index t − 1; the clip only bites at the very end
        assert a[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    assert NoiseScheduler(1000).betas[-1].item() == pytest.approx(0.999)


def test_add_noise_at_step_zero_is_nearly_the_image():
    scheduler = NoiseScheduler(1000)
    x0 = torch.rand(4, *SHAPE) * 2 - 1
    x1 = scheduler.add_noise(x0, torch.randn_like(x0), torch.zeros(4, dtype=torch.long))
    assert torch.allclose(x1, x0, atol=0.05)
    # add_noise takes √ᾱ in float32 from the schedule tensor, math.sqrt in float64: they differ in the
    # last bits (6e-8 seen on AVX-512), so compare with float32's tolerance, not bit for bit.
    expected = math.sqrt(scheduler.alpha_bar(0)) * x0
    torch.testing.assert_close(scheduler.add_noise(x0, torch.zeros_like(x0), 0), expected, rtol=1e-6, atol=1e-6)


def test_iterated_forward_steps_equal_the_closed_form():
    scheduler, t = NoiseScheduler(50), 30
    x0 = torch.linspace(-1, 1, 8, dtype=torch.float64)
    # Mean, exactly: without noise, the steps multiply x0 by √α_0 ⋯ √α_t = √ᾱ_t.
    x = x0
    for step in range(t + 1):
        x = scheduler.step_forward(x, torch.zeros_like(x), step)
    assert torch.allclose(x, scheduler.add_noise(x0, torch.zeros_like(x0), t), rtol=1e-12)
    # Distribution: over many noise draws, same mean and variance as q(x_t | x_0).
    gen = torch.Generator().manual_seed(0)
    x0s = x0.expand(20000, -1)
    x = x0s
    for step in range(t + 1):
        x = scheduler.step_forward(x, torch.randn(x.shape, generator=gen, dtype=x.dtype), step)
    closed = scheduler.add_noise(x0s, torch.randn(x0s.shape, generator=gen, dtype=x0s.dtype), t)
    a = scheduler.alpha_bar(t)
    for samples in (x, closed):
        assert torch.allclose(samples.mean(0), math.sqrt(a) * x0, atol=0.03)
        assert torch.allclose(samples.var(0), torch.full_like(x0, 1 - a), rtol=0.05)


def test_training_loss_is_reproducible_and_drops_labels(model):
    scheduler = NoiseScheduler(100)
    x0, labels = torch.rand(4, *SHAPE) * 2 - 1, torch.tensor([0, 1, 2, 0])
    losses = [scheduler.training_loss(model, x0, labels, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert losses[0].ndim == 0 and torch.equal(losses[0], losses[1])

    seen = []
    recorder = lambda module, args: seen.append(args[2].clone())  # noqa: E731
    handle = model.register_forward_pre_hook(recorder)
    try:
        scheduler.training_loss(model, x0, labels, cond_drop=1.0)
        scheduler.training_loss(model, x0, labels, cond_drop=0.0)
    finally:
        handle.remove()
    assert torch.equal(seen[0], torch.full_like(labels, 3)) and torch.equal(seen[1], labels)


def test_v_target_gives_back_the_noise_and_the_image():
    scheduler, t = NoiseScheduler(1000, prediction="v"), torch.tensor([10, 500, 990])
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, *SHAPE, generator=gen, dtype=torch.float64) * 2 - 1
    eps = torch.randn(3, *SHAPE, generator=gen, dtype=torch.float64)
    x_t, v = scheduler.add_noise(x0, eps, t), scheduler.target(x0, eps, t)
    for i, step in enumerate(t.tolist()):
        assert torch.allclose(scheduler.eps_from_output(v[i], x_t[i], step), eps[i])
        a = scheduler.alpha_bar(step)  # x_0 = √ᾱ x_t − √(1 − ᾱ) v
        assert torch.allclose(math.sqrt(a) * x_t[i] - math.sqrt(1 - a) * v[i], x0[i])
    assert torch.equal(NoiseScheduler(1000).target(x0, eps, t), eps)
    with pytest.raises(ValueError, match="prediction"):
        NoiseScheduler(1000, prediction="x0")


def test_min_snr_weights_the_v_loss_as_the_epsilon_loss_in_x0_terms():
    """A network whose x̂_0 is off by δ has ε error δ·√SNR and v error δ·√(SNR + 1) per pixel;
    with Min-SNR weighting both losses come to the mean of min(SNR, γ) δ² over the timesteps."""
    x0, labels, delta = torch.zeros(64, *SHAPE), torch.zeros(64, dtype=torch.long), 0.1
    losses = {}
    for prediction in ("epsilon", "v"):
        scheduler = NoiseScheduler(1000, prediction=prediction)

        def off_by_delta(x_t, t, _labels, scheduler=scheduler):  # the target as if x_0 were δ everywhere
            x0_hat, a = torch.full_like(x_t, delta), scheduler.alpha_bars[t].float().view(-1, 1, 1, 1)
            return scheduler.target(x0_hat, (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt(), t)

        losses[prediction] = scheduler.training_loss(off_by_delta, x0, labels, torch.Generator().manual_seed(0),
                                                     null_label=1, min_snr_gamma=5.0)
    assert losses["v"].item() == pytest.approx(losses["epsilon"].item(), rel=1e-4)


def test_sampling_timesteps_are_evenly_spaced():
    scheduler = NoiseScheduler(1000)
    assert scheduler.sampling_timesteps(1) == [999]
    assert scheduler.sampling_timesteps(4) == [999, 666, 333, 0]
    assert scheduler.sampling_timesteps(1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="steps"):
        scheduler.sampling_timesteps(0)


def test_ddim_same_seed_is_identical_and_other_seeds_differ(model):
    for eta in (0.0, 1.0):
        first, again = sample(model, 0, eta=eta), sample(model, 0, eta=eta)
        assert first.shape == (3, *SHAPE)
        assert torch.equal(first, again)
        assert not torch.allclose(first, sample(model, 1, eta=eta))
        assert first.min() >= -1 and first.max() <= 1


def test_ddim_eta_noise_changes_the_result(model):
    assert not torch.allclose(sample(model, 0, eta=0.0), sample(model, 0, eta=1.0))


def test_guidance_zero_is_the_unconditional_path(model):
    null = (3, 3, 3)
    unconditional = sample(model, 0, labels=null, guidance=0.0)
    assert torch.equal(sample(model, 0, guidance=0.0), unconditional)
    assert torch.equal(sample(model, 0, labels=null, guidance=1.0), unconditional)
    assert not torch.equal(sample(model, 0, guidance=1.0), unconditional)
    assert not torch.allclose(sample(model, 0, guidance=3.0), sample(model, 0, guidance=1.0))


def test_one_step_and_full_ancestral_sampling(model):
    one = sample(model, 0, steps=1, num_train_steps=1000)
    assert one.shape == (3, *SHAPE) and one.min() >= -1 and one.max() <= 1
    scheduler = NoiseScheduler(20)
    images = scheduler.ddpm_sample(model, torch.tensor([0, 1]), SHAPE, generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, *SHAPE) and torch.isfinite(images).all() and images.abs().max() <= 1


def test_ddim_step_with_eta_one_is_the_ddpm_posterior():
    scheduler, t = NoiseScheduler(50), 20
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, *SHAPE, generator=gen, dtype=torch.float64) * 1.6 - 0.8
    eps, z = (torch.randn(2, *SHAPE, generator=gen, dtype=torch.float64) for _ in range(2))
    x_t = scheduler.add_noise(x0, eps, t)
    x_prev, x0_hat = scheduler.ddim_step(x_t, eps, t, t - 1, eta=1.0, noise=z)
    assert torch.allclose(x0_hat, x0)
    # q(x_{t-1} | x_t, x_0) of DDPM eq. 6-7, with variance β̃_t.
    a_t, a_prev, beta = scheduler.alpha_bar(t), scheduler.alpha_bar(t - 1), scheduler.betas[t].item()
    mean = (math.sqrt(a_prev) * beta * x0 + math.sqrt(1 - beta) * (1 - a_prev) * x_t) / (1 - a_t)
    assert torch.allclose(x_prev, mean + math.sqrt(beta * (1 - a_prev) / (1 - a_t)) * z, atol=1e-10)
    # η = 0 is deterministic: the noise is ignored, and the last step returns x̂_0.
    assert torch.equal(scheduler.ddim_step(x_t, eps, t, 5)[0], scheduler.ddim_step(x_t, eps, t, 5, noise=z)[0])
    assert torch.allclose(scheduler.ddim_step(x_t, eps, t, -1, eta=1.0)[0], x0)


def test_sampling_restores_training_mode(model):
    model.train()
    try:
        sample(model, 0, steps=1)
        assert model.training
    finally:
        model.eval()


def test_ema_decay_zero_copies_and_decay_one_keeps():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, base_channels=16, channel_mults=[1, 2], num_classes=3))
    ema = copy.deepcopy(net)
    for p in net.parameters():
        p.data.add_(torch.randn_like(p))
    kept = copy.deepcopy(ema.state_dict())
    ema_update(ema, net, decay=1.0)
    assert all(torch.equal(v, kept[k]) for k, v in ema.state_dict().items())
    ema_update(ema, net, decay=0.5)
    for e, p, k in zip(ema.parameters(), net.parameters(), kept.values(), strict=True):
        assert torch.allclose(e, (p + k) / 2)
    ema_update(ema, net, decay=0.0)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in ema.state_dict().items())
    with pytest.raises(ValueError, match="decay"):
        ema_update(ema, net, decay=1.5)
