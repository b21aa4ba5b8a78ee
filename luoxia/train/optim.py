"""Optimizers: AdamW, and Muon for the hidden 2-D weight matrices.

Muon (Keller Jordan, 2024; the optimizer behind the modded-nanogpt speed records) replaces each
matrix's momentum update by its nearest semi-orthogonal matrix, computed with a quintic
Newton–Schulz iteration. ``torch.optim.Muon`` exists but always runs that iteration in bfloat16,
which on CPUs without AVX-512 is 10–30x slower than float32; this version iterates in the
parameter's own dtype on the CPU and in bfloat16 on accelerators.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import Field, model_validator
from torch.optim import Optimizer

from luoxia.config import Config
from luoxia.errors import ConfigError

OptimizerName = Literal["adamw", "muon"]
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(update: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U·Vᵀ of ``update = U·S·Vᵀ`` by ``steps`` quintic Newton–Schulz iterations.

    Works on one matrix (m, n) or a stack (k, m, n) of same-shaped matrices at once. The result
    is not exactly U·Vᵀ: its singular values land roughly in (0.5, 1.5), which trains as well.
    """
    a, b, c = NS_COEFFICIENTS
    x = update if update.device.type == "cpu" else update.bfloat16()
    single = x.ndim == 2
    x = x[None] if single else x
    transposed = x.size(-2) > x.size(-1)
    if transposed:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)  # spectral norm ≤ Frobenius norm ≤ 1
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b·G + c·G²
        x = torch.baddbmm(x, poly, x, beta=a, alpha=1.0)  # a·X + (b·G + c·G²)·X
    x = x.mT if transposed else x
    return (x[0] if single else x).to(update.dtype)


class Muon(Optimizer):
    """Momentum, Nesterov look-ahead, orthogonalisation, shape-scaled step, decoupled weight decay.

    Same-shaped matrices are orthogonalised together as one batch: on a CPU the Newton–Schulz
    matmuls are most of Muon's cost, and batching them saves about a quarter of it.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.02, momentum: float = 0.95,
                 weight_decay: float = 0.0, nesterov: bool = True, ns_steps: int = 5):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, ns_steps=ns_steps)
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only optimises 2-D matrices, got a parameter of shape {tuple(p.shape)}")

    def _momentum_update(self, p: nn.Parameter, group: dict) -> torch.Tensor:
        buffer = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
        buffer.lerp_(p.grad, 1 - group["momentum"])
        return p.grad.lerp(buffer, group["momentum"]) if group["nesterov"] else buffer

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[nn.Parameter]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for shape, params in by_shape.items():
                updates = orthogonalize(torch.stack([self._momentum_update(p, group) for p in params]),
                                        group["ns_steps"])
                # Scale so tall and wide matrices take steps of the same RMS size (Jordan's rule).
                scale = max(1.0, shape[0] / shape[1]) ** 0.5
                for p, update in zip(params, updates, strict=True):
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"] * scale)
        return loss


def split_parameters(model: nn.Module, head_names: tuple[str, ...] = ("lm_head",)
                     ) -> tuple[list[nn.Parameter], list[nn.Parameter], list[nn.Parameter]]:
    """(hidden matrices, embedding and head matrices and other tensors, vectors).

    Muon is meant for the hidden 2-D matrices only; embeddings and the output head do better with
    AdamW (Jordan, 2024). ``named_parameters`` lists a tied weight once, under its first name.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden, others, vectors = [], [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.ndim < 2:
            vectors.append(param)
        elif param.ndim == 2 and id(param) not in embeddings and not name.startswith(head_names):
            hidden.append(param)
        else:
            others.append(param)
    return hidden, others, vectors


class OptimizerConfig(Config):
    """The optimizer fields every gradient-trained task uses (a task's train config composes them).

    ``muon_refusal`` is the one-line reason a task cannot use Muon; a task that can composes
    `MuonConfig` as well and leaves it None."""

    muon_refusal: ClassVar[str | None] = "this task has no Muon settings"

    optimizer: OptimizerName = Field("adamw", description="adamw, or muon for hidden matrices + adamw for the rest")
    lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.1, ge=0, description="decoupled weight decay on matrices (never biases, norms)")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW beta1")
    beta2: float = Field(0.95, ge=0, lt=1, description="AdamW beta2")
    grad_clip: float | None = Field(1.0, description="clip the global gradient norm to this (null: off)")

    @model_validator(mode="after")
    def _muon_allowed(self) -> OptimizerConfig:
        # A ConfigError (not a ValueError) passes through pydantic unchanged: one line, no field list.
        if self.optimizer == "muon" and self.muon_refusal:
            raise ConfigError(f"train.optimizer=muon is not available here: {self.muon_refusal}; use adamw")
        return self


class MuonConfig(Config):
    """Muon's own settings, composed into the train config of tasks that can use it."""

    muon_refusal: ClassVar[str | None] = None

    muon_lr: float = Field(0.02, gt=0, description="Muon learning rate (optimizer=muon)")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="Muon momentum")


def build_optimizers(model: nn.Module, cfg: OptimizerConfig, device: torch.device,
                     head_names: tuple[str, ...] = ("lm_head",), prefix: str = "") -> dict[str, Optimizer]:
    """AdamW for everything, or Muon for hidden matrices plus AdamW for embeddings, head and vectors —
    the one place every task's optimizers come from. Weight decay applies to matrices (≥2-D weights)
    only, never to biases and norm gains. Keys are ``prefix + "adamw"`` / ``prefix + "muon"`` (a GAN
    builds one set per network)."""
    hidden, others, vectors = split_parameters(model, head_names)
    fused = device.type in ("cuda", "cpu")
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer == "adamw":
        groups = [{"params": hidden + others, "weight_decay": cfg.weight_decay},
                  {"params": vectors, "weight_decay": 0.0}]
        return {prefix + "adamw": torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=fused)}
    if cfg.optimizer == "muon" and isinstance(cfg, MuonConfig):
        groups = [{"params": others, "weight_decay": cfg.weight_decay},
                  {"params": vectors, "weight_decay": 0.0}]
        return {
            prefix + "muon": Muon(hidden, lr=cfg.muon_lr, momentum=cfg.muon_momentum, weight_decay=cfg.weight_decay),
            prefix + "adamw": torch.optim.AdamW(groups, lr=cfg.lr, betas=betas, fused=fused),
        }
    raise ConfigError(f"unknown or unavailable optimizer '{cfg.optimizer}'; valid: adamw, muon")
