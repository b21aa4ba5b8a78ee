"""Abstractive summaries with length control: a fine-tuned (or remote) text model reads a prompt
that carries a length token, ``<len=N>``, N a bucket of the summary's length (words for English,
characters for Chinese). At inference N is the user's target (a length or a ratio of the input) or
what a small length head predicts from the input: a ridge regression on the input's length and
sentence count (and, optionally, its encoder vector), fitted on the training pairs and saved as
JSON beside the run — the tutorial's "a fully connected layer gives the summary length".

Also the data: SciTLDR and CSL as chat JSONL (document → summary) for `luoxia finetune`.
"""

from __future__ import annotations

import csv
import json
import math
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from luoxia.checkpoint import atomic_write_text
from luoxia.config import Config
from luoxia.data.corpora import resolve_data_path
from luoxia.encoders import Encoder
from luoxia.errors import ConfigError, DataError
from luoxia.generate.interface import GenerationConfig, TextGenerator

LENGTH_HEAD_FILE = "length_head.json"  # beside a fine-tuned run (or a prepared data directory)
BUCKET = 5  # length tokens step by 5 words (English) or 5 characters (Chinese)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[^\s\u3400-\u9fff\uf900-\ufaff]+")  # a run of non-space, non-CJK characters
_SENTENCE_END = re.compile(r"[.!?。！？]+")


class AbstractiveConfig(Config):
    """How a model is asked for a summary."""

    max_input_chars: int = Field(700, ge=16, description="the document is cut to this many characters so that "
                                 "prompt and summary fit a small model's context")
    max_new_tokens: int = Field(96, ge=1, description="tokens to generate at most")
    temperature: float = Field(0.0, ge=0, description="0: greedy (deterministic)")
    seed: int = Field(0, description="sampling seed (temperature > 0)")


def text_length(text: str) -> int:
    """A summary's length in the unit ROUGE scores it by: CJK characters plus other words."""
    return len(_CJK.findall(text)) + len(_WORD.findall(text))


def is_chinese(text: str) -> bool:
    """Whether most of ``text``'s length is CJK characters (lengths then count characters)."""
    return 2 * len(_CJK.findall(text)) > text_length(text)


def bucket(length: float) -> int:
    """The length token's value: ``length`` rounded to the nearest `BUCKET`, at least `BUCKET`."""
    return max(BUCKET, BUCKET * round(length / BUCKET))


def length_prompt(document: str, target: int, max_chars: int = AbstractiveConfig().max_input_chars) -> str:
    """The user message a model is trained and asked with: the length token, then the document."""
    return f"summarize <len={bucket(target)}>:\n{document.strip()[:max_chars]}"


def features(documents: Sequence[str], encoder: Encoder | None = None) -> np.ndarray:
    """(N, F) length-head inputs: log length, log sentence count (and the encoder's unit vector)."""
    rows = np.array([[math.log1p(text_length(d)), math.log1p(len(_SENTENCE_END.findall(d)))] for d in documents])
    if encoder is None:
        return rows
    return np.hstack([rows, encoder.encode(list(documents))])  # (N, 2 + D)


@dataclass
class LengthHead:
    """Predicts a summary's length (log scale) from its document: a linear layer fitted by ridge."""

    coef: list[float]
    intercept: float
    encoder: str | None = None  # the encoder name whose vectors it reads (None: lengths only)

    def predict(self, documents: Sequence[str], encoder: Encoder | None = None) -> list[int]:
        if self.encoder is not None and encoder is None:
            raise ConfigError(f"this length head reads '{self.encoder}' vectors: pass that encoder")
        x = features(documents, encoder if self.encoder is not None else None)  # (N, F)
        return [max(1, round(math.expm1(v))) for v in x @ np.array(self.coef) + self.intercept]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.__dict__, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> LengthHead:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls(list(map(float, data["coef"])), float(data["intercept"]), data.get("encoder"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no length head there; `luoxia summarize prepare` writes one") from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{path}: not a length head ({error})") from None


def fit_length_head(documents: Sequence[str], summaries: Sequence[str], encoder: Encoder | None = None,
                    encoder_name: str | None = None, alpha: float = 1.0) -> LengthHead:
    """Ridge regression of log summary length on `features` (closed form, sklearn)."""
    if len(documents) != len(summaries) or len(documents) < 2:
        raise DataError("a length head needs at least two (document, summary) pairs")
    y = np.log1p([text_length(s) for s in summaries])
    # imported here: sklearn (and scipy) cost every `luoxia` command about a second
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=alpha).fit(features(documents, encoder), y)
    return LengthHead([float(c) for c in model.coef_], float(model.intercept_), encoder_name)


def target_length(document: str, length: int | None = None, ratio: float | None = None,
                  head: LengthHead | None = None, encoder: Encoder | None = None) -> tuple[int | None, str]:
    """The summary length asked for and where it came from: ``length``, ``ratio`` × the input's
    length, the length head's prediction, or none (None, "none")."""
    if length is not None and ratio is not None:
        raise ConfigError("give a target length or a ratio, not both")
    if length is not None:
        if length < 1:
            raise ConfigError(f"length is {length}; ask for at least 1")
        return length, "length"
    if ratio is not None:
        if not 0 < ratio <= 1:
            raise ConfigError(f"ratio is {ratio}; expected a fraction in (0, 1]")
        return max(1, round(ratio * text_length(document))), "ratio"
    if head is not None:
        return head.predict([document], encoder)[0], "head"
    return None, "none"


def generate_summary(writer: TextGenerator, document: str, target: int,
                     config: AbstractiveConfig | None = None) -> str:
    """One summary from ``writer`` (a fine-tuned run or an ``openai:`` model), asked for ``target``."""
    config = config or AbstractiveConfig()
    prompt, stops = writer.render_chat([{"role": "user", "content": length_prompt(document, target,
                                                                                  config.max_input_chars)}])
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  seed=config.seed, stop=stops)
    (result,) = writer.generate([prompt], generation)
    # a summary is one line (a TLDR, a title): the first non-empty one
    return next((line.strip() for line in result.text.splitlines() if line.strip()), "")


# --- data -----------------------------------------------------------------------------------------

@dataclass
class Pair:
    document: str
    references: list[str]  # one in training data; one or more on SciTLDR's dev and test


SCITLDR = "shared:summarization_en_scitldr"
CSL = "shared:summarization_zh_csl"


def read_scitldr(split: str, root: str = SCITLDR) -> list[Pair]:
    """SciTLDR-A's ``split`` (train, dev, test): abstract sentences joined → all TLDRs."""
    path = resolve_data_path(root) / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: no such file (SciTLDR splits: train, dev, test)")
    pairs = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                pairs.append(Pair(" ".join(s.strip() for s in record["source"]), list(record["target"])))
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"{path}:{number}: not a SciTLDR record ({error})") from None
    return pairs


def read_csl(split: str, root: str = CSL) -> list[Pair]:
    """CSL title generation's ``split`` (dev, test): abstract → title, tab-separated."""
    path = resolve_data_path(root) / f"{split}.tsv"
    if not path.is_file():
        raise DataError(f"{path}: no such file (CSL splits: dev, test; there is no train split)")
    with path.open(encoding="utf-8", newline="") as rows:
        out = [Pair(row[1], [row[2]]) for row in csv.reader(rows, delimiter="\t", quoting=csv.QUOTE_NONE)
               if len(row) >= 3]
    if not out:
        raise DataError(f"{path}: no (prefix, abstract, title) rows")
    return out


def chat_records(pairs: Sequence[Pair], max_chars: int) -> Iterator[dict]:
    """Fine-tuning records (chat JSONL): the length token is the reference's own length bucket."""
    for pair in pairs:
        for reference in pair.references[:1]:
            yield {"messages": [{"role": "user", "content": length_prompt(pair.document, text_length(reference),
                                                                          max_chars)},
                                {"role": "assistant", "content": reference.strip()}]}


def write_jsonl(path: Path, records: Iterator[dict]) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines)


def prepare(out_dir: str | Path, language: str = "en", max_chars: int = AbstractiveConfig().max_input_chars,
            limit: int | None = None, seed: int = 0, zh_train_share: float = 0.8, root: str | None = None
            ) -> dict[str, int]:
    """Write ``out_dir``/{train,dev}.jsonl (chat), pretrain.txt (the training documents and
    summaries, for a base LM) and the length head fitted on the training pairs. English: SciTLDR
    train → train, dev → dev (test untouched). Chinese: CSL has no train split, so a seeded
    ``zh_train_share`` of dev trains and the rest selects (test untouched). ``root``: the data
    folder (default: the one in ../shared/data)."""
    out = Path(out_dir)
    if language == "en":
        train, dev = read_scitldr("train", root or SCITLDR), read_scitldr("dev", root or SCITLDR)
    elif language == "zh":
        pool = read_csl("dev", root or CSL)
        random.Random(seed).shuffle(pool)
        cut = int(len(pool) * zh_train_share)
        train, dev = pool[:cut], pool[cut:]
    else:
        raise ConfigError(f"unknown language '{language}'; valid: en, zh")
    train, dev = train[:limit], dev[:limit]
    counts = {"train": write_jsonl(out / "train.jsonl", chat_records(train, max_chars)),
              "dev": write_jsonl(out / "dev.jsonl", chat_records(dev, max_chars))}
    corpus = "\n\n".join(f"{p.document}\n{p.references[0]}" for p in train)
    atomic_write_text(out / "pretrain.txt", corpus + "\n")
    fit_length_head([p.document for p in train], [p.references[0] for p in train]).save(out / LENGTH_HEAD_FILE)
    return counts
