"""Sentence encoders: texts → unit vectors behind one protocol (`Encoder`), loaded by name
(`load_encoder`). They sit beside `generate` and `train`: they may import `models` and `data`,
and `safety`, `serve` and applications import them."""

from luoxia.encoders.interface import Encoder
from luoxia.encoders.minilm import MiniLMEncoder
from luoxia.encoders.mlm import MLMEncoder
from luoxia.encoders.registry import ENCODERS, load_encoder
from luoxia.encoders.usem import USEMultilingualEncoder
from luoxia.runs import BUNDLED_MODELS, model_path

__all__ = ["BUNDLED_MODELS", "ENCODERS", "Encoder", "MLMEncoder", "MiniLMEncoder", "USEMultilingualEncoder",
           "load_encoder", "model_path"]
