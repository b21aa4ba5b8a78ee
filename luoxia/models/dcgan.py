"""A class-conditional deep convolutional GAN (DCGAN, Radford et al. 2016; conditional as in Mirza &
Osindero 2014), in one readable file.

The generator maps noise z ~ N(0, I) and a label to an image in [-1, 1]: a linear projection to a
small feature map, then two stride-2 transposed convolutions with batch norm and ReLU, and a tanh.
The discriminator reads an image with two stride-2 convolutions and LeakyReLU(0.2) and scores it
with a *projection* (Miyato & Koyama 2018): logit = ψ·φ(x) + ⟨v_y, φ(x)⟩ + b, i.e. one linear head
shared by all classes plus one per class. The label enters as an inner product with the image's
features — the form the log density ratio of the optimal conditional discriminator takes — instead
of as extra one-hot input channels, which Miyato & Koyama found to train worse, and which would add
``num_classes`` channels at full resolution. The discriminator has no batch norm (it scores real and
fake batches separately, and in evaluation it then scores them with the same function as in training);
its layers but the projection are spectrally normalised (Miyato et al. 2018), which on the digits kept
the generator from collapsing to one image per class.

Both play the non-saturating game of Goodfellow et al. (2014): the discriminator minimises
BCE(D(x), 1) + BCE(D(G(z)), 0), the generator minimises BCE(D(G(z)), 1) = −log D(G(z)). Real
targets may be smoothed to 0.9 (one-sided label smoothing, Salimans et al. 2016). Weights start from
N(0, 0.02) (batch-norm scales from N(1, 0.02)) as in DCGAN.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field

from luoxia.models.vae import TwoStageImageConfig


class DCGANConfig(TwoStageImageConfig):
    """Shape of the DCGAN. Images are square, ``image_size`` divisible by 4 (two stride-2 stages)."""

    latent_dim: int = Field(64, gt=0, description="size of the noise vector z")
    width: int = Field(64, gt=0, description="channels at full-but-one resolution (the smallest map has twice as many)")
    label_dim: int = Field(16, gt=0, description="size of the generator's label embedding")
    real_label: float = Field(0.9, gt=0.5, le=1, description="discriminator target for real images (1: no smoothing)")
    spectral_norm: bool = Field(True, description="spectral normalisation of the discriminator's layers")


def dcgan_init(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation: weights N(0, 0.02), batch-norm scales N(1, 0.02), biases 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)
    return module


def _dcgan_init_in_place(module: nn.Module) -> None:
    """`dcgan_init` as ``Module.apply`` takes it (a function that returns nothing)."""
    dcgan_init(module)


class Generator(nn.Module):
    def __init__(self, config: DCGANConfig):
        super().__init__()
        w, side = config.width, config.feature_side
        self.shape = (2 * w, side, side)
        self.label_embedding = nn.Embedding(config.num_classes, config.label_dim)
        self.project = nn.Linear(config.latent_dim + config.label_dim, 2 * w * side * side, bias=False)
        self.deconvs = nn.Sequential(
            nn.BatchNorm2d(2 * w), nn.ReLU(),  # (B, 2w, S/4, S/4)
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),  # (B, w, S/2, S/2)
            nn.BatchNorm2d(w), nn.ReLU(),
            nn.ConvTranspose2d(w, config.channels, 4, stride=2, padding=1), nn.Tanh(),  # (B, C, S, S)
        )
        self.apply(_dcgan_init_in_place)  # the label embedding keeps N(0, 1): as loud as the noise from the start

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.label_embedding(labels)], dim=1)).view(-1, *self.shape)
        images: torch.Tensor = self.deconvs(h)  # (B, C, S, S)
        return images


class Discriminator(nn.Module):
    def __init__(self, config: DCGANConfig):
        super().__init__()
        w, side = config.width, config.feature_side
        features = 2 * w * side * side

        def layer(module: nn.Module) -> nn.Module:  # initialised before normalising
            module = dcgan_init(module)
            return nn.utils.parametrizations.spectral_norm(module) if config.spectral_norm else module

        self.convs = nn.Sequential(
            layer(nn.Conv2d(config.channels, w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # (B, w, S/2, S/2)
            layer(nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)), nn.LeakyReLU(0.2),  # (B, 2w, S/4, S/4)
        )
        self.head = layer(nn.Linear(features, 1))  # ψ and b
        self.projection = nn.Embedding(config.num_classes, features)  # v_y
        nn.init.normal_(self.projection.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One logit per image: log D/(1 − D), "real" when positive. Shape (B,)."""
        phi = self.convs(x).flatten(1)  # (B, 2w·S/4·S/4)
        logits: torch.Tensor = self.head(phi).squeeze(1) + (self.projection(labels) * phi).sum(dim=1)
        return logits


class DCGAN(nn.Module):
    """Generator and discriminator as one module, so one state dict holds both. Training alternates
    `discriminator_loss` and `generator_loss`, each with its own optimizer (`luoxia.train.image.GANTask`);
    ``forward`` is the discriminator's loss, the number a GAN run reports as ``val_loss``."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def generate(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images G(z, y) in [-1, 1] for z ~ N(0, I) drawn from ``generator`` (with gradients)."""
        device = self.generator.project.weight.device
        z = torch.randn(labels.size(0), self.config.latent_dim, generator=generator, device=device)
        images: torch.Tensor = self.generator(z, labels.to(device))
        return images

    def discriminator_loss(self, real: torch.Tensor, labels: torch.Tensor,
                           generator: torch.Generator | None = None) -> torch.Tensor:
        """BCE(D(x, y), real_label) + BCE(D(G(z, y), y), 0): real images against as many fakes of the
        same classes. Only the discriminator gets gradients."""
        with torch.no_grad():
            fake = self.generate(labels, generator)
        real_logits = self.discriminator(real, labels)
        fake_logits = self.discriminator(fake, labels)
        return (F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, self.config.real_label))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))

    def generator_loss(self, batch_size: int, labels: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """The non-saturating generator loss −log D(G(z, y), y) over ``batch_size`` fakes. Gradients
        also reach the discriminator's weights; its optimizer must not take them."""
        if labels.size(0) != batch_size:
            raise ValueError(f"{labels.size(0)} labels for a batch of {batch_size}")
        logits = self.discriminator(self.generate(labels, generator), labels)
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def forward(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
                ) -> torch.Tensor:
        """The evaluation loss: `discriminator_loss` on held-out real images and fakes drawn with
        ``generator`` (in eval mode, the very fakes `sample` gives). It says how well the
        discriminator tells them apart — about 2·log 2 ≈ 1.39 (a little more with smoothing) when it
        cannot, lower when it can — not how good the samples are: no GAN loss ranks a generator."""
        return self.discriminator_loss(images, labels, generator)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None, **_: object) -> torch.Tensor:
        """New images of the given classes from the generator in eval mode (batch norm with its running
        statistics, so an image does not depend on the rest of the batch); no sampling options to take."""
        was_training = self.generator.training
        self.generator.eval()
        images = self.generate(labels, generator)
        self.generator.train(was_training)
        return images
