"""``luoxia prepare``: corpus → clean → dedup → split → tokenizer → packed token files.

A prepared directory holds ``tokenizer.json``, ``train.bin``, ``val.bin`` and ``meta.json``
(vocabulary size, token and document counts, source hashes and the config that made it).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from luoxia.config import Config
from luoxia.data.clean import Normalization, clean_and_dedup
from luoxia.data.corpora import BUILTIN_CORPORA, SHARED_CORPORA, corpus_documents, shared_data_dir
from luoxia.data.packed import read_meta, token_dtype, write_meta, write_tokens
from luoxia.data.readers import Format, TextUnit, list_files
from luoxia.data.tokenizer import TextTokenizer, TokenizerKind, train_tokenizer
from luoxia.errors import ConfigError, DataError

# text → (text with personal data masked, spans masked): `luoxia.safety.pii.mask_pii`, passed in from
# above so that data/ never imports safety/.
Mask = Callable[[str], tuple[str, int]]


class DataConfig(Config):
    """Where the text comes from and how it becomes token ids."""

    corpus: str | list[str] = Field("pydoc", description="corpus name (pydoc, stdlib, shakespeare, poems) or paths")
    format: Format = Field("auto", description="file format; auto reads the suffix (.txt, .jsonl, .csv, .gz)")
    field: str | None = Field(None, description="JSONL field or CSV column holding the text (default 'text')")
    text_unit: TextUnit = Field("file", description="for plain text: one document per file, paragraph or line")
    with_titles: bool = Field(False, description="JSONL: keep each record's 'title' as its text's first line, "
                              "《title》 (Tang poems with titles as prompts: luoxia write)")
    normalization: Normalization = Field("NFC", description="Unicode normalisation form")
    dedup: bool = Field(True, description="drop exact and near-duplicate documents")
    near_dup_threshold: float | None = Field(0.8, description="MinHash Jaccard threshold; null = exact only")
    tokenizer: TokenizerKind = Field("bpe", description="char or byte-level bpe")
    vocab_size: int | None = Field(2048, description="BPE vocabulary size (ignored by char)")
    min_frequency: int = Field(1, ge=1, description="char: rarer characters become <unk>; bpe: rarer pairs "
                               "are not merged")
    eos: bool = Field(True, description="add <|endoftext|> between documents")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of data held out for validation")
    split: Literal["auto", "documents", "tail"] = Field(
        "auto", description="documents: a seeded share of documents; tail: the last share of the token stream "
        "(the nanoGPT split); auto: tail for a single document, else documents")
    seed: int = Field(1337, description="seed of the document split")
    max_documents: int | None = Field(None, description="read at most this many documents")
    redact_pii: bool = Field(False, description="mask personal data (e-mails, phones, IDs, cards, keys…) with "
                             "type tags before anything else")

    @field_validator("near_dup_threshold")
    @classmethod
    def _threshold_range(cls, value: float | None) -> float | None:
        if value is not None and not 0 < value <= 1:
            raise ValueError("must be in (0, 1] or null")
        return value


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def source_hashes(config: DataConfig) -> list[dict[str, str | int]]:
    """The sha256 of every input file, so a prepared directory says exactly what it was made from."""
    corpus = config.corpus
    if isinstance(corpus, str) and corpus in BUILTIN_CORPORA:
        digest = hashlib.sha256()
        for document in BUILTIN_CORPORA[corpus]():
            digest.update(document.text.encode("utf-8"))
        return [{"source": corpus, "sha256": digest.hexdigest()}]
    if isinstance(corpus, str) and corpus in SHARED_CORPORA:
        base = shared_data_dir()
        paths = [base / SHARED_CORPORA[corpus].relative_path] if base else []
    else:
        given_paths = [corpus] if isinstance(corpus, str) else corpus
        paths = [file for given in given_paths for file in list_files(Path(given))]
    return [{"source": str(p), "bytes": p.stat().st_size, "sha256": _sha256_file(p)} for p in paths if p.exists()]


def split_documents(texts: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded, order-preserving split: the same documents go to validation on every run."""
    n_val = max(1, math.ceil(len(texts) * val_fraction))
    rng = np.random.default_rng(seed)
    val_index = set(rng.permutation(len(texts))[:n_val].tolist())
    train = [t for i, t in enumerate(texts) if i not in val_index]
    val = [t for i, t in enumerate(texts) if i in val_index]
    return train, val


def encode_stream(tokenizer: TextTokenizer, texts: list[str]) -> np.ndarray:
    """Concatenate documents with ``<|endoftext|>`` (or a blank line if there is none) between them."""
    pieces: list[int] = []
    for i, ids in enumerate(tokenizer.encode_batch(texts)):
        if i:
            pieces.extend([tokenizer.eos_id] if tokenizer.eos_id is not None else tokenizer.encode("\n\n"))
        pieces.extend(ids)
    return np.asarray(pieces, dtype=np.int64)


def _split_tokens(config: DataConfig, tokenizer: TextTokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    mode = config.split if config.split != "auto" else ("tail" if len(texts) == 1 else "documents")
    if mode == "documents":
        if len(texts) < 2:
            raise DataError("split 'documents' needs at least 2 documents; use split=tail")
        train_texts, val_texts = split_documents(texts, config.val_fraction, config.seed)
        return encode_stream(tokenizer, train_texts), encode_stream(tokenizer, val_texts)
    stream = encode_stream(tokenizer, texts)
    cut = int(len(stream) * (1 - config.val_fraction))
    return stream[:cut], stream[cut:]


def redact_texts(texts: list[str], mask: Mask) -> tuple[list[str], int]:
    """The texts through ``mask``, and how many spans it masked in all."""
    results = [mask(text) for text in texts]
    return [text for text, _ in results], sum(count for _, count in results)


def corpus_label(config: DataConfig) -> str:
    return config.corpus if isinstance(config.corpus, str) else ", ".join(config.corpus)


def require_out_dir(out_dir: str | Path) -> Path:
    """``out_dir`` when it is, or can become, a directory: checked before the corpus is read, so that a
    file in its place is a one-line error, not a traceback after minutes of work."""
    out = Path(out_dir)
    for path in (out, *out.parents):
        if path.exists():
            if not path.is_dir():
                where = "is a file" if path == out else f"is inside {path}, which is a file"
                raise DataError(f"{out} {where}; prepared data goes into a directory (tokenizer.json, train.bin, "
                                "val.bin, meta.json)")
            break
    return out


def prepare(config: DataConfig, out_dir: str | Path, mask: Mask | None = None, specials: Sequence[str] = ()) -> dict:
    """Run the whole pipeline into ``out_dir`` and return its ``meta.json`` contents. ``mask`` masks
    personal data when ``config.redact_pii`` asks for it (the CLI passes `luoxia.safety.pii.mask_pii`);
    ``specials`` are extra tokenizer specials taking the first ids (the masked LM's, `luoxia.data.mlm`)."""
    out = require_out_dir(out_dir)
    documents = corpus_documents(config.corpus, config.format, config.field, config.text_unit, config.with_titles)
    raw_texts = [d.text for _, d in zip(range(config.max_documents or 2**62), documents, strict=False)]
    pii_found = 0
    if config.redact_pii:
        if mask is None:
            raise ConfigError("redact_pii is set but no personal-data masker was given "
                              "(pass mask=luoxia.safety.pii.mask_pii)")
        raw_texts, pii_found = redact_texts(raw_texts, mask)
    texts, stats = clean_and_dedup(raw_texts, config.normalization, config.near_dup_threshold, config.dedup,
                                   config.seed)
    if not texts:
        raise DataError(f"{corpus_label(config)}: empty corpus after cleaning "
                        f"({len(raw_texts)} documents read, none with text left)")
    tokenizer = train_tokenizer(config.tokenizer, texts, config.vocab_size, eos=config.eos,
                                min_frequency=config.min_frequency, specials=specials)
    train_ids, val_ids = _split_tokens(config, tokenizer, texts)
    out.mkdir(parents=True, exist_ok=True)
    write_tokens(out / "train.bin", train_ids, tokenizer.vocab_size)
    write_tokens(out / "val.bin", val_ids, tokenizer.vocab_size)
    tokenizer.save(out)
    meta = {
        "vocab_size": tokenizer.vocab_size,
        "dtype": str(token_dtype(tokenizer.vocab_size)),
        "tokenizer": config.tokenizer,
        "eos_id": tokenizer.eos_id,
        "counts": {
            "documents_read": len(raw_texts),
            "documents": len(texts),
            "characters": sum(len(t) for t in texts),
            "train_tokens": int(len(train_ids)),
            "val_tokens": int(len(val_ids)),
        },
        "dedup": asdict(stats),
        "pii_redacted": pii_found,
        "sources": source_hashes(config),
        "config": config.model_dump(mode="json"),
    }
    if specials:
        meta["specials"] = list(specials)
    write_meta(out, meta)
    return meta


def is_prepared(config: DataConfig, out_dir: str | Path, specials: Sequence[str] = ()) -> bool:
    """True if ``out_dir`` already holds data made from this config, these specials and these exact sources."""
    try:
        meta = read_meta(out_dir)
    except DataError:
        return False
    return (meta.get("config") == config.model_dump(mode="json") and meta.get("specials", []) == list(specials)
            and meta.get("sources") == source_hashes(config))


def prepare_cached(config: DataConfig, out_dir: str | Path, mask: Mask | None = None,
                   specials: Sequence[str] = ()) -> dict:
    """Prepare unless an identical preparation is already there."""
    if is_prepared(config, out_dir, specials):
        return read_meta(out_dir)
    return prepare(config, out_dir, mask, specials)
