"""Green-list watermark for generated text (Kirchenbauer et al. 2023, "A Watermark for Large
Language Models"), with a detector that needs only the tokenizer and the key.

Generation: before each token, the previous token and a secret key pick a "green" share γ of the
vocabulary, and δ is added to the green logits. Text written that way holds far more green tokens
than chance; human text holds about γ. Detection counts green tokens and returns the one-sided
z-score z = (G − γT) / √(T γ (1 − γ)) and its p-value. As the paper recommends, each (previous
token, token) pair is scored once, so repeated phrases cannot inflate z.

The green list is a keyed hash, not a seeded permutation (the paper's and transformers' choice):
``green(key, prev, v) = hash(key, prev, v) < γ`` is a few vectorised integer operations per row, the
same on every device, and the detector never builds a random number generator. Keys are hex
strings of at least 128 bits; `resolve_key` finds them in a flag, a file or the environment, and
falls back to a public demo key so that generation and detection agree on one machine with no set-up.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from luoxia.config import Config
from luoxia.errors import ConfigError, LuoxiaError

KEY_ENV, KEY_FILE_ENV = "LUOXIA_WATERMARK_KEY", "LUOXIA_WATERMARK_KEY_FILE"
# Public on purpose: it lets `generate --watermark` and `watermark detect` agree out of the box.
# Anyone can read it, so anyone can detect and forge this watermark; set a real key for real use.
DEMO_KEY = "4c756f786961206465766f206b6579202d207075626c6963"  # "Luoxia demo key - public" in hex
_HEX_KEY = re.compile(r"[0-9a-fA-F]{32,256}")
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class WatermarkConfig(Config):
    """The watermark's strength and the detector's threshold; generator and detector must share γ."""

    gamma: float = Field(0.25, gt=0, lt=1, description="share of the vocabulary that is green")
    delta: float = Field(2.0, gt=0, description="added to the green logits")
    z_threshold: float = Field(4.0, gt=0, description="z-score from which text counts as watermarked")
    entropy_threshold: float = Field(0.0, ge=0, description="detection with the model at hand: score only tokens "
                                     "the model predicted with at least this entropy (nats); 0 scores every token")


@dataclass(frozen=True)
class WatermarkKey:
    """A secret key and where it came from. ``key_id`` (8 hex digits of its SHA-256) names the key in
    records without revealing it."""

    secret: bytes
    source: str

    @property
    def key_id(self) -> str:
        return hashlib.sha256(self.secret).hexdigest()[:8]

    @property
    def is_demo(self) -> bool:
        return self.secret == bytes.fromhex(DEMO_KEY)

    def seed64(self) -> np.uint64:
        return np.uint64(int.from_bytes(hashlib.sha256(b"luoxia-text-watermark" + self.secret).digest()[:8], "little"))


def parse_key(text: str, source: str) -> WatermarkKey:
    """A key from its hex form; anything else is an error that says what a key looks like."""
    text = text.strip()
    if not _HEX_KEY.fullmatch(text) or len(text) % 2:
        raise ConfigError(f"watermark key from {source}: expected an even number (32 to 256) of hex digits, "
                          f"got {len(text)} characters{'' if text else ' (empty)'}; make one with "
                          "`python -c 'import secrets; print(secrets.token_hex(32))'`")
    return WatermarkKey(bytes.fromhex(text), source)


def find_key_text(key: str | None, key_file: str | Path | None, env: str, file_env: str, what: str
                  ) -> tuple[str, str] | None:
    """A secret's text and where it came from, first found of: ``key`` (``--key``), ``key_file``,
    ``$env``, ``$file_env``; None when none is set. Shared by the watermark and pseudonym keys."""
    if key is not None:
        return key, "--key"
    key_file = key_file or os.environ.get(file_env)
    if key_file:
        path = Path(key_file)
        if not path.is_file():
            raise ConfigError(f"{what} key file {path} does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    if os.environ.get(env):
        return os.environ[env], f"${env}"
    return None


def resolve_key(key: str | None = None, key_file: str | Path | None = None) -> WatermarkKey:
    """The key to use, first found of: ``key``, ``key_file``, $LUOXIA_WATERMARK_KEY,
    $LUOXIA_WATERMARK_KEY_FILE, the public demo key."""
    found = find_key_text(key, key_file, KEY_ENV, KEY_FILE_ENV, "watermark")
    return parse_key(*found) if found else parse_key(DEMO_KEY, "the public demo key")


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection on 64-bit integers whose output bits all depend on all
    input bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _MASK64
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _MASK64
    return x ^ (x >> np.uint64(31))


def green_mask(key: WatermarkKey, previous: np.ndarray, candidates: np.ndarray, gamma: float) -> np.ndarray:
    """Whether each candidate token is green after each previous token: broadcasting (…) × (…) → bool."""
    with np.errstate(over="ignore"):  # wrapping multiplication is the point
        prev = _mix(np.asarray(previous, dtype=np.uint64) ^ key.seed64())
        h = _mix(prev ^ (np.asarray(candidates, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) & _MASK64))
    return (h >> np.uint64(11)).astype(np.float64) / 2.0**53 < gamma


class WatermarkLogitsProcessor:
    """Adds δ to the green logits of each row, green lists keyed by the row's last token. Called as
    ``processor(input_ids (B, t), logits (B, V))`` — the signature of Luoxia's and transformers'
    logits processors, so it works with both."""

    def __init__(self, key: WatermarkKey, config: WatermarkConfig | None = None):
        self.key, self.config = key, config or WatermarkConfig()
        self._green: dict[tuple[int, int], torch.Tensor] = {}  # (previous token, vocab size) → bool (V,)

    def green_list(self, previous: int, vocab_size: int) -> torch.Tensor:
        cached = self._green.get((previous, vocab_size))
        if cached is None:
            mask = green_mask(self.key, np.array(previous), np.arange(vocab_size), self.config.gamma)
            cached = self._green[(previous, vocab_size)] = torch.from_numpy(mask)
        return cached

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        vocab = logits.size(-1)
        green = torch.stack([self.green_list(int(p), vocab) for p in input_ids[:, -1].tolist()])
        return logits + self.config.delta * green.to(device=logits.device, dtype=logits.dtype)


SCHEME = "kgw-prev1"  # the green-list function: one previous token, the SplitMix64 hash above; unchanged since v0.1


@dataclass
class Detection:
    """What the detector found in one text. ``watermarked`` is None ("too short to decide") when the
    text has fewer tokens than ``min_tokens``, the length from which the detector was measured to be
    reliable on this model (`luoxia watermark calibrate`)."""

    z: float
    p_value: float
    green_fraction: float
    tokens_scored: int
    watermarked: bool | None
    key_id: str
    gamma: float
    tokens: int = 0
    min_tokens: int | None = None
    entropy_threshold: float = 0.0
    scheme: str = SCHEME

    @property
    def verdict(self) -> str:
        if self.watermarked is None:
            return "too short to decide"
        return "watermarked" if self.watermarked else "not watermarked"

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(z=round(self.z, 4), green_fraction=round(self.green_fraction, 4),
                    p_value=float(f"{self.p_value:.3g}"), verdict=self.verdict)
        return data


def scored_pairs(ids: Sequence[int], entropies: np.ndarray | None, threshold: float) -> list[tuple[int, int]]:
    """The distinct (previous, token) pairs to score; with ``threshold`` > 0 only those whose token the
    model predicted with entropy ≥ threshold (SWEET, Lee et al. 2023: low-entropy tokens carry no mark)."""
    if threshold > 0 and entropies is None:
        raise LuoxiaError("entropy-aware detection (entropy_threshold > 0) needs the model's entropies: "
                          "pass the model, or set entropy_threshold to 0")
    if threshold > 0 and len(entropies) != len(ids):
        raise LuoxiaError(f"{len(entropies)} entropies for {len(ids)} tokens")
    keep = range(1, len(ids)) if threshold <= 0 else [i for i in range(1, len(ids)) if entropies[i] >= threshold]
    return sorted({(int(ids[i - 1]), int(ids[i])) for i in keep})


def detect_ids(ids: Sequence[int], key: WatermarkKey, config: WatermarkConfig | None = None,
               entropies: np.ndarray | None = None, min_tokens: int | None = None) -> Detection:
    """Score a token sequence: each distinct (previous, token) pair once (only high-entropy ones when
    ``config.entropy_threshold`` > 0; ``entropies[i]`` is the model's entropy before token i)."""
    config = config or WatermarkConfig()
    if len(ids) < 2:
        raise LuoxiaError(f"nothing to score: the text is {len(ids)} token(s) long; the detector needs at least 2")
    pairs, gamma = scored_pairs(ids, entropies, config.entropy_threshold), config.gamma
    scored = len(pairs)
    green = int(green_mask(key, *np.array(pairs, dtype=np.int64).T, gamma).sum()) if pairs else 0
    z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma)) if scored else 0.0
    short = min_tokens is not None and len(ids) < min_tokens
    return Detection(z=z, p_value=0.5 * math.erfc(z / math.sqrt(2)), green_fraction=green / max(scored, 1),
                     tokens_scored=scored, watermarked=None if short else z >= config.z_threshold,
                     key_id=key.key_id, gamma=gamma, tokens=len(ids), min_tokens=min_tokens,
                     entropy_threshold=config.entropy_threshold)


@torch.no_grad()
def next_token_log_probs(generator, ids: Sequence[int]) -> torch.Tensor:
    """(len(ids), V) float32: row i is the model's log-distribution of token i given the tokens before
    it (row 0 is NaN). Longer texts go through windows of the model's context overlapping by half
    (in one batch), so every token but the first ``context/2`` sees at least half a context."""
    n, width = len(ids), generator.context_length
    step = max(1, width // 2)
    starts = [0] + list(range(step, max(n - width, 0) + step, step)) if n > width else [0]
    windows = [list(ids[s:s + width]) for s in starts]
    full = [w for w in windows if len(w) == width]
    logits = [generator.sequence_logits(torch.tensor(full)).float()] if len(full) > 1 else []
    logits = list(logits[0]) if logits else [generator.sequence_logits(torch.tensor([w]))[0].float() for w in full]
    logits += [generator.sequence_logits(torch.tensor([w]))[0].float() for w in windows[len(full):]]
    rows: torch.Tensor | None = None
    for start, window_logits in zip(starts, logits, strict=True):
        log_probs = window_logits.log_softmax(-1).cpu()  # row j predicts token start + j + 1
        if rows is None:
            rows = torch.full((n, log_probs.size(-1)), float("nan"))
        targets = torch.arange(start + 1, start + 1 + log_probs.size(0))
        fresh = (targets < n) & (targets >= start + 1 + (0 if start == 0 else width - step))
        rows[targets[fresh]] = log_probs[fresh]
    return rows


def token_entropies(generator, ids: Sequence[int]) -> np.ndarray:
    """The model's entropy (nats) before each token (NaN before the first): what SWEET scores by."""
    log_probs = next_token_log_probs(generator, ids)
    return (-(log_probs.exp() * log_probs).sum(-1)).numpy()


class WatermarkDetector:
    """Detects the watermark in text with a tokenizer (anything with ``encode(text) -> ids``) and the
    key; with ``model`` (a `TextGenerator` with ``sequence_logits``) it can skip low-entropy tokens;
    with ``min_tokens`` a shorter text is "too short to decide"."""

    def __init__(self, tokenizer, key: WatermarkKey, config: WatermarkConfig | None = None, model=None,
                 min_tokens: int | None = None):
        self.tokenizer, self.key, self.config = tokenizer, key, config or WatermarkConfig()
        self.model, self.min_tokens = model, min_tokens
        if self.config.entropy_threshold > 0 and not hasattr(model, "sequence_logits"):
            raise ConfigError("entropy-aware detection (entropy_threshold > 0) needs the model, not only its "
                              "tokenizer; set entropy_threshold to 0 for plain detection")

    def detect(self, text: str) -> Detection:
        if not text.strip():
            raise LuoxiaError("nothing to score: the text is empty")
        ids = self.tokenizer.encode(text)
        entropies = token_entropies(self.model, ids) if self.config.entropy_threshold > 0 and len(ids) > 1 else None
        return detect_ids(ids, self.key, self.config, entropies, self.min_tokens)
