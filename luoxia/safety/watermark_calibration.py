"""How long a text must be before the watermark detector's verdict can be trusted, measured on one model.

`calibrate` samples watermarked and unwatermarked continuations from the model, cuts them to a grid of
lengths, replaces 20% of the tokens of the watermarked ones at random, and finds the shortest length
from which (at every longer grid length too) the detector finds ≥ 98% of the clean texts and ≥ 90% of
the edited ones while flagging ≤ 1% of the unwatermarked ones. Measured, not derived from a formula:
the green rate of a model's text depends on its entropy, its vocabulary and the sampling, which only
sampling shows. The result is stored beside the model (`watermark_calibration.json`, written
atomically) and `luoxia watermark detect` answers "too short to decide" below it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from luoxia.checkpoint import atomic_write_text
from luoxia.errors import LuoxiaError
from luoxia.generate.interface import GenerationConfig
from luoxia.safety.watermark import (
    SCHEME,
    WatermarkConfig,
    WatermarkKey,
    WatermarkLogitsProcessor,
    detect_ids,
    token_entropies,
)

CALIBRATION_FILE = "watermark_calibration.json"
LENGTHS = (25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1000)
TARGETS = {"tpr_clean": 0.98, "tpr_edited": 0.90, "fpr": 0.01, "edit_share": 0.2}


def substitute(ids: Sequence[int], share: float, vocab_size: int, rng: random.Random, block: int = 10) -> list[int]:
    """``ids`` with ``share`` of each run of ``block`` tokens replaced by uniformly random tokens (a
    different one each time), so that every prefix a multiple of ``block`` long is edited exactly that much."""
    out, per_block = list(ids), round(share * block)
    for start in range(0, len(out), block):
        span = range(start, min(start + block, len(out)))
        for i in rng.sample(span, min(per_block, len(span))):
            other = rng.randrange(vocab_size - 1) if vocab_size > 1 else ids[i]
            out[i] = other + (vocab_size > 1 and other >= ids[i])
    return out


def no_end_of_text(eos_id: int | None):
    """A logits processor that forbids end-of-text, so every sample has the full length."""
    def processor(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits if eos_id is None else logits.index_fill(-1, torch.tensor([eos_id], device=logits.device),
                                                               float("-inf"))
    return processor


def sample_ids(generator, prompts: Sequence[str], tokens: int, temperature: float, seed: int,
               processors: Sequence = (), batch: int = 50) -> list[list[int]]:
    """Continuations of ``tokens`` tokens (no end-of-text), batched, row i seeded ``seed + i``."""
    out: list[list[int]] = []
    full = no_end_of_text(generator.tokenizer.eos_id)
    for start in range(0, len(prompts), batch):
        config = GenerationConfig(max_new_tokens=tokens, temperature=temperature, seed=seed + start)
        out += [r.token_ids for r in generator.generate(list(prompts[start:start + batch]), config,
                                                         [full, *processors])]
    return out


def retokenized(tokenizer, ids: Sequence[int]) -> list[int]:
    """The ids the detector sees: the text decoded and encoded again, as `watermark detect` reads it."""
    return list(tokenizer.encode(tokenizer.decode(list(ids))))


def detection_rate(generator, texts: Sequence[Sequence[int]], length: int, key: WatermarkKey,
                   config: WatermarkConfig) -> float:
    """Share of ``texts`` cut to ``length`` tokens that the detector calls watermarked."""
    hits = 0
    for ids in texts:
        cut = list(ids[:length])
        entropies = token_entropies(generator, cut) if config.entropy_threshold > 0 else None
        hits += bool(detect_ids(cut, key, config, entropies).watermarked)
    return hits / max(len(texts), 1)


def shortest_reliable(table: list[dict]) -> int | None:
    """The shortest grid length from which every longer length meets the targets too; None if none does."""
    best = None
    for row in reversed(table):
        if row["tpr_clean"] < TARGETS["tpr_clean"] or row["tpr_edited"] < TARGETS["tpr_edited"] \
                or row["fpr"] > TARGETS["fpr"]:
            break
        best = row["tokens"]
    return best


def calibrate(generator, key: WatermarkKey, config: WatermarkConfig, samples: int = 100,
              max_tokens: int = 600, temperature: float = 1.0, seed: int = 0) -> dict:
    """Measure TPR (clean and after 20% substitutions) and FPR (same model, no watermark) at each grid
    length up to ``max_tokens``; return them with the shortest reliable length (``min_tokens``)."""
    if samples < 10 or max_tokens < LENGTHS[0]:
        raise LuoxiaError(f"calibration needs at least 10 samples and {LENGTHS[0]} tokens, "
                          f"got {samples} and {max_tokens}")
    prompts = [""] * samples
    marked = sample_ids(generator, prompts, max_tokens, temperature, seed, [WatermarkLogitsProcessor(key, config)])
    plain = sample_ids(generator, prompts, max_tokens, temperature, seed)
    rng, vocab = random.Random(seed), generator.tokenizer.vocab_size
    edited = [substitute(ids, TARGETS["edit_share"], vocab, rng) for ids in marked]
    views = {name: [retokenized(generator.tokenizer, ids) for ids in texts]
             for name, texts in (("clean", marked), ("edited", edited), ("plain", plain))}
    table = []
    for length in [n for n in LENGTHS if n <= max_tokens]:
        rates = {name: detection_rate(generator, texts, length, key, config) for name, texts in views.items()}
        table.append({"tokens": length, "tpr_clean": rates["clean"], "tpr_edited": rates["edited"],
                      "fpr": rates["plain"]})
    return {"scheme": SCHEME, "min_tokens": shortest_reliable(table), "targets": TARGETS,
            "config": config.model_dump(), "key_id": key.key_id, "samples": samples, "temperature": temperature,
            "seed": seed, "vocab_size": vocab, "table": table}


def save_calibration(model_dir: str | Path, calibration: dict) -> Path:
    path = Path(model_dir) / CALIBRATION_FILE
    atomic_write_text(path, json.dumps(calibration, indent=1) + "\n")
    return path


def load_calibration(model_dir: str | Path) -> dict | None:
    """The stored calibration of a model directory; None when it has none; a clear error when corrupt."""
    path = Path(model_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LuoxiaError(f"{path}: corrupt watermark calibration ({error}); run `luoxia watermark calibrate` "
                          "again or delete the file") from None
    if not isinstance(data, dict) or "min_tokens" not in data or not isinstance(data.get("config"), dict):
        raise LuoxiaError(f"{path}: not a watermark calibration (no min_tokens/config); run "
                          "`luoxia watermark calibrate` again or delete the file")
    return data


def calibrated_min_tokens(calibration: dict | None, config: WatermarkConfig) -> int | None:
    """The calibrated minimum length when it was measured with this detector's γ, z threshold and
    entropy threshold (another setting makes it meaningless); else None."""
    if calibration is None or calibration.get("scheme") != SCHEME:
        return None
    measured = calibration["config"]
    same = all(measured.get(name) == getattr(config, name) for name in ("gamma", "z_threshold", "entropy_threshold"))
    found = calibration["min_tokens"]
    if not same:
        return None
    # never reached within the grid: nothing the calibration measured is long enough
    return found if found is not None else int(calibration["table"][-1]["tokens"]) + 1 if calibration["table"] else None
