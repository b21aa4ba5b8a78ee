"""Luoxia (落霞): prepare data, pre-train, fine-tune, generate, evaluate, safeguard and serve
generative models."""

__version__ = "0.1.0"


def load(path, device: str = "auto"):
    """Load a trained run directory as a `TextGenerator` (see `luoxia.generate.load.load`)."""
    from luoxia.generate.load import load as _load

    return _load(path, device)
