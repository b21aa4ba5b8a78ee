"""A small class-conditional U-Net that predicts the noise ε (or v) of a diffusion model, in one readable file.

The layout is the DDPM one (Ho et al. 2020): a sinusoidal timestep embedding through an MLP,
residual blocks that add the embedding, stride-2 convolutions down, nearest-neighbour + conv up,
and the encoder's activations concatenated onto the decoder's. A label embedding is added to the
time embedding; index ``num_classes`` is the "null" label that classifier-free guidance (Ho &
Salimans 2022) uses for the unconditional prediction. As in improved DDPM (Nichol & Dhariwal
2021) the last convolution starts at zero, so the untrained network predicts ε = 0.

The network knows nothing of noise schedules or sampling: that is `luoxia.models.ddpm`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import Field, model_validator

from luoxia.config import Config


class UNetConfig(Config):
    """Shape of the U-Net. Level ``i`` works at ``image_size / 2**i`` pixels with
    ``base_channels · channel_mults[i]`` channels."""

    image_size: int = Field(28, gt=0, description="height and width of the (square) images")
    channels: int = Field(1, gt=0, description="image channels (1 for grey digits)")
    base_channels: int = Field(32, gt=0, description="channels of the first level")
    channel_mults: list[int] = Field([1, 2, 2], min_length=1, description="channel multiplier of each level")
    num_res_blocks: int = Field(1, gt=0, description="residual blocks per level on the way down")
    num_classes: int = Field(10, gt=0, description="class labels; label num_classes is the null (unconditional) one")
    attention_resolution: int | None = Field(
        None, description="one self-attention block at this spatial size (null: none, cheapest)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout inside the residual blocks")
    scale_shift: bool = Field(
        True, description="the embedding scales and shifts the normalised features (improved DDPM's AdaGN) "
                          "instead of only being added")

    @model_validator(mode="after")
    def _check_shapes(self) -> UNetConfig:
        if any(m <= 0 for m in self.channel_mults):
            raise ValueError(f"channel_mults must be positive, got {self.channel_mults}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(f"image_size ({self.image_size}) must be divisible by 2**(levels-1) = {factor}")
        if self.attention_resolution is not None and self.attention_resolution not in self.resolutions:
            raise ValueError(f"attention_resolution ({self.attention_resolution}) must be one of the "
                             f"levels' sizes {self.resolutions}")
        return self

    @property
    def resolutions(self) -> list[int]:
        """Spatial size of each level, from the input down."""
        return [self.image_size // 2**i for i in range(len(self.channel_mults))]

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.base_channels


def norm_groups(channels: int) -> int:
    """Groups of a GroupNorm: min(8, channels) when that divides ``channels`` (every multiple of 8),
    otherwise the largest divisor of ``channels`` below 8."""
    return next(g for g in range(min(8, channels), 0, -1) if channels % g == 0)


def make_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(norm_groups(channels), channels)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps → (B, dim) sinusoids, as in the Transformer and DDPM (sines then cosines)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)  # (B, 2·half)
    return F.pad(emb, (0, dim % 2))  # odd dim: one zero column


class ResBlock(nn.Module):
    """norm → SiLU → conv; the projected embedding enters (norm(h)·(1 + scale) + shift, or
    norm(h + e)); SiLU → dropout → conv, + skip (1x1 if the channels change); optionally followed by
    self-attention."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float, attention: bool = False,
                 scale_shift: bool = True):
        super().__init__()
        self.norm1 = make_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.scale_shift = scale_shift
        self.emb_proj = nn.Linear(emb_dim, 2 * out_ch if scale_shift else out_ch)
        self.norm2 = make_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.attn = SelfAttention(out_ch) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]  # (B, C or 2C, 1, 1), broadcast over pixels
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        h = self.skip(x) + h
        out: torch.Tensor = self.attn(h) if self.attn is not None else h  # (B, out_ch, H, W)
        return out


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels (DDPM's 16x16 block), residual; the output
    projection starts at zero so the block starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = make_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        assert self.proj.bias is not None  # built with a bias; the stubs type it Optional
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).transpose(2, 3).unbind(1)  # each (B, HW, C)
        h = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        h = h.transpose(1, 2).reshape(B, C, H, W)  # pixels back onto the grid
        out: torch.Tensor = x + self.proj(h)  # (B, C, H, W)
        return out


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)  # (B, C, H/2, W/2)
        return out


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))  # (B, C, 2H, 2W)
        return out


class UNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        base, emb_dim = config.base_channels, config.time_embed_dim
        self.time_mlp = nn.Sequential(nn.Linear(base, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(config.num_classes + 1, emb_dim)  # + 1: the null label
        self.conv_in = nn.Conv2d(config.channels, base, 3, padding=1)

        # Encoder: every block's output is kept (its channels in skip_channels) for the decoder.
        ch, skip_channels = base, [base]
        last = len(config.channel_mults) - 1
        self.down = nn.ModuleList()
        for level, (mult, size) in enumerate(zip(config.channel_mults, config.resolutions, strict=True)):
            for i in range(config.num_res_blocks):
                attention = size == config.attention_resolution and i == config.num_res_blocks - 1
                self.down.append(ResBlock(ch, base * mult, emb_dim, config.dropout, attention, config.scale_shift))
                ch = base * mult
                skip_channels.append(ch)
            if level != last:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, config.dropout, scale_shift=config.scale_shift)
                                  for _ in range(2)])

        # Decoder: one more block per level than the encoder, each eating one kept activation.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mults))):
            for _ in range(config.num_res_blocks + 1):
                self.up.append(ResBlock(ch + skip_channels.pop(), base * mult, emb_dim, config.dropout,
                                        scale_shift=config.scale_shift))
                ch = base * mult
            if level != 0:
                self.up.append(Upsample(ch))

        self.norm_out = make_norm(ch)
        self.conv_out = nn.Conv2d(ch, config.channels, 3, padding=1)
        # Improved DDPM: start by predicting ε = 0. Its gradient is not zero (it is the features
        # times the error), so the first optimisation step already moves this layer.
        nn.init.zeros_(self.conv_out.weight)
        assert self.conv_out.bias is not None  # built with a bias; the stubs type it Optional
        nn.init.zeros_(self.conv_out.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Predicted noise ε (B, C, H, W) of noisy images ``x`` (B, C, H, W) at timesteps ``t`` (B,)
        with class ``labels`` (B,); label ``num_classes`` means unconditional."""
        c = self.config
        if x.shape[1:] != (c.channels, c.image_size, c.image_size):
            raise ValueError(f"expected images of shape (B, {c.channels}, {c.image_size}, {c.image_size}), "
                             f"got {tuple(x.shape)}")
        emb = self.time_mlp(timestep_embedding(t, c.base_channels)) + self.label_embed(labels)  # (B, emb_dim)

        h = self.conv_in(x)
        skips = [h]
        for block in self.down:
            h = block(h, emb) if isinstance(block, ResBlock) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for block in self.up:
            if isinstance(block, ResBlock):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)  # (B, C_h + C_skip, H, W)
            else:
                h = block(h)
        eps: torch.Tensor = self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)
        return eps
