"""Character-level and byte-level BPE tokenizers, trained and saved with Hugging Face ``tokenizers``.

Both are stored as a standard ``tokenizer.json``, so ``tokenizers.Tokenizer.from_file`` and
``transformers.PreTrainedTokenizerFast(tokenizer_file=...)`` load them as they are.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from luoxia.errors import DataError
from luoxia.runs import TOKENIZER_FILE

TokenizerKind = Literal["char", "bpe"]

EOS_TOKEN = "<|endoftext|>"
UNK_TOKEN = "<unk>"


class TextTokenizer:
    """The small surface Luoxia needs from a tokenizer: encode, decode, vocabulary, end-of-text."""

    def __init__(self, tokenizer: Tokenizer):
        self.backend = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.eos_id: int | None = tokenizer.token_to_id(EOS_TOKEN)

    def encode(self, text: str) -> list[int]:
        try:
            return self.backend.encode(text, add_special_tokens=False).ids
        except Exception as error:  # the Rust side raises a bare Exception for unknown characters
            unknown = sorted({c for c in text if self.backend.token_to_id(c) is None})
            shown = "".join(unknown[:20])
            raise DataError(f"text has characters this tokenizer has never seen: {shown!r} ({error})") from None

    @property
    def is_char_level(self) -> bool:
        return isinstance(self.backend.model, models.WordLevel)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Encode many texts in parallel. Character-level tokenization has no context, so long
        texts are cut into lines first: the Rust side then spreads one big text over all cores."""
        if not self.is_char_level:
            pieces, owners = list(texts), list(range(len(texts)))
        else:
            lines = [t.splitlines(keepends=True) for t in texts]
            pieces = [line for text_lines in lines for line in text_lines]
            owners = [i for i, text_lines in enumerate(lines) for _ in text_lines]
        try:
            encoded = self.backend.encode_batch(pieces, add_special_tokens=False)
        except Exception:
            return [self.encode(text) for text in texts]  # re-run one by one to name the culprit
        ids: list[list[int]] = [[] for _ in texts]
        for owner, encoding in zip(owners, encoded, strict=True):
            ids[owner].extend(encoding.ids)
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """The id of a (special) token, or None if the vocabulary lacks it."""
        found: int | None = self.backend.token_to_id(token)
        return found

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        self.backend.save(str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TextTokenizer:
        path = Path(directory)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        if not path.is_file():
            raise DataError(f"{path}: tokenizer file not found")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as error:
            raise DataError(f"{path}: not a valid tokenizer.json ({error})") from None


def train_char_tokenizer(texts: Iterable[str], min_frequency: int = 1,
                         special_tokens: Sequence[str] = ()) -> TextTokenizer:
    """One token per character, ids in sorted character order after any special tokens.

    With no special tokens the vocabulary is exactly the corpus' characters (65 for Tiny
    Shakespeare, as in nanoGPT). Characters seen fewer than ``min_frequency`` times map to ``<unk>``.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text)
    chars = sorted(c for c, n in counts.items() if n >= min_frequency)
    specials = list(special_tokens)
    if len(chars) < len(counts):
        specials.append(UNK_TOKEN)
    if not chars:
        raise DataError("cannot train a tokenizer on an empty corpus")
    vocab = {token: i for i, token in enumerate([*specials, *chars])}
    model = models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN if UNK_TOKEN in vocab else None)
    tokenizer = Tokenizer(model)
    # Oniguruma's (?m) lets "." match newlines too, so every character becomes its own token.
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"(?m)."), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(specials)
    return TextTokenizer(tokenizer)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2,
                        special_tokens: Sequence[str] = (EOS_TOKEN,)) -> TextTokenizer:
    """Byte-level BPE (GPT-2 style): any text round-trips, including CJK and emoji."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if tokenizer.get_vocab_size() <= len(special_tokens):
        raise DataError("cannot train a tokenizer on an empty corpus")
    return TextTokenizer(tokenizer)


def train_tokenizer(kind: TokenizerKind, texts: Sequence[str], vocab_size: int | None = None,
                    eos: bool = True, min_frequency: int = 1, specials: Sequence[str] = ()) -> TextTokenizer:
    """Train the tokenizer a data config asks for. ``eos`` adds the end-of-text token that separates
    documents; a char tokenizer for a single-document corpus can do without it. ``specials`` take
    the first ids, in order, before end-of-text (the masked LM's ``[PAD] [CLS] [SEP] [MASK]``)."""
    specials = (*specials, EOS_TOKEN) if eos else tuple(specials)
    if kind == "char":
        return train_char_tokenizer(texts, min_frequency=min_frequency, special_tokens=specials)
    if kind == "bpe":
        if vocab_size is None or vocab_size < 257:
            raise DataError(f"a byte-level BPE tokenizer needs vocab_size ≥ 257, got {vocab_size}")
        if vocab_size < 256 + len(specials):
            raise DataError(f"a byte-level BPE tokenizer with {len(specials)} special tokens needs vocab_size ≥ "
                            f"{256 + len(specials)}, got {vocab_size}")
        return train_bpe_tokenizer(texts, vocab_size, min_frequency=max(2, min_frequency), special_tokens=specials)
    raise DataError(f"unknown tokenizer kind '{kind}'; valid: char, bpe")
