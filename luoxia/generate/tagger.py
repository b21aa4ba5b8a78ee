"""A fine-tuned token classifier as a tagger: texts in, entity spans ``(label, start, end)`` out, in
character offsets of the text as given — the shape every Luoxia tagger has, so a user-trained one can
stand in for a built-in one (PII detection's, for instance).

``luoxia.load(run)`` returns a `Tagger` for a ``task: token_classify`` run. Raw text is cut into
windows of the run's ``data.max_length`` sub-tokens, never truncated; each sub-token is tagged and the
IOB2 sequence read into spans (`luoxia.data.iob.bio_spans`); windows overlap by a quarter, and each
sub-token takes its tag from the window where it has the most context.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from luoxia.data.iob import bio_spans
from luoxia.errors import CheckpointError, ConfigError
from luoxia.generate.hf import load_hf_model
from luoxia.runs import ADAPTER_DIR, FULL_DIR, base_dir

Span = tuple[str, int, int]  # (label, start, end): text[start:end] is the entity
MERGEABLE = ("lora", "adalora", "ia3")


def load_token_classifier(path: str | Path, label_names: Sequence[str], device: str = "cpu",
                          vocab_size: int | None = None) -> tuple[Any, Any]:
    """A Hugging Face encoder (or decoder) with a token-classification head for ``label_names``,
    its embeddings grown to ``vocab_size`` rows when a run added tokens; and its tokenizer."""
    from transformers import AutoModelForTokenClassification  # heavy: only for taggers

    names = list(label_names)
    model, tokenizer = load_hf_model(path, device, AutoModelForTokenClassification, num_labels=len(names),
                                     id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(f"{path}: a tagger needs a fast (Rust) tokenizer for character offsets; this one is not")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if vocab_size and vocab_size != model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size, mean_resizing=False)
    return model, tokenizer


class Tagger:
    """Tags texts with a token classifier; ``labels`` are its IOB2 tags (``O``, ``B-PER`` …)."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 256, batch_size: int = 32, name: str = ""):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_length, self.batch_size, self.name = max_length, batch_size, name
        self.labels = [model.config.id2label[i] for i in range(len(model.config.id2label))]

    @property
    def entity_types(self) -> list[str]:
        return sorted({label[2:] for label in self.labels if label != "O"})

    @torch.no_grad()
    def _predict(self, encoding: Any) -> list[list[str]]:
        """Tag names for every position of every row of a padded encoding, in batches."""
        device = next(self.model.parameters()).device
        rows: list[list[str]] = []
        ids, mask = encoding["input_ids"], encoding["attention_mask"]
        for start in range(0, len(ids), self.batch_size):
            logits = self.model(input_ids=ids[start : start + self.batch_size].to(device),
                                attention_mask=mask[start : start + self.batch_size].to(device)).logits
            rows += [[self.labels[i] for i in row] for row in logits.argmax(-1).tolist()]
        return rows

    def tag(self, texts: Sequence[str]) -> list[list[Span]]:
        """Entity spans of each text: ``(type, start, end)`` with ``texts[i][start:end]`` the entity."""
        texts = list(texts)
        if not texts:
            return []
        # Windows overlap by a quarter; each sub-token keeps the tag of the window where it sits furthest
        # from an edge (keyed by its character offsets, which are the same in every window).
        overlap = self.max_length // 4
        encoding = self.tokenizer(texts, return_offsets_mapping=True, truncation=True, max_length=self.max_length,
                                  return_overflowing_tokens=True, stride=overlap, padding=True, return_tensors="pt")
        predicted = self._predict(encoding)
        best: list[dict[tuple[int, int], tuple[int, str]]] = [{} for _ in texts]  # offsets → (margin, tag)
        for row, text_index in enumerate(encoding["overflow_to_sample_mapping"].tolist()):
            positions = [p for p, sequence in enumerate(encoding.sequence_ids(row)) if sequence == 0]
            for k, position in enumerate(positions):
                span = tuple(encoding["offset_mapping"][row][position].tolist())
                margin = min(k, len(positions) - 1 - k)
                if span not in best[text_index] or margin > best[text_index][span][0]:
                    best[text_index][span] = (margin, predicted[row][position])
        out = []
        for found in best:
            offsets = sorted(found)
            out.append([(kind, offsets[first][0], offsets[last - 1][1])
                        for kind, first, last in bio_spans([found[span][1] for span in offsets])])
        return out

    def tag_words(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """One IOB2 tag per given word (its first sub-token's); words past ``max_length`` get ``O``.
        Scoring against gold words (seqeval) uses this."""
        if not sentences:
            return []
        encoding = self.tokenizer([list(words) for words in sentences], is_split_into_words=True, truncation=True,
                                  max_length=self.max_length, padding=True, return_tensors="pt")
        predicted = self._predict(encoding)
        out = []
        for row, words in enumerate(sentences):
            tags = ["O"] * len(words)
            previous = None
            for position, word in enumerate(encoding.word_ids(row)):
                if word is not None and word != previous:
                    tags[word] = predicted[row][position]
                previous = word
            out.append(tags)
        return out


def load_tagger(run_dir: str | Path, recipe: dict[str, Any], device: str = "cpu") -> Tagger:
    """A ``task: token_classify`` run as a `Tagger` (adapter applied and merged where the method allows)."""
    from transformers import AutoTokenizer

    run_dir = Path(run_dir)
    names, max_length = recipe["data"]["label_names"], recipe["data"]["max_length"]
    if (run_dir / FULL_DIR).is_dir():
        model, tokenizer = load_token_classifier(run_dir / FULL_DIR, names, device)
        return Tagger(model, tokenizer, max_length, name=run_dir.name)
    if not (run_dir / ADAPTER_DIR).is_dir():
        raise CheckpointError(f"{run_dir}: the token-classification run has no {ADAPTER_DIR}/ or {FULL_DIR}/ yet "
                              "(unfinished?)")
    from peft import PeftModel  # heavy: only for adapters

    tokenizer = AutoTokenizer.from_pretrained(str(run_dir / ADAPTER_DIR), local_files_only=True)
    base, _ = load_token_classifier(base_dir(run_dir, recipe["base_model"]), names, device, len(tokenizer))
    model = PeftModel.from_pretrained(base, str(run_dir / ADAPTER_DIR))
    if recipe.get("method", {}).get("name", "lora") in MERGEABLE:
        model = model.merge_and_unload()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Tagger(model.eval(), tokenizer, max_length, name=run_dir.name)


def load_tagger_run(run_dir: Path, recipe: dict[str, Any], device: str = "auto", compile: bool = False) -> Tagger:
    """The registry's loader signature (``compile`` applies to generators only)."""
    return load_tagger(run_dir, recipe, device)
