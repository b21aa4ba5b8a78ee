"""``luoxia eval``: a model — a pre-training run, a fine-tuning run or a Hugging Face directory —
measured on held-out text and on its own samples (a tagger: on tagged sentences)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from luoxia.data.clean import clean_text
from luoxia.data.corpora import corpus_documents
from luoxia.data.packed import open_tokens
from luoxia.data.prepare import encode_stream
from luoxia.errors import DataError
from luoxia.evaluate.diversity import diversity_report
from luoxia.evaluate.mlm import evaluate_mlm_run
from luoxia.evaluate.perplexity import perplexity_report
from luoxia.evaluate.tagging import evaluate_tagger_run
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.mlm import MaskedLMGenerator
from luoxia.generate.tagger import Tagger
from luoxia.generate.text import CausalLMGenerator
from luoxia.registry import load
from luoxia.runs import data_dir as run_data_dir
from luoxia.runs import is_run_dir, run_recipe


def held_out_tokens(path: Path, generator: CausalLMGenerator, data: str | None) -> tuple[np.ndarray, str]:
    """Tokens to measure on: a pre-training run's own validation split, or a corpus/file encoded by
    the model's tokenizer."""
    if data is None:
        recipe = run_recipe(path) if is_run_dir(path) else {}
        if recipe.get("task", "lm") != "lm" or not is_run_dir(path):
            raise DataError(f"{path}: only a pre-training run has a validation split of its own; pass --data")
        data_dir = run_data_dir(path, recipe.get("prepared_data"))
        return np.asarray(open_tokens(data_dir, "val")), f"{data_dir}/val.bin"
    texts = [t for t in (clean_text(d.text) for d in corpus_documents(data)) if t]
    if not texts:
        raise DataError(f"{data}: no text to evaluate on")
    return encode_stream(generator.tokenizer, texts), data


def evaluate_run(path: str | Path, data: str | None = None, samples: int = 0, prompt: str = "",
                 generation: GenerationConfig | None = None, batch_size: int = 16, device: str = "auto") -> dict:
    """Perplexity-type metrics on held-out data, plus diversity of ``samples`` generations; a
    token-classification run gets entity precision/recall/F1 instead (`evaluate_tagger_run`), a
    masked LM masked-token accuracy and pseudo-perplexity (`evaluate_mlm_run`)."""
    path = Path(path)
    generator = load(path, device)
    if isinstance(generator, Tagger):
        return evaluate_tagger_run(path, generator, data)
    if isinstance(generator, MaskedLMGenerator):
        return evaluate_mlm_run(path, generator, data)
    tokens, source = held_out_tokens(path, generator, data)
    report: dict = {"run": str(path), "data": source, **perplexity_report(generator, tokens, batch_size)}
    if samples:
        generation = generation or GenerationConfig(max_new_tokens=100, temperature=1.0, seed=0)
        texts = [r.text for r in generator.generate([prompt] * samples, generation)]
        report["diversity"] = diversity_report(texts)
    return report
