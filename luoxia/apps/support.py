"""The customer-service assistant (``luoxia apps support …``, model ``support`` on the server).

Per turn: the intent (a ``task: classify`` run, LoRA on the encoder), the best answers (the
`HybridIndex` over the FAQ's questions, answers and intents in each entry's meta; entries of the
predicted intent first), slots from every user turn (`luoxia.apps.slots`: asked for when the chosen
answer needs one the conversation lacks), shop constants from ``app.yaml``, an optional rephrasing by
a writer model grounded in the retrieved answers only, and a hand-off to a human — on a hand-off
intent, out of domain (the best question too far from any in the FAQ) or below a confidence
threshold — that puts the conversation in the review queue. All of it under `turn_guard`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
import yaml
from pydantic import Field

from luoxia.apps.faq import FAQColumns, FAQEntry, read_faq
from luoxia.apps.interface import AppConfig, AppReply, Message, last_user_message, record_handoff, turn_guard
from luoxia.apps.sentiment import SentimentTagger
from luoxia.apps.slots import (
    PLACEHOLDER,
    SlotConfig,
    conversation_slots,
    fill,
    learn_slots,
    needed_slots,
    templatize,
)
from luoxia.checkpoint import atomic_directory
from luoxia.config import apply_overrides, build_config, read_yaml
from luoxia.data.corpora import resolve_data_path
from luoxia.data.readers import list_files, read_records
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.generate.load import load_finetuned
from luoxia.registry import load_writer
from luoxia.retrieval.index import HybridIndex
from luoxia.retrieval.interface import Document, Hit, Retriever, SearchMode
from luoxia.runs import APP_FILE, APP_INDEX_DIR, is_run_dir, run_recipe
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard

KIND = "support"
HANDOFF_MESSAGE = "I'm passing this conversation to a colleague, who will answer you here shortly."
WRITER_SYSTEM = ("You are a customer-service assistant. Answer the customer using only the facts in the reference "
                 "answers below; add nothing they do not say. Keep it short and polite.")
Sentiment = Callable[[Sequence[str]], list[tuple[str, float]]]  # texts → (label, score) each


class SupportConfig(AppConfig):
    """``app.yaml`` of a support assistant (`luoxia apps support build` writes it; edit ``constants``)."""

    kind: Literal["support"] = Field("support", description="the application kind")
    name: str = Field("support", description="the model name on the server")
    intents: str | None = Field(None, description="the intent classifier: a task: classify run directory "
                                "(none: the best retrieved entry's intent, its similarity as confidence)")
    search_mode: SearchMode = Field("hybrid", description="retrieval: hybrid, dense or bm25")
    top_k: int = Field(5, ge=1, description="answers retrieved per turn (the reply's sources)")
    confidence_threshold: float = Field(0.3, ge=0, le=1, description="hand off below this intent confidence")
    ood_threshold: float = Field(0.45, ge=-1, le=1, description="out of domain (hand off) when the best FAQ "
                                 "question's cosine similarity is below this")
    handoff_intents: list[str] = Field(default_factory=lambda: ["contact_human_agent"],
                                       description="intents that always go to a human")
    max_asks: int = Field(2, ge=1, description="times a missing slot is asked for before a hand-off")
    handoff_message: str = Field(HANDOFF_MESSAGE, description="what the customer reads on a hand-off")
    sentiment: bool = Field(True, description="tag the customer's mood per turn (apps.sentiment, EN and ZH)")
    constants: dict[str, str | None] = Field(default_factory=dict, description="shop constants filling answer "
                                             "placeholders ({{Customer Support Phone Number}}); unset: the name")
    slots: dict[str, SlotConfig] = Field(default_factory=dict, description="slots learnt from the FAQ's entities")
    tuning: dict[str, Any] = Field(default_factory=dict, description="how the thresholds were chosen (dev split)")


class _Context(Protocol):  # `luoxia.apps.registry.AppContext`, which imports this module
    guard: Guard | None
    writer: TextGenerator | None
    device: str


class IntentClassifier:
    """A ``task: classify`` run as texts → (N, intents) probabilities."""

    def __init__(self, run_dir: str | Path, device: str = "auto"):
        if not is_run_dir(run_dir) or run_recipe(run_dir).get("task") != "classify":
            raise ConfigError(f"{run_dir}: not a classification run; train one with "
                              "`luoxia finetune configs/apps/support_intents.yaml`")
        self.model, self.tokenizer = load_finetuned(run_dir, device)
        self.tokenizer.padding_side = "right"
        self.names = [self.model.config.id2label[i] for i in range(len(self.model.config.id2label))]
        self.max_length = int(run_recipe(run_dir)["data"]["max_length"])  # texts cut as in training

    @torch.no_grad()
    def probabilities(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        device = next(self.model.parameters()).device
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(device)
            logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out.append(torch.softmax(logits.float(), -1).cpu().numpy())  # (B, C)
        return np.concatenate(out) if out else np.zeros((0, len(self.names)), dtype=np.float32)


@dataclass
class Reading:
    """What the assistant makes of one question before answering it."""

    intent: str | None
    confidence: float
    similarity: float  # cosine of the closest FAQ question
    hits: list[Hit] = field(default_factory=list)


def handoff_reason(reading: Reading, config: SupportConfig) -> str | None:
    """Why a human should answer, or None."""
    if reading.intent in config.handoff_intents:
        return f"the customer asked for a human ({reading.intent})"
    if reading.similarity < config.ood_threshold:
        return f"out of domain: the closest FAQ question has similarity {reading.similarity:.2f} < " \
               f"{config.ood_threshold:.2f}"
    if reading.confidence < config.confidence_threshold:
        return f"low confidence: {reading.intent} at {reading.confidence:.2f} < {config.confidence_threshold:.2f}"
    return None


def best_hit(hits: list[Hit], intent: str | None) -> Hit | None:
    """The best hit of the predicted intent, else the best hit."""
    return next((h for h in hits if h.meta.get("intent") == intent), hits[0] if hits else None)


def topic_of(messages: Sequence[Message], slots: dict[str, SlotConfig]) -> tuple[str, int]:
    """The question being answered and how many times in a row the assistant asked for a slot:
    after "Could you give me your order number?", the customer's next turn supplies it, and the
    question is still the one before."""
    asks, index = 0, max(i for i, m in enumerate(messages) if m.get("role") == "user")
    questions = {slot.ask for slot in slots.values()}
    while index >= 2 and messages[index - 1].get("role") == "assistant" \
            and messages[index - 1].get("content", "").strip() in questions \
            and messages[index - 2].get("role") == "user":
        asks, index = asks + 1, index - 2
    return messages[index].get("content", ""), asks


class SupportApp:
    """A `ChatApp`: ``reply(messages)`` → `AppReply` with the answer, sources, intent, slots, hand-off."""

    kind = KIND

    def __init__(self, config: SupportConfig, index: Retriever, classifier: IntentClassifier | None = None,
                 guard: Guard | None = None, writer: TextGenerator | None = None, audit: AuditStore | None = None,
                 sentiment: Sentiment | None = None):
        self.config, self.index, self.classifier = config, index, classifier
        self.name = config.name
        self.guard, self.writer, self.sentiment = guard, writer, sentiment
        self._audit = audit

    @property
    def audit(self) -> AuditStore:
        """Where hand-offs go: the guard's audit trail, else the default data directory's."""
        if self._audit is None:
            self._audit = (self.guard.audit if self.guard is not None else None) or AuditStore()
        return self._audit

    def read(self, questions: Sequence[str], mode: SearchMode | None = None) -> list[Reading]:
        """Intent, confidence, similarity and hits for each question (batched classification; each
        question encoded once, for the closest-question similarity and the search)."""
        probabilities = self.classifier.probabilities(questions) if self.classifier else None
        vectors = self.index.encoder.encode(list(questions))  # (N, dim)
        readings = []
        for i, question in enumerate(questions):
            closest = self.index.search(question, k=1, mode="dense", vector=vectors[i])
            similarity = closest[0].score if closest else -1.0
            hits = self.index.search(question, k=self.config.top_k, mode=mode or self.config.search_mode,
                                     vector=vectors[i])
            if probabilities is not None and self.classifier is not None:
                best = int(np.argmax(probabilities[i]))
                intent, confidence = self.classifier.names[best], float(probabilities[i][best])
            else:
                top = best_hit(hits, None)
                intent, confidence = (top.meta.get("intent") if top else None), max(similarity, 0.0)
            readings.append(Reading(intent, confidence, similarity, hits))
        return readings

    def reply(self, messages: Sequence[Message], conversation_id: str | None = None) -> AppReply:
        question = last_user_message(messages)
        turns: list[AppReply] = []

        def compose() -> str:
            turns.append(self.answer(messages, conversation_id))
            return turns[0].answer

        answer, safety, blocked = turn_guard(self.guard, question, compose)
        reply = turns[0] if turns else AppReply(answer, reason="the guard refused the message")
        reply.answer, reply.safety = answer, safety
        if blocked and turns:
            reply.warnings.append("the guard withheld the answer")
        if self.sentiment is not None:
            label, _score = self.sentiment([question])[0]
            reply.sentiment = label
        return reply

    def answer(self, messages: Sequence[Message], conversation_id: str | None = None) -> AppReply:
        """The turn without the guard: read the question, then hand off, ask for a slot or answer."""
        question, asks = topic_of(messages, self.config.slots)
        (reading,) = self.read([question])
        reply = AppReply("", sources=reading.hits, intent=reading.intent,
                         confidence=round(reading.confidence, 4))
        reason = handoff_reason(reading, self.config)
        chosen = best_hit(reading.hits, reading.intent)
        template = str(chosen.meta.get("answer", "")) if chosen else ""
        user_turns = [m.get("content", "") for m in messages if m.get("role") == "user"]
        reply.slots = conversation_slots(self.config.slots, user_turns)
        missing = [s for s in needed_slots(template, self.config.slots) if s not in reply.slots]
        if reason is None and missing and asks >= self.config.max_asks:
            reason = f"the customer did not give the {missing[0].replace('_', ' ')} after {asks} requests"
        if reason is not None:
            return self._hand_off(reply, reason, messages)
        if missing:
            reply.missing_slots = missing
            reply.answer = self.config.slots[missing[0]].ask
            return reply
        reply.answer = fill(template, reply.slots, self.config.slots, self.config.constants)
        if self.writer is not None:
            reply.answer = self.rephrase(question, reply.answer, reading.hits, reply.slots, reply.warnings)
        return reply

    def _hand_off(self, reply: AppReply, reason: str, messages: Sequence[Message]) -> AppReply:
        redactor = self.guard.redactor if self.guard is not None else None
        reply.review_id = record_handoff(self.audit, self.name, reason, messages, reply.confidence, redactor)
        reply.handoff, reply.reason, reply.answer = True, reason, self.config.handoff_message
        return reply

    def rephrase(self, question: str, answer: str, hits: list[Hit], slots: dict[str, str],
                 warnings: list[str]) -> str:
        """The writer's wording of ``answer``, grounded in the retrieved answers only (they are all
        it is shown); the FAQ's answer when the writer returns nothing."""
        assert self.writer is not None
        others = [fill(str(h.meta.get("answer", "")), slots, self.config.slots, self.config.constants)
                  for h in hits[:3]]
        references = "\n\n".join(f"[{i + 1}] {text}" for i, text in enumerate([answer, *others[1:]]))
        messages = [{"role": "system", "content": WRITER_SYSTEM},
                    {"role": "user", "content": f"Reference answers:\n{references}\n\nCustomer: {question}"}]
        prompt, stops = self.writer.render_chat(messages)
        config = GenerationConfig(max_new_tokens=256, temperature=0, stop=stops, seed=0)
        text = self.writer.generate([prompt], config)[0].text.strip()
        if not text:
            warnings.append(f"the writer {self.writer.name} returned nothing: the FAQ's answer is shown")
            return answer
        warnings.append(f"rephrased by {self.writer.name} from the retrieved answers")
        return text


# Building ---------------------------------------------------------------------------------------
def faq_documents(entries: Sequence[FAQEntry], slots: dict[str, SlotConfig]) -> list[Document]:
    """One document per entry: the question is searched, the answer (its own entity values made
    placeholders) and intent ride in meta."""
    return [Document(str(i), entry.question, {"answer": templatize(entry, slots), "intent": entry.intent,
                                              "origin": Path(entry.origin).name})  # file:line, no directories
            for i, entry in enumerate(entries)]


def shop_constants(entries: Sequence[FAQEntry], slots: dict[str, SlotConfig], share: float = 0.02
                   ) -> dict[str, str | None]:
    """The placeholders in at least ``share`` of the answers that no slot fills: the settings a shop
    fills in (``{{Customer Support Phone Number}}``), unset at first."""
    owned = {name.lower() for slot in slots.values() for name in slot.placeholders}
    counts: dict[str, int] = {}
    for entry in entries:
        for name in dict.fromkeys(m.group(1).strip() for m in PLACEHOLDER.finditer(entry.answer)):
            counts[name] = counts.get(name, 0) + 1
    keep = max(1, math.ceil(share * len(entries)))
    return {name: None for name, n in sorted(counts.items(), key=lambda c: -c[1])
            if n >= keep and name.lower() not in owned}


def read_texts(path: str | Path, field: str = "text", limit: int | None = None, seed: int = 1337) -> list[str]:
    """The ``field`` of every record (out-of-domain questions), a seeded sample of ``limit``."""
    texts = [str(record[field]) for file in list_files(resolve_data_path(path))
             for _, record in read_records(file, [field])]
    if not texts:
        raise DataError(f"{path}: no texts")
    if limit is not None and len(texts) > limit:
        texts = [texts[i] for i in sorted(np.random.default_rng(seed).choice(len(texts), limit, replace=False))]
    return texts


def _f1(decisions: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    tp = float((decisions & positive).sum())
    precision = tp / max(float(decisions.sum()), 1.0)
    recall = tp / max(float(positive.sum()), 1.0)
    return (2 * precision * recall / (precision + recall) if tp else 0.0), precision, recall


def tune_thresholds(app: SupportApp, dev: Sequence[FAQEntry], ood: Sequence[str]) -> dict[str, Any]:
    """Thresholds maximising the hand-off F1 on ``dev`` (positives: hand-off intents) plus ``ood``
    (all positives); sets them on ``app.config`` and returns what was measured. Never the test split."""
    texts = [e.question for e in dev] + list(ood)
    readings = app.read(texts)
    handoff = set(app.config.handoff_intents)
    positive = np.array([e.intent in handoff for e in dev] + [True] * len(ood))
    asks_human = np.array([r.intent in handoff for r in readings])
    similarity = np.array([r.similarity for r in readings])
    confidence = np.array([r.confidence for r in readings])
    grid = np.linspace(0, 1, 41)
    similarities = np.unique(np.round(np.quantile(similarity, grid), 3))
    confidences = np.unique(np.round(np.quantile(confidence, grid), 3)) if app.classifier else np.array([0.0])
    best = (-1.0, 0.0, 0.0, 0.0, 0.0)
    for s in similarities:
        for c in confidences:
            f1, precision, recall = _f1(asks_human | (similarity < s) | (confidence < c), positive)
            if f1 > best[0] + 1e-9:
                best = (f1, precision, recall, float(s), float(c))
    f1, precision, recall, ood_threshold, confidence_threshold = best
    app.config.ood_threshold, app.config.confidence_threshold = ood_threshold, confidence_threshold
    tuning = {"dev_questions": len(dev), "ood_questions": len(ood), "handoff_f1": round(f1, 4),
              "handoff_precision": round(precision, 4), "handoff_recall": round(recall, 4),
              "ood_threshold": ood_threshold, "confidence_threshold": confidence_threshold}
    app.config.tuning = tuning
    return tuning


def write_app(out_dir: str | Path, config: SupportConfig, index: HybridIndex) -> Path:
    """The application directory: ``app.yaml`` + ``index/``, replaced in one rename."""
    with atomic_directory(Path(out_dir)) as tmp:
        index.save(tmp / APP_INDEX_DIR)
        text = "# A Luoxia support assistant: fill in `constants`, then `luoxia apps support chat DIR`\n" + \
            yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=120)
        (tmp / APP_FILE).write_text(text, encoding="utf-8")
    return Path(out_dir)


def build_support(faq: str | Path, out_dir: str | Path, intents: str | Path | None = None,
                  settings: dict[str, Any] | None = None, overrides: Sequence[str] = (),
                  columns: FAQColumns | None = None, dev: str | Path | None = None, ood: str | Path | None = None,
                  ood_field: str = "text", ood_limit: int | None = 1000, device: str = "auto",
                  encoder: Encoder | None = None) -> SupportConfig:
    """``luoxia apps support build``: index the FAQ, learn its slots and constants, and (given a dev
    split and out-of-domain questions) tune the hand-off thresholds; writes ``out_dir``."""
    entries = read_faq(faq, columns)
    raw: dict[str, Any] = {**(settings or {}), "intents": str(Path(intents).resolve()) if intents else None}
    config = build_config(SupportConfig, apply_overrides(SupportConfig, raw, list(overrides)), "(build settings)")
    slots = learn_slots(entries)
    config = config.model_copy(update={"slots": {**slots, **config.slots},
                                       "constants": {**shop_constants(entries, slots), **config.constants}})
    encoder = encoder or load_encoder(config.encoder, device=device)
    index = HybridIndex.build(faq_documents(entries, config.slots), encoder)
    classifier = IntentClassifier(config.intents, device) if config.intents else None
    if classifier is not None:
        unknown = sorted({e.intent for e in entries} - set(classifier.names))
        if unknown:
            raise ConfigError(f"{config.intents} does not know the FAQ's intents {', '.join(unknown[:5])}; "
                              "train it on this FAQ (configs/apps/support_intents.yaml)")
    if dev is not None:
        app = SupportApp(config, index, classifier)
        tune_thresholds(app, read_faq(dev, columns), read_texts(ood, ood_field, ood_limit) if ood else [])
    write_app(out_dir, config, index)
    return config


# Loading ----------------------------------------------------------------------------------------
def read_support_config(app_dir: str | Path) -> SupportConfig:
    file = Path(app_dir) / APP_FILE
    if not file.is_file():
        raise ConfigError(f"{app_dir}: not an application directory (no {APP_FILE}); build one with "
                          "`luoxia apps support build FAQ --out DIR`")
    return build_config(SupportConfig, read_yaml(file), str(file))


def load_support(app_dir: str | Path, guard: Guard | None = None, writer: TextGenerator | None = None,
                 device: str = "auto", sentiment: Sentiment | None = None, audit: AuditStore | None = None,
                 encoder: Encoder | None = None) -> SupportApp:
    """The support assistant in ``app_dir``; ``writer`` overrides the one ``app.yaml`` names;
    hand-offs go to ``audit`` (default: the guard's audit trail, else $LUOXIA_HOME's); ``sentiment``
    labels each turn's mood (default: `SentimentTagger` when ``app.yaml`` asks for it)."""
    config = read_support_config(app_dir)
    index_dir = Path(app_dir) / APP_INDEX_DIR
    if not index_dir.is_dir():
        raise ConfigError(f"{app_dir}: no {APP_INDEX_DIR}/ (rebuild with `luoxia apps support build`)")
    index = HybridIndex.load(index_dir, encoder or load_encoder(config.encoder, device=device))
    classifier = IntentClassifier(config.intents, device) if config.intents else None
    if writer is None and config.writer:
        writer = load_writer(config.writer, device)
    if sentiment is None and config.sentiment:
        sentiment = SentimentTagger().label
    return SupportApp(config, index, classifier, guard, writer, audit, sentiment)


def load_support_app(app_dir: Path, context: _Context) -> SupportApp:
    """`luoxia.apps.registry.APPS`'s loader."""
    return load_support(app_dir, context.guard, context.writer, context.device)
