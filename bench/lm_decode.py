"""Generation speed: tokens/s at batch 1 and 8, with and without the KV cache.

    python bench/lm_decode.py [--run RUN_DIR] [--new-tokens 200] [--repeats 3]

Without ``--run`` it times a freshly initialised GPT shaped like configs/lm/pydoc.yaml (speed does
not depend on the weights). Greedy decoding from a 16-token prompt; the prompt's prefill is
included in the time. Prints one JSON line; the best of ``--repeats`` runs is kept per setting.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def build_generator(run: str | None):
    from luoxia.config import load_config, resolve_recipe
    from luoxia.data.tokenizer import train_bpe_tokenizer
    from luoxia.generate.text import GPTGenerator
    from luoxia.models.gpt import GPT
    from luoxia.registry import load
    from luoxia.train.lm import LMRecipe

    if run:
        return load(run, device="cpu"), run
    recipe = load_config(LMRecipe, resolve_recipe("lm/pydoc.yaml"))
    # No end-of-text token: random weights must not stop early.
    tokenizer = train_bpe_tokenizer(["The quick brown fox jumps over the lazy dog. " * 50], vocab_size=300,
                                    special_tokens=())
    torch.manual_seed(0)
    model = GPT(recipe.model.model_copy(update={"vocab_size": recipe.data.vocab_size}))
    return GPTGenerator(model, tokenizer), "configs/lm/pydoc.yaml (random weights)"


def time_generation(generator, batch: int, use_cache: bool, new_tokens: int, repeats: int) -> float:
    from luoxia.generate.interface import GenerationConfig

    config = GenerationConfig(max_new_tokens=new_tokens, temperature=0, use_cache=use_cache)
    prompt = "The quick brown fox jumps over"
    eos = generator.tokenizer.eos_id
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            results = generator.generate([prompt] * batch, config)
        elapsed = time.perf_counter() - start
        generated = sum(r.completion_tokens + (1 if r.finish_reason == "stop" and eos is not None else 0)
                        for r in results)
        best = max(best, generated / elapsed)
    return best


def decode_arguments(description: str) -> argparse.Namespace:
    """The options every decoding benchmark takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--run", help="a trained run directory (default: random weights, pydoc shape)")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def main() -> dict:
    args = decode_arguments(__doc__.splitlines()[0])
    generator, source = build_generator(args.run)
    # A warm-up run so that one-off allocations are not timed.
    time_generation(generator, 1, True, 8, 1)
    results = {f"batch{b}_{'cache' if c else 'nocache'}_tokens_per_s": round(
        time_generation(generator, b, c, args.new_tokens, args.repeats), 1) for b in (1, 8) for c in (True, False)}
    config = generator.model.config
    return {
        "benchmark": "lm_decode",
        "model": source,
        "shape": {"n_layer": config.n_layer, "n_embd": config.n_embd, "block_size": config.block_size,
                  "params": generator.model.num_params()},
        "new_tokens": args.new_tokens,
        **results,
        "cache_speedup_batch1": round(results["batch1_cache_tokens_per_s"] / results["batch1_nocache_tokens_per_s"], 2),
        "cache_speedup_batch8": round(results["batch8_cache_tokens_per_s"] / results["batch8_nocache_tokens_per_s"], 2),
        "threads": torch.get_num_threads(),
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
