"""Text watermark: detection rates, robustness to token substitution, and the perplexity cost.

    python bench/watermark.py [--model RUN] [--generations 200] [--tokens 200] [--passages 600]
                              [--gamma 0.25] [--delta 2.0] [--keep DIR]

Model: ``--model``, else a byte-level BPE GPT trained here on the pydoc corpus (configs/lm/pydoc.yaml
with a 2,048-token BPE vocabulary, 500 steps, about two minutes). Generations: ``--generations``
continuations of ``--tokens`` tokens, sampled at temperature 1 with the watermark, from prompts cut
from pydoc text (seeded). Human text: ``--passages`` passages of the same token length, split evenly
over Tiny Shakespeare, Tang poems (both from ../shared/data when present) and pydoc prose.
Detection works on the decoded text, re-tokenized, as `luoxia watermark detect` does, at z ≥ 4.
Substitution: 10% and 20% of the generated tokens replaced by uniformly random tokens before
decoding. Perplexity cost: the model's own perplexity of its watermarked vs. unwatermarked
continuations of the same prompts with the same seeds.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path

import torch


def train_model(out_dir: Path) -> Path:
    from luoxia.registry import load_recipe
    from luoxia.train.lm import train_lm

    train_lm(load_recipe("configs/lm/pydoc.yaml", [f"out_dir={out_dir}", "data.tokenizer=bpe", "data.vocab_size=2048",
                                                    "data.min_frequency=1", "progress=false"]))
    return out_dir


def human_passages(tokenizer, n: int, length: int, rng: random.Random) -> dict[str, list[str]]:
    """``n`` passages of ``length`` tokens, spread over the corpora this machine has."""
    from luoxia.data.corpora import corpus_documents
    from luoxia.errors import DataError

    sources = {}
    for name in ("shakespeare", "poems", "pydoc"):
        try:
            texts = [d.text for _, d in zip(range(3000), corpus_documents(name), strict=False)]
        except DataError:
            continue
        ids = [i for text in texts for i in tokenizer.encode(text + "\n")]
        sources[name] = ids
    per_source = -(-n // len(sources))
    passages = {}
    for name, ids in sources.items():
        starts = [rng.randrange(0, len(ids) - length) for _ in range(per_source)]
        passages[name] = [tokenizer.decode(ids[s:s + length]) for s in starts]
    return passages


def prompts_from(tokenizer, n: int, rng: random.Random, length: int = 24) -> list[str]:
    from luoxia.data.corpora import corpus_documents

    ids = [i for d in corpus_documents("pydoc") for i in tokenizer.encode(d.text + "\n")]
    return [tokenizer.decode(ids[s:s + length]) for s in (rng.randrange(0, len(ids) - length) for _ in range(n))]


def substitute(ids: list[int], share: float, vocab_size: int, rng: random.Random) -> list[int]:
    ids = list(ids)
    for position in rng.sample(range(len(ids)), round(share * len(ids))):
        ids[position] = rng.randrange(vocab_size)
    return ids


def perplexity(generator, prompt_ids: list[list[int]], completions: list[list[int]]) -> float:
    """The model's perplexity of the completions given their prompts (no watermark)."""
    total, count = 0.0, 0
    for prompt, completion in zip(prompt_ids, completions, strict=True):
        ids = torch.tensor([(prompt + completion)[-generator.context_length:]])
        logits = generator.sequence_logits(ids)[0, :-1].float()
        targets = ids[0, 1:]
        nll = torch.nn.functional.cross_entropy(logits, targets, reduction="none")[-len(completion):]
        total, count = total + nll.sum().item(), count + len(completion)
    return math.exp(total / count)


def no_end_of_text(eos_id: int | None):
    """A logits processor that forbids end-of-text, so every generation has the full length."""
    def processor(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits if eos_id is None else logits.index_fill(-1, torch.tensor([eos_id]), float("-inf"))
    return processor


def rates(detections) -> dict:
    positives = [d.watermarked for d in detections]
    return {"rate": round(sum(positives) / len(positives), 4), "n": len(positives),
            "mean_z": round(sum(d.z for d in detections) / len(detections), 3),
            "mean_tokens_scored": round(sum(d.tokens_scored for d in detections) / len(detections), 1)}


def main() -> None:
    from luoxia.generate.interface import GenerationConfig
    from luoxia.registry import load
    from luoxia.safety.watermark import (
        WatermarkConfig,
        WatermarkDetector,
        WatermarkLogitsProcessor,
        detect_ids,
        resolve_key,
    )

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--passages", type=int, default=600)
    parser.add_argument("--gamma", type=float, default=0.25)
    parser.add_argument("--delta", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="keep the trained model here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model_dir = args.model or train_model((args.keep or Path(tmp)) / "pydoc-bpe")
        train_seconds = time.perf_counter() - started
        generator = load(model_dir, device="cpu")
        tokenizer = generator.tokenizer
        key, config = resolve_key(), WatermarkConfig(gamma=args.gamma, delta=args.delta)
        detector = WatermarkDetector(tokenizer, key, config)
        prompts = prompts_from(tokenizer, args.generations, rng)
        marked, plain = [], []
        full_length = no_end_of_text(tokenizer.eos_id)
        for start in range(0, len(prompts), args.batch):
            batch = prompts[start:start + args.batch]
            sampling = GenerationConfig(max_new_tokens=args.tokens, temperature=1.0, seed=start)
            marked += generator.generate(batch, sampling, [full_length, WatermarkLogitsProcessor(key, config)])
            plain += generator.generate(batch, sampling, [full_length])
        human = human_passages(tokenizer, args.passages, args.tokens, rng)
        result = {
            "benchmark": "watermark", "model": str(args.model or "pydoc BPE GPT trained here"),
            "train_seconds": round(train_seconds, 1), "gamma": args.gamma, "delta": args.delta, "z_threshold": 4.0,
            "tokens": args.tokens, "key": "demo" if key.is_demo else key.key_id,
            "tpr": rates([detector.detect(r.text) for r in marked]),
            "unwatermarked_same_model_fpr": rates([detector.detect(r.text) for r in plain]),
            "human_fpr": {name: rates([detector.detect(t) for t in texts]) for name, texts in human.items()},
        }
        all_human = [detector.detect(t) for texts in human.values() for t in texts]
        result["human_fpr_all"] = rates(all_human)
        for share in (0.1, 0.2):
            attacked = [tokenizer.decode(substitute(r.token_ids, share, tokenizer.vocab_size, rng)) for r in marked]
            result[f"tpr_after_{int(share * 100)}pct_substitution"] = rates([detector.detect(t) for t in attacked])
        result["tpr_token_ids"] = rates([detect_ids(r.token_ids, key, config) for r in marked])
        prompt_ids = [tokenizer.encode(p) for p in prompts]
        ppl_plain = perplexity(generator, prompt_ids, [r.token_ids for r in plain])
        ppl_marked = perplexity(generator, prompt_ids, [r.token_ids for r in marked])
        result["perplexity"] = {"unwatermarked": round(ppl_plain, 3), "watermarked": round(ppl_marked, 3),
                                "ratio": round(ppl_marked / ppl_plain, 3)}
        result["threads"] = torch.get_num_threads()
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
