"""``luoxia eval``: a trained run measured on held-out text and on its own samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from luoxia.data.clean import clean_text
from luoxia.data.corpora import corpus_documents
from luoxia.data.packed import open_tokens
from luoxia.data.prepare import encode_stream
from luoxia.data.tokenizer import TextTokenizer
from luoxia.errors import DataError
from luoxia.evaluate.diversity import diversity_report
from luoxia.evaluate.perplexity import perplexity_report
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.load import RUN_CONFIG, load_gpt
from luoxia.generate.text import GPTGenerator


def held_out_tokens(run_dir: Path, tokenizer: TextTokenizer, data: str | None) -> tuple[np.ndarray, str]:
    """Tokens to measure on: the run's own validation split, or a corpus/file encoded the same way."""
    if data is None:
        recipe = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
        data_dir = Path(recipe.get("prepared_data") or run_dir / "data")
        return np.asarray(open_tokens(data_dir, "val")), f"{data_dir}/val.bin"
    texts = [t for t in (clean_text(d.text) for d in corpus_documents(data)) if t]
    if not texts:
        raise DataError(f"{data}: no text to evaluate on")
    return encode_stream(tokenizer, texts), data


def evaluate_run(run_dir: str | Path, data: str | None = None, samples: int = 0, prompt: str = "",
                 generation: GenerationConfig | None = None, batch_size: int = 16, device: str = "auto") -> dict:
    """Perplexity-type metrics on held-out data, plus diversity of ``samples`` generations."""
    run_dir = Path(run_dir)
    model, tokenizer = load_gpt(run_dir, device)
    tokens, source = held_out_tokens(run_dir, tokenizer, data)
    report: dict = {"run": str(run_dir), "data": source, **perplexity_report(model, tokenizer, tokens, batch_size)}
    if samples:
        generation = generation or GenerationConfig(max_new_tokens=100, temperature=1.0, seed=0)
        generator = GPTGenerator(model, tokenizer)
        texts = [r.text for r in generator.generate([prompt] * samples, generation)]
        report["diversity"] = diversity_report(texts)
    return report
