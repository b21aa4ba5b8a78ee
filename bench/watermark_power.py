"""Text watermark power: TPR/FPR against length, vocabulary size, temperature, edits and detector settings.

    python bench/watermark_power.py [--char-model RUN] [--bpe-model RUN] [--vocabs char,bpe] [--samples 100]
                                    [--lengths 50,100,200,400,1000] [--temperatures 0.7,1.0] [--shares 0.1,0.2,0.3]
                                    [--schemes 0.25:2,0.25:3,0.25:4,0.5:2] [--entropy-thresholds 0,0.3,0.6,1.0]
                                    [--human 200] [--keep DIR]

Models: ``--char-model`` (else configs/lm/shakespeare_char.yaml trained here, 65 characters, 250 steps)
and ``--bpe-model`` (else configs/lm/pydoc.yaml with a 2,048-token byte-level BPE, ``--bpe-steps``).
For each model, temperature and scheme (γ:δ), ``--samples`` continuations of the longest length are
sampled with the watermark and without (same seeds, no end-of-text, batched), 10/20/30% of each run
of 10 tokens replaced by random tokens, decoded and re-tokenized as `luoxia watermark detect` reads
them, and cut to each length. Detection at z ≥ 4 (and 3: ``--z-thresholds``), each (previous,
token) pair once; with an entropy threshold > 0 only tokens the model predicted with at least that
entropy are scored (SWEET).
FPR: unwatermarked output of the same model, and human text (Tiny Shakespeare's validation tail for
the character model; Tiny Shakespeare and pydoc prose for BPE) of the same token lengths.
Perplexity cost: the model's own perplexity of watermarked vs unwatermarked continuations.
``summary`` gives, per model/temperature/scheme/entropy threshold, the shortest length meeting
TPR ≥ 0.98 clean and ≥ 0.90 after 20% substitutions with FPR ≤ 0.01 (model and human text).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from luoxia.data.corpora import corpus_documents
from luoxia.errors import DataError
from luoxia.registry import load, load_recipe
from luoxia.safety.watermark import (
    WatermarkConfig,
    WatermarkLogitsProcessor,
    detect_ids,
    next_token_log_probs,
    resolve_key,
)
from luoxia.safety.watermark_calibration import retokenized, sample_ids, substitute
from luoxia.train.lm import train_lm

RECIPES = {"char": ("configs/lm/shakespeare_char.yaml", []),
           "bpe": ("configs/lm/pydoc.yaml", ["data.tokenizer=bpe", "data.vocab_size=2048", "data.min_frequency=1"])}
HUMAN = {"char": ("shakespeare",), "bpe": ("shakespeare", "pydoc")}


def train(vocab: str, out_dir: Path, steps: int) -> Path:
    recipe, overrides = RECIPES[vocab]
    train_lm(load_recipe(recipe, [f"out_dir={out_dir}", "progress=false", f"train.max_steps={steps}", *overrides]))
    return out_dir


def human_passages(tokenizer, vocab: str, n: int, length: int, rng: random.Random) -> list[list[int]]:
    """``n`` passages of ``length`` tokens; for Shakespeare only its last 10% (the model's validation text)."""
    pools = []
    for name in HUMAN[vocab]:
        try:
            text = "\n".join(d.text for _, d in zip(range(3000), corpus_documents(name), strict=False))
        except DataError:
            continue
        if name == "shakespeare":
            text = text[int(0.9 * len(text)):]
        pools.append(tokenizer.encode(text))
    if not pools:
        return []
    return [ids[s:s + length] for ids in pools for s in (rng.randrange(len(ids) - length)
                                                          for _ in range(-(-n // len(pools))))][:n]


def analysed(generator, ids: list[int], prefix: list[int] | None = None) -> tuple[np.ndarray, float]:
    """Entropy before each token of ``ids`` and their summed NLL, given ``prefix`` before them."""
    head = prefix or []
    log_probs = next_token_log_probs(generator, head + ids)[len(head):]
    entropies = (-(log_probs.exp() * log_probs).sum(-1)).numpy()
    targets = torch.tensor(ids)
    nll = -log_probs[torch.arange(len(ids)), targets]
    return entropies, float(nll[0 if head else 1:].sum())


def rates(items: list[tuple[list[int], np.ndarray]], key, config: WatermarkConfig, lengths: list[int],
          thresholds: list[float], z_thresholds: list[float]) -> dict:
    """{entropy threshold: {z threshold: {length: share detected}}}."""
    out: dict = {}
    for threshold in thresholds:
        cfg = config.model_copy(update={"entropy_threshold": threshold})
        zs = {n: np.array([detect_ids(ids[:n], key, cfg, ent[:n]).z for ids, ent in items]) for n in lengths}
        out[str(threshold)] = {str(z): {str(n): round(float(np.mean(zs[n] >= z)), 4) for n in lengths}
                               for z in z_thresholds}
    return out


def shortest(clean: dict, edited: dict, fprs: list[dict], lengths: list[int]) -> int | None:
    best = None
    for n in reversed(lengths):
        k = str(n)
        if clean[k] < 0.98 or edited[k] < 0.90 or any(f[k] > 0.01 for f in fprs):
            break
        best = n
    return best


def run_vocab(vocab: str, model_dir: Path, args, key) -> tuple[dict, list]:
    generator = load(model_dir, device="cpu")
    tok, top = generator.tokenizer, max(args.lengths)
    rng = random.Random(0)
    prompt = generator.prompt_ids("")
    result: dict = {"model": str(model_dir), "vocab_size": tok.vocab_size, "context": generator.context_length}
    human = [(ids, analysed(generator, ids)[0]) for ids in human_passages(tok, vocab, args.human, top, rng)]
    result["human_passages"] = len(human)
    gammas = sorted({g for g, _ in args.schemes})
    grid = (args.lengths, args.entropy_thresholds, args.z_thresholds)
    result["human_fpr"] = {str(g): rates(human, key, WatermarkConfig(gamma=g), *grid) for g in gammas}
    summary = []
    for temperature in args.temperatures:
        started = time.perf_counter()
        plain = sample_ids(generator, [""] * args.samples, top, temperature, 0)
        plain_items = [(retokenized(tok, ids), None) for ids in plain]
        plain_items = [(ids, analysed(generator, ids)[0]) for ids, _ in plain_items]
        plain_nll = sum(analysed(generator, ids, prompt)[1] for ids in plain)
        per_t: dict = {"unwatermarked_fpr": {str(g): rates(plain_items, key, WatermarkConfig(gamma=g), *grid)
                                             for g in gammas}}
        for gamma, delta in args.schemes:
            config = WatermarkConfig(gamma=gamma, delta=delta)
            marked = sample_ids(generator, [""] * args.samples, top, temperature, 0,
                                [WatermarkLogitsProcessor(key, config)])
            marked_nll = sum(analysed(generator, ids, prompt)[1] for ids in marked)
            count = args.samples * top
            cell = {"perplexity": {"unwatermarked": round(math.exp(plain_nll / count), 3),
                                   "watermarked": round(math.exp(marked_nll / count), 3),
                                   "ratio": round(math.exp((marked_nll - plain_nll) / count), 3)}}
            for share in [0.0, *args.shares]:
                edit_rng = random.Random(1)
                texts = [retokenized(tok, substitute(ids, share, tok.vocab_size, edit_rng)) if share else
                         retokenized(tok, ids) for ids in marked]
                items = [(ids, analysed(generator, ids)[0]) for ids in texts]
                cell[f"tpr_sub{int(share * 100)}"] = rates(items, key, config, *grid)
            name = f"g{gamma}_d{delta}"
            per_t[name] = cell
            print(f"{vocab} T{temperature} {name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            for threshold, z in ((str(e), str(z)) for e in args.entropy_thresholds for z in args.z_thresholds):
                fprs = [per_t["unwatermarked_fpr"][str(gamma)][threshold][z]]
                if human:
                    fprs.append(result["human_fpr"][str(gamma)][threshold][z])
                clean, edited = cell["tpr_sub0"][threshold][z], cell["tpr_sub20"][threshold][z]
                summary.append({"vocab": vocab, "temperature": temperature, "gamma": gamma, "delta": delta,
                                "entropy_threshold": float(threshold), "z_threshold": float(z),
                                "min_tokens": shortest(clean, edited, fprs, args.lengths),
                                "tpr_200": clean.get("200"), "tpr_200_sub20": edited.get("200"),
                                "max_fpr_200": max(f.get("200", 0.0) for f in fprs),
                                "ppl_ratio": cell["perplexity"]["ratio"]})
        per_t["seconds"] = round(time.perf_counter() - started, 1)
        result[f"T{temperature}"] = per_t
    return result, summary


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--char-model", type=Path)
    parser.add_argument("--bpe-model", type=Path)
    parser.add_argument("--vocabs", default="char,bpe")
    parser.add_argument("--char-steps", type=int, default=250)
    parser.add_argument("--bpe-steps", type=int, default=500)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--lengths", type=lambda t: [int(x) for x in floats(t)], default=[50, 100, 200, 400, 1000])
    parser.add_argument("--temperatures", type=floats, default=[0.7, 1.0])
    parser.add_argument("--shares", type=floats, default=[0.1, 0.2, 0.3])
    parser.add_argument("--schemes", type=lambda t: [tuple(floats(s.replace(":", ","))) for s in t.split(",")],
                        default=[(0.25, 2.0), (0.25, 3.0), (0.25, 4.0), (0.5, 2.0)])
    parser.add_argument("--entropy-thresholds", type=floats, default=[0.0, 0.3, 0.6, 1.0])
    parser.add_argument("--z-thresholds", type=floats, default=[4.0, 3.0])
    parser.add_argument("--human", type=int, default=200)
    parser.add_argument("--keep", type=Path, help="keep the trained models here")
    args = parser.parse_args()
    torch.manual_seed(0)
    key = resolve_key()
    out: dict = {"benchmark": "watermark_power", "key": "demo" if key.is_demo else key.key_id, 
                 "samples": args.samples, "threads": torch.get_num_threads(), "summary": []}
    with tempfile.TemporaryDirectory() as tmp:
        for vocab in args.vocabs.split(","):
            started = time.perf_counter()
            given = getattr(args, f"{vocab}_model")
            steps = args.char_steps if vocab == "char" else args.bpe_steps
            model_dir = given or train(vocab, (args.keep or Path(tmp)) / f"{vocab}-watermark", steps)
            train_seconds = 0.0 if given else time.perf_counter() - started
            result, summary = run_vocab(vocab, model_dir, args, key)
            out[vocab] = {**result, "train_seconds": round(train_seconds, 1)}
            out["summary"] += summary
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
