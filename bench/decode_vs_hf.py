"""Generation speed of Luoxia's own decoder against `transformers`' ``generate`` on the same weights.

    python bench/decode_vs_hf.py [--run RUN_DIR] [--new-tokens 200] [--repeats 3]

Without ``--run`` the model is a freshly initialised GPT shaped like configs/lm/pydoc.yaml (3 layers ×
160, 256-token context: the `make demo` model), as in bench/lm_decode.py; speed does not depend on
the weights. The Luoxia model is exported with `luoxia.export.gpt_to_hf` (GPT-2 for the classic
recipe, Llama/Qwen3/Arcee for the modern ones), so both sides compute the same logits. Each setting —
batch 1 and 8, greedy and sampled (temperature 0.8, top-k 50) — generates exactly ``--new-tokens``
tokens per sequence from the same prompt (the tokenizer has no end-of-text token, so nothing stops
early); the time includes the prompt's prefill. Luoxia is timed twice: eager, and with its decode
step compiled (``luoxia.load(..., compile=True)``; the compilation itself happens in a warm-up and is
reported as ``compile_seconds``). `transformers` runs its default ``generate`` (dynamic cache, eager).
Best of ``--repeats``; one JSON line.
"""

from __future__ import annotations

import json
import time

import torch

PROMPT = "The quick brown fox jumps over"


def build_models(run: str | None):
    """(Luoxia generators, eager and compiled; their `transformers` twin; its tokenizer; description)."""
    from lm_decode import build_generator

    from luoxia.export import gpt_to_hf
    from luoxia.generate.text import GPTGenerator

    eager, source = build_generator(run)
    hf_model, _ = gpt_to_hf(eager.model, eager.tokenizer)
    compiled = GPTGenerator(eager.model, eager.tokenizer, compile=True)
    return {"eager": eager, "compiled": compiled}, hf_model, eager.tokenizer, source


def luoxia_tokens(generator, batch: int, sample: bool, new_tokens: int) -> list[list[int]]:
    from luoxia.generate.interface import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, temperature=0.8 if sample else 0,
                              top_k=50 if sample else None, seed=0)
    return [r.token_ids for r in generator.generate([PROMPT] * batch, config)]


def hf_tokens(hf_model, tokenizer, batch: int, sample: bool, new_tokens: int) -> list[list[int]]:
    ids = torch.tensor([tokenizer.encode(PROMPT)] * batch)
    torch.manual_seed(0)
    options = dict(do_sample=True, temperature=0.8, top_k=50) if sample else dict(do_sample=False)
    out = hf_model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                            min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0, **options)
    return out[:, ids.size(1):].tolist()


def tokens_per_s(run, repeats: int) -> tuple[float, list[list[int]]]:
    best, tokens = 0.0, []
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            tokens = run()
        best = max(best, sum(map(len, tokens)) / (time.perf_counter() - start))
    return best, tokens


def main() -> dict:
    from lm_decode import decode_arguments

    args = decode_arguments(__doc__.splitlines()[0])
    generators, hf_model, tokenizer, source = build_models(args.run)
    luoxia_tokens(generators["eager"], 1, False, 8)  # warm-up: one-off allocations are not timed
    started = time.perf_counter()
    for batch in (1, 8):
        luoxia_tokens(generators["compiled"], batch, False, 8)
    compile_seconds = time.perf_counter() - started
    hf_tokens(hf_model, tokenizer, 1, False, 8)
    results: dict = {}
    for batch in (1, 8):
        for sample in (False, True):
            theirs, their_tokens = tokens_per_s(lambda batch=batch, sample=sample: hf_tokens(
                hf_model, tokenizer, batch, sample, args.new_tokens), args.repeats)
            row: dict = {"hf_tokens_per_s": round(theirs, 1)}
            for kind, generator in generators.items():
                ours, our_tokens = tokens_per_s(
                    lambda generator=generator, batch=batch, sample=sample: luoxia_tokens(
                        generator, batch, sample, args.new_tokens), args.repeats)
                row[f"luoxia_{kind}_tokens_per_s"] = round(ours, 1)
                row[f"ratio_{kind}"] = round(ours / theirs, 2)
                if not sample:
                    row[f"same_tokens_{kind}"] = our_tokens == their_tokens
            results[f"batch{batch}_{'sampled' if sample else 'greedy'}"] = row
    generator = generators["eager"]
    config = generator.model.config
    return {
        "benchmark": "decode_vs_hf",
        "model": source,
        "hf_class": type(hf_model).__name__,
        "shape": {"n_layer": config.n_layer, "n_embd": config.n_embd, "params": generator.model.num_params()},
        "new_tokens": args.new_tokens,
        **results,
        "compile_seconds": round(compile_seconds, 1),
        "target_ratio_batch1": 3.0,
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
