"""Gaussian diffusion: the noise schedule, the training loss and the samplers, with no parameters.

The network that predicts the noise ε (`luoxia.models.unet.UNet`, or anything called as
``model(x_t, t, labels)``) is separate from the procedure, as in diffusers. Papers:

- DDPM (Ho et al. 2020): the forward process q(x_t | x_{t-1}) = N(√α_t x_{t-1}, β_t I), its closed
  form q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I) (eq. 4), and the "simple" ε-prediction loss.
- Improved DDPM (Nichol & Dhariwal 2021): the cosine schedule (eq. 17).
- DDIM (Song et al. 2021): deterministic (η = 0) sampling over a subsequence of the steps (eq. 12);
  η = 1 over every step is DDPM's ancestral sampler.
- Classifier-free guidance (Ho & Salimans 2022): drop the label during training, and at sampling
  ε = ε_uncond + w (ε_cond − ε_uncond).
- v-prediction (Salimans & Ho 2022, progressive distillation §4): the network may predict
  v = √ᾱ ε − √(1 − ᾱ) x_0 instead of ε; the sampler turns it back into ε = √ᾱ v + √(1 − ᾱ) x_t.

Timesteps are 0-based: index ``t`` is the paper's step t + 1, so ``alpha_bars[0]`` is ᾱ_1 and
``alpha_bars[-1]`` is ᾱ_T; "before step 0" is x_0, with ᾱ = 1.
"""

from __future__ import annotations

import copy
import math
from typing import Literal, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from luoxia.models.unet import UNet, UNetConfig

Prediction = Literal["epsilon", "v"]


def cosine_alpha_bars(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_1 … ᾱ_T (float64) of the cosine schedule: f(t) = cos²((t/T + s)/(1 + s) · π/2), ᾱ_t = f(t)/f(0),
    with every β_t = 1 − ᾱ_t/ᾱ_{t−1} clipped at ``max_beta`` so the last steps stay finite."""
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # f(0) … f(T)
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1 - betas, dim=0)


def linear_alpha_bars(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """ᾱ of DDPM's linear schedule (β from 1e-4 to 0.02 over 1000 steps, rescaled to ``num_steps``)."""
    scale = 1000 / num_steps
    betas = torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1 - betas, dim=0)


def _num_classes(model: nn.Module) -> int:
    """The model's ``config.num_classes``, its null label: a UNet's config (Module attributes are
    typed Tensor | Module)."""
    return cast(UNetConfig, model.config).num_classes


def _per_sample(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (B, 1, 1, …) to broadcast against ``like`` (B, …), in its dtype and device."""
    picked = values[torch.as_tensor(t).cpu()].expand(like.shape[0])  # an int t serves the whole batch
    return picked.to(device=like.device, dtype=like.dtype).view(-1, *[1] * (like.ndim - 1))


class NoiseScheduler:
    """The forward process and its reversal for one noise schedule.

    ``betas``, ``alphas`` and ``alpha_bars`` are float64 CPU tensors of length ``num_train_steps``:
    the cumulative product over 1000 steps and 1 − ᾱ near t = 0 keep their precision; each
    coefficient is cast to the images' dtype and device when it is used.
    """

    def __init__(self, num_train_steps: int = 1000, schedule: Literal["cosine", "linear"] = "cosine",
                 prediction: Prediction = "epsilon"):
        if prediction not in ("epsilon", "v"):
            raise ValueError(f"unknown prediction {prediction!r} (epsilon or v)")
        if num_train_steps < 1:
            raise ValueError(f"num_train_steps must be positive, got {num_train_steps}")
        self.num_train_steps = num_train_steps
        self.schedule, self.prediction = schedule, prediction
        if schedule == "cosine":
            self.alpha_bars = cosine_alpha_bars(num_train_steps)
        elif schedule == "linear":
            self.alpha_bars = linear_alpha_bars(num_train_steps)
        else:
            raise ValueError(f"unknown schedule {schedule!r} (cosine or linear)")
        previous = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])
        self.alphas = self.alpha_bars / previous
        self.betas = 1 - self.alphas

    def alpha_bar(self, t: int) -> float:
        """ᾱ at step ``t``; 1.0 for t = −1 (the clean image)."""
        return 1.0 if t < 0 else self.alpha_bars[t].item()

    # Forward process.

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: a sample of q(x_t | x_0) in one go (DDPM eq. 4)."""
        alpha_bar = _per_sample(self.alpha_bars, t, x0)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def step_forward(self, x_prev: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """x_t = √α_t x_{t−1} + √β_t ε: one step of q(x_t | x_{t−1}). Iterated from step 0 it gives
        the same distribution as `add_noise`."""
        alpha = _per_sample(self.alphas, t, x_prev)
        return alpha.sqrt() * x_prev + (1 - alpha).sqrt() * noise

    # Training.

    def training_loss(self, model: nn.Module, x0: torch.Tensor, labels: torch.Tensor,
                      generator: torch.Generator | None = None, cond_drop: float = 0.1,
                      null_label: int | None = None, min_snr_gamma: float | None = None) -> torch.Tensor:
        """Mean squared error between the `target` (the noise, or v) and the model's prediction of it
        (DDPM's L_simple), at uniform timesteps. With ``min_snr_gamma`` γ each sample's error is
        weighted by min(SNR_t, γ)/SNR_t for ε and min(SNR_t, γ)/(SNR_t + 1) for v, SNR_t = ᾱ_t/(1 − ᾱ_t)
        (Min-SNR, Hang et al. 2023): either way min(SNR_t, γ) times the error in x_0, so the many
        nearly clean steps, whose noise is easy to see and of little use, stop dominating the
        gradient. Each label becomes ``null_label`` (default ``model.config.num_classes``) with
        probability ``cond_drop``, which trains the unconditional model of classifier-free guidance
        too. The timesteps, the noise and the dropped labels are drawn, in that order, from
        ``generator`` (on the images' device), so one seed gives the same draw."""
        B, device = x0.shape[0], x0.device
        null_label = _num_classes(model) if null_label is None else null_label
        t = torch.randint(0, self.num_train_steps, (B,), generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        drop = torch.rand(B, generator=generator, device=device) < cond_drop
        labels = torch.where(drop, torch.full_like(labels, null_label), labels)
        x_t = self.add_noise(x0, noise, t)
        error = F.mse_loss(model(x_t, t, labels), self.target(x0, noise, t), reduction="none")
        if min_snr_gamma is None:
            return error.mean()
        snr = _per_sample(self.alpha_bars / (1 - self.alpha_bars), t, error)
        x0_error_scale = snr if self.prediction == "epsilon" else snr + 1  # squared error = scale · x_0's
        return (error * snr.clamp(max=min_snr_gamma) / x0_error_scale).mean()

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """What the network learns to output: ε, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0."""
        if self.prediction == "epsilon":
            return noise
        alpha_bar = _per_sample(self.alpha_bars, t, x0)
        return alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * x0

    def eps_from_output(self, output: torch.Tensor, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """The noise ε implied by the network's ``output`` at x_t (the output itself for ε-prediction)."""
        if self.prediction == "epsilon":
            return output
        a_t = self.alpha_bar(t)
        return math.sqrt(a_t) * output + math.sqrt(1 - a_t) * x_t

    # Sampling.

    def sampling_timesteps(self, steps: int) -> list[int]:
        """``steps`` timesteps evenly spaced from T − 1 down to 0 (both included, rounded): the
        sampler starts where the noise is (nearly) pure and ends on the clean-image prediction."""
        if not 1 <= steps <= self.num_train_steps:
            raise ValueError(f"steps must be between 1 and {self.num_train_steps}, got {steps}")
        return torch.linspace(self.num_train_steps - 1, 0, steps, dtype=torch.float64).round().long().tolist()

    def ddim_step(self, x_t: torch.Tensor, eps: torch.Tensor, t: int, t_prev: int, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One DDIM update (Song et al. eq. 12) from step ``t`` to ``t_prev`` < t (−1: the clean image).

        x_0 is predicted from ε and clamped to [−1, 1], and ε is recomputed from the clamped x_0 so the
        two stay consistent; then x_{t_prev} = √ᾱ_prev x̂_0 + √(1 − ᾱ_prev − σ²) ε̂ + σ z with
        σ = η √((1 − ᾱ_prev)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev). ``noise`` is z (needed when σ > 0).
        Returns x_{t_prev} and x̂_0.
        """
        a_t, a_prev = self.alpha_bar(t), self.alpha_bar(t_prev)
        x0 = ((x_t - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)).clamp(-1, 1)
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            if noise is None:
                raise ValueError("eta > 0 needs noise")
            x_prev = x_prev + sigma * noise
        return x_prev, x0

    def guided_eps(self, model: nn.Module, x: torch.Tensor, t: int, labels: torch.Tensor, guidance: float,
                   null_label: int) -> torch.Tensor:
        """The guided noise ε_uncond + w (ε_cond − ε_uncond) with w = ``guidance``; for v-prediction
        the outputs are mixed, then turned into ε (the same, as the conversion is affine). w = 0
        evaluates only the unconditional branch and w = 1 only the conditional one, so those are
        exactly the plain unconditional and conditional predictions; otherwise both go through the
        model as one batch."""
        B = x.shape[0]
        t_batch = torch.full((B,), t, dtype=torch.long, device=x.device)
        null = torch.full_like(labels, null_label)
        if guidance == 0:
            output = model(x, t_batch, null)
        elif guidance == 1:
            output = model(x, t_batch, labels)
        else:  # both branches as one batch (2B, C, H, W)
            cond, uncond = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), torch.cat([labels, null])).chunk(2)
            output = uncond + guidance * (cond - uncond)
        return self.eps_from_output(output, x, t)

    @torch.no_grad()
    def ddim_sample(self, model: nn.Module, labels: torch.Tensor, image_shape: tuple[int, ...], steps: int = 25,
                    guidance: float = 3.0, eta: float = 0.0, generator: torch.Generator | None = None,
                    null_label: int | None = None) -> torch.Tensor:
        """Images (B, *image_shape) in [−1, 1] of classes ``labels`` (B,), by DDIM over ``steps``
        evenly spaced timesteps with classifier-free guidance ``guidance`` (see `guided_eps`).

        All randomness — the starting noise, then the per-step noise when η > 0 — comes from
        ``generator`` (on the model's device), so one seed gives identical images. The model is run
        in eval mode (no dropout) and given back in the mode it came in.
        """
        device = next(model.parameters()).device
        null_label = _num_classes(model) if null_label is None else null_label
        labels = labels.to(device)
        was_training = model.training
        model.eval()
        try:
            x = torch.randn((labels.shape[0], *image_shape), generator=generator, device=device)
            timesteps = self.sampling_timesteps(steps)
            for t, t_prev in zip(timesteps, timesteps[1:] + [-1], strict=True):
                eps = self.guided_eps(model, x, t, labels, guidance, null_label)
                noise = torch.randn(x.shape, generator=generator, device=device) if eta > 0 and t_prev >= 0 else None
                x, _ = self.ddim_step(x, eps, t, t_prev, eta, noise)
        finally:
            model.train(was_training)
        return x  # the last step goes to t = −1, where x is the clamped x̂_0

    def ddpm_sample(self, model: nn.Module, labels: torch.Tensor, image_shape: tuple[int, ...],
                    guidance: float = 3.0, generator: torch.Generator | None = None,
                    null_label: int | None = None) -> torch.Tensor:
        """DDPM's ancestral sampler: every training step, posterior variance β̃_t. That is DDIM with
        η = 1 over all steps (Song et al. §4.1), so it is run as such."""
        return self.ddim_sample(model, labels, image_shape, steps=self.num_train_steps, guidance=guidance,
                                eta=1.0, generator=generator, null_label=null_label)


@torch.no_grad()
def ema_update(ema_model: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model for every parameter (decay 1 keeps, decay 0 copies
    exactly); buffers are copied."""
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay}")
    for ema_p, p in zip(ema_model.parameters(), model.parameters(), strict=True):
        ema_p.lerp_(p, 1.0 - decay)
    for ema_b, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        ema_b.copy_(b)


class DDPMConfig(UNetConfig):
    """The U-Net's shape plus the diffusion procedure's settings."""

    num_train_steps: int = Field(1000, gt=1, description="diffusion steps T in training")
    schedule: Literal["cosine", "linear"] = Field("cosine", description="noise schedule")
    prediction: Prediction = Field("epsilon", description="what the U-Net predicts: epsilon (the noise) or v")
    cond_drop: float = Field(0.1, ge=0, lt=1, description="share of labels dropped in training (for guidance)")
    ema_decay: float = Field(0.999, ge=0, le=1, description="EMA of the weights, used for sampling")
    min_snr_gamma: float | None = Field(
        5.0, gt=0, description="Min-SNR loss weighting min(SNR, γ)/SNR (null: DDPM's unweighted loss)")


class Diffusion(nn.Module):
    """A class-conditional diffusion model as one module: the U-Net being trained, its EMA copy
    (what samples come from), and the noise scheduler. ``forward`` is the training loss, so the
    shared loop (and DDP) train it like any model; the EMA travels in its checkpoints."""

    def __init__(self, config: DDPMConfig):
        super().__init__()
        self.config = config
        self.unet = UNet(config)
        self.ema = copy.deepcopy(self.unet).requires_grad_(False)
        self.scheduler = NoiseScheduler(config.num_train_steps, config.schedule, config.prediction)

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        return self.scheduler.training_loss(self.unet, images, labels, generator, self.config.cond_drop,
                                            min_snr_gamma=self.config.min_snr_gamma)

    def update_ema(self) -> None:
        ema_update(self.ema, self.unet, self.config.ema_decay)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, steps: int = 25,
               guidance: float = 3.0, **_: object) -> torch.Tensor:
        c = self.config
        return self.scheduler.ddim_sample(self.ema, labels, (c.channels, c.image_size, c.image_size), steps,
                                          guidance, generator=generator)
