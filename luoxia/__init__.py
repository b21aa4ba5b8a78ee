"""Luoxia (落霞): prepare data, pre-train, fine-tune, generate, evaluate, safeguard and serve
generative models."""

__version__ = "0.1.0"


def load(path, device: str = "auto", compile: bool = False):
    """Load a run directory or a local Hugging Face model as a `TextGenerator` (see
    `luoxia.registry.load`); imported lazily so ``import luoxia`` stays instant."""
    from luoxia.registry import load as _load

    return _load(path, device, compile=compile)
