"""A class-conditional convolutional variational autoencoder (Kingma & Welling 2014; conditional as
in Sohn et al. 2015), in one readable file.

The encoder maps an image and its label to a Gaussian over the latent code; the decoder maps a code
and a label back to per-pixel Bernoulli logits. Training minimises the negative evidence lower bound:
reconstruction (binary cross-entropy on pixels scaled to [0, 1]) + β · KL(q(z|x, y) ‖ N(0, I)); β > 1
is the β-VAE of Higgins et al. (2017), trading sharpness for a tidier latent space.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config


class TwoStageImageConfig(Config):
    """What a class-conditional model of square images that halves them twice (two stride-2 stages,
    as the VAE and the DCGAN do) is told of its images: ``image_size`` must be divisible by 4."""

    image_size: int = Field(16, gt=0, description="side of the square images")
    channels: int = Field(1, gt=0, description="image channels (1 grayscale, 3 RGB)")
    num_classes: int = Field(10, gt=0, description="classes the model is conditioned on")

    @model_validator(mode="after")
    def _check(self) -> TwoStageImageConfig:
        if self.image_size % 4:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by 4")
        return self

    @property
    def feature_side(self) -> int:
        return self.image_size // 4


class VAEConfig(TwoStageImageConfig):
    """Shape of the VAE. Images are square, ``image_size`` divisible by 4 (two stride-2 stages)."""

    latent_dim: int = Field(16, gt=0, description="size of the latent code z")
    width: int = Field(32, gt=0, description="channels of the first convolution (the second has twice as many)")
    hidden: int = Field(256, gt=0, description="width of the fully connected layer on both sides")
    beta: float = Field(1.0, ge=0, description="weight of the KL term (β-VAE)")


class Encoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        w, side = config.width, config.feature_side
        self.convs = nn.Sequential(
            nn.Conv2d(config.channels, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, S/2, S/2)
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2w, S/4, S/4)
        )
        self.fc = nn.Linear(2 * w * side * side + config.hidden, config.hidden)
        self.to_stats = nn.Linear(config.hidden, 2 * config.latent_dim)

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.cat([self.convs(x).flatten(1), label], dim=1)
        mean, logvar = self.to_stats(F.silu(self.fc(h))).chunk(2, dim=1)
        return mean, logvar


class Decoder(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        w, side = config.width, config.feature_side
        self.shape = (2 * w, side, side)
        self.fc = nn.Sequential(nn.Linear(config.latent_dim + config.hidden, config.hidden), nn.SiLU(),
                                nn.Linear(config.hidden, 2 * w * side * side), nn.SiLU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.SiLU(),  # (B, w, S/2, S/2)
            nn.ConvTranspose2d(w, config.channels, 4, stride=2, padding=1),  # (B, C, S, S) logits
        )

    def forward(self, z: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, label], dim=1)).view(-1, *self.shape)
        logits: torch.Tensor = self.deconvs(h)  # (B, C, S, S)
        return logits


class VAE(nn.Module):
    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.label_embedding = nn.Embedding(config.num_classes, config.hidden)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z | x, y) for images ``x`` in [-1, 1]."""
        mean_logvar: tuple[torch.Tensor, torch.Tensor] = self.encoder(x, self.label_embedding(labels))
        return mean_logvar

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1]: the mean of p(x | z, y)."""
        logits: torch.Tensor = self.decoder(z, self.label_embedding(labels))
        return torch.sigmoid(logits) * 2 - 1

    def forward(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: the negative ELBO per image, reconstruction + β·KL (in nats)."""
        embedded = self.label_embedding(labels)
        mean, logvar = self.encoder(x, embedded)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + (0.5 * logvar).exp() * noise  # the reparameterisation trick
        logits = self.decoder(z, embedded)
        reconstruction = F.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="sum") / x.size(0)
        kl = -0.5 * (1 + logvar - mean.square() - logvar.exp()).sum() / x.size(0)
        loss: torch.Tensor = reconstruction + self.config.beta * kl
        return loss

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, **_: object) -> torch.Tensor:
        """New images of the given classes, decoded from z ~ N(0, I) (no sampling options to take)."""
        device = self.label_embedding.weight.device
        z = torch.randn(labels.size(0), self.config.latent_dim, generator=generator, device=device)
        return self.decode(z, labels.to(device))

    @torch.no_grad()
    def interpolate(self, start: torch.Tensor, end: torch.Tensor, label: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decodings along the straight line between two images' latent means (both read as ``label``)."""
        labels = label.expand(2)
        means, _ = self.encode(torch.stack([start, end]), labels)
        weights = torch.linspace(0, 1, steps, device=means.device)[:, None]
        return self.decode((1 - weights) * means[0] + weights * means[1], label.expand(steps))
