"""Learning-rate schedules as pure functions of the step: multipliers of each group's base rate."""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["cosine", "linear", "constant"]


def lr_multiplier(step: int, max_steps: int, warmup_steps: int, min_ratio: float,
                  schedule: Schedule = "cosine", decay_start: float = 0.0) -> float:
    """Linear warm-up over ``warmup_steps``, hold until ``decay_start`` (a fraction of the run),
    then decay to ``min_ratio`` by ``max_steps``: cosine (GPT-3, nanoGPT) or linear (the
    warm-up/stable/decay shape of the modded-nanogpt speedruns when ``decay_start`` > 0)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    start = max(warmup_steps, int(decay_start * max_steps))
    if step < start:
        return 1.0
    progress = min(1.0, (step - start) / max(1, max_steps - start))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape
