"""A small convolutional digit classifier, trained once to measure the image generators.

FID and KID compare feature statistics of real and generated images; the usual features come from
Inception v3, whose weights cannot be downloaded here and which knows nothing of 8×8 digits anyway.
This network plays its part: two conv–BN–ReLU–max-pool stages, a fully connected layer (linear–BN–ReLU)
whose ``feature_dim`` activations are the features (the penultimate layer), then the class logits. It
trains on the shared loop like the generators (``forward(images, labels)`` is the loss) and, as the
judge of conditional accuracy, says which class a generated image shows.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config


class DigitClassifierConfig(Config):
    """Shape of the classifier; images are square, at least 4 pixels a side (two 2× poolings)."""

    image_size: int = Field(16, gt=0, description="side of the square images (set from the data)")
    channels: int = Field(1, gt=0, description="image channels (set from the data)")
    num_classes: int = Field(10, gt=0, description="classes (set from the data)")
    width: int = Field(32, gt=0, description="channels of the first convolution (the second has twice as many)")
    feature_dim: int = Field(128, gt=0, description="size of the penultimate layer: the FID/KID features")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout on the features during training")
    shift: int = Field(0, ge=0, description="training augmentation: random translation by up to N pixels")

    @model_validator(mode="after")
    def _check(self) -> DigitClassifierConfig:
        if self.image_size < 4:
            raise ValueError(f"image_size ({self.image_size}) must be at least 4 (two 2× poolings)")
        return self


def _stage(channels_in: int, channels_out: int) -> nn.Sequential:
    """conv 3×3 – batch norm – ReLU – 2× max-pool: halves the side."""
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False),
                         nn.BatchNorm2d(channels_out), nn.ReLU(), nn.MaxPool2d(2))


def random_shift(images: torch.Tensor, pixels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image translated by its own random offset of up to ``pixels`` in x and y, the uncovered
    border filled with the background (-1, black)."""
    if pixels == 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (pixels,) * 4, value=-1.0)
    offsets = torch.randint(0, 2 * pixels + 1, (2, n), generator=generator, device=images.device).tolist()
    return torch.stack([padded[i, :, y : y + height, x : x + width]
                        for i, (y, x) in enumerate(zip(*offsets, strict=True))])


class DigitClassifier(nn.Module):
    def __init__(self, config: DigitClassifierConfig):
        super().__init__()
        self.config = config
        w, side = config.width, config.image_size // 4
        self.convs = nn.Sequential(_stage(config.channels, w), _stage(w, 2 * w))  # (B, 2w, S/4, S/4)
        # batch norm before the ReLU keeps the features near unit scale, as Inception's are: the scale
        # KID's cubic kernel (x·y/d + 1)³ is meant for; unnormalised they reach tens and KID millions
        self.to_features = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * side * side, config.feature_dim, bias=False),
                                         nn.BatchNorm1d(config.feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) penultimate activations of images in [-1, 1]."""
        features: torch.Tensor = self.to_features(self.convs(images))
        return features

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, num_classes) class logits of images in [-1, 1]."""
        logits: torch.Tensor = self.head(self.dropout(self.features(images)))
        return logits

    def forward(self, images: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: cross-entropy of the labels (augmented by random shifts in training)."""
        if self.training:
            images = random_shift(images, self.config.shift, generator)
        return F.cross_entropy(self.logits(images), labels)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """(N,) predicted class of each image, in batches (call in eval mode)."""
        device = self.head.weight.device
        return torch.cat([self.logits(images[i : i + batch_size].to(device)).argmax(-1).cpu()
                          for i in range(0, len(images), batch_size)])
