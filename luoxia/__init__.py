"""Luoxia (落霞): prepare data, pre-train, fine-tune, generate, evaluate, safeguard and serve
generative models."""

__version__ = "0.1.0"
