"""Knowledge-grounded answers (`luoxia apps ask`): a question → the facts of a knowledge base that
answer it, each with a `Citation`; never an answer the knowledge base does not hold.

A question is read by rules (``apps/data/ask_relations.yaml``: cue phrases per relation, matched as
plain substrings): the relation it asks for and the entity it names (`KnowledgeBase.link`: exact,
alias, fuzzy). The triples of that entity and relation are the answer. A question no triple answers
goes to the passages (a `Retriever`, the application's HybridIndex), answered with the best
passage's sentences that share words with it. An optional writer model rephrases the cited facts;
its text is checked (`check_statement`) and replaced by the facts when it contradicts the knowledge
base or drops one of them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from luoxia.apps.interface import AppConfig, AppReply, Citation, Message, last_user_message, turn_guard
from luoxia.apps.knowledge import (
    KnowledgeBase,
    Link,
    Rules,
    Triple,
    fold,
    is_chinese,
    load_rules,
    read_triples,
    triples_jsonl,
)
from luoxia.checkpoint import atomic_directory, atomic_write_text
from luoxia.config import build_config, dump_config, read_yaml
from luoxia.data.corpora import corpus_documents, pydoc_documents
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import ConfigError, DataError
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.registry import load_writer
from luoxia.retrieval.index import HybridIndex
from luoxia.retrieval.interface import Document, Hit, Retriever
from luoxia.runs import APP_FILE, APP_INDEX_DIR
from luoxia.safety.guard import Guard
from luoxia.safety.pii import ENTITY_TYPES

TRIPLES_FILE = "triples.jsonl"  # an ask application's knowledge base (one JSON triple a line)
RULES_FILE = "relations.yaml"  # its own question rules, when built with --rules
PASSAGE_CHARS = 800  # a passage is at most this long (paragraphs joined), so a citation stays readable
MAX_FACTS = 12  # facts listed when a question names an entity but no relation
SENTENCE_ENDS = "。！？!?；;\n"
QUOTES = {"“": "”", "「": "」", "『": "』", "\"": "\""}
STOPWORDS = frozenset("the and for are was were with that this what which who whom how does did can could "
                      "will would should into from about when where why your you its use used".split())


class AskSettings(AppConfig):
    """An ask application's ``app.yaml``."""

    kind: Literal["ask"] = Field("ask", description="the application kind")
    name: str = Field("ask", description="the model name on the server")
    fuzzy_cutoff: float = Field(0.7, ge=0, le=1, description="difflib ratio a misspelt name needs to link")
    passages_k: int = Field(3, ge=1, description="passages retrieved for a question no triple answers")
    sentences: int = Field(2, ge=1, description="sentences quoted from the best passage")
    rules: str | None = Field(None, description="a relations YAML replacing the bundled ask_relations.yaml")


@dataclass
class Answer:
    """What the knowledge base says to one question: the text, a citation per fact, the values stated."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    sources: list[Hit] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)  # the answer values (triple objects) the text states
    entity: str | None = None
    relation: str | None = None
    linked_by: str | None = None  # exact | alias | fuzzy | passage
    confidence: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.citations)


@dataclass
class Contradiction:
    """A statement that says ``claimed`` where the knowledge base says ``expected``."""

    statement: str
    subject: str
    relation: str
    claimed: str
    expected: list[str]
    citations: list[Citation]

    def message(self) -> str:
        sources = "; ".join(sorted({c.source for c in self.citations}))
        return (f"contradicts the knowledge base: '{self.statement}' says {self.relation} of {self.subject} is "
                f"{self.claimed}, the knowledge base says {' / '.join(self.expected)} ({sources})")

    def to_json(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "citations"},
                "citations": [c.to_json() for c in self.citations], "message": self.message()}


# -- passages --------------------------------------------------------------------------------------

def chunk(text: str, limit: int = PASSAGE_CHARS) -> list[str]:
    """Paragraphs (blank-line separated) joined up to ``limit`` characters; a longer paragraph stays whole."""
    chunks, current = [], ""
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph:
            continue
        if current and len(current) + len(paragraph) + 2 > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    return [*chunks, current] if current else chunks


def passages(source: str, max_documents: int | None = None) -> list[Document]:
    """``pydoc`` (the Python reference topics) or files a corpus reader reads, as passages citing their origin."""
    found = pydoc_documents() if source == "pydoc" else corpus_documents([source])
    out: list[Document] = []
    for number, document in enumerate(found):
        if max_documents is not None and number >= max_documents:
            break
        title = document.origin.split("'")[1] if source == "pydoc" else Path(document.origin).name
        for part, text in enumerate(chunk(document.text)):
            out.append(Document(f"{document.origin}#{part}", text, {"source": document.origin, "title": title}))
    if not out:
        raise DataError(f"{source}: no passages (empty files?)")
    return out


def terms(text: str) -> set[str]:
    """Words a question and a passage must share: Latin words of 3+ letters (not stopwords), Chinese bigrams."""
    folded = fold(text)
    words = {w for w in folded.split() if len(w) >= 3 and w.isascii() and w not in STOPWORDS}
    han = "".join(c if is_chinese(c) else " " for c in folded).split()
    return words | {run[i:i + 2] for run in han for i in range(len(run) - 1)}


def split_sentences(text: str) -> list[str]:
    """Sentences, not split inside quotation marks (a quoted line of verse holds its own 。)."""
    sentences, start, closing = [], 0, ""
    for i, char in enumerate(text):
        if closing:
            closing = "" if char == closing else closing
        elif char in QUOTES:
            closing = QUOTES[char]
        elif char in SENTENCE_ENDS or (char == "." and (i + 1 == len(text) or text[i + 1].isspace())):
            sentences.append(text[start:i + 1])
            start = i + 1
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip()]


def quotable(passage: str) -> list[str]:
    """The sentences of a passage worth quoting: prose of 5+ words (or 8+ Chinese characters), not
    headings, underlines or grammar rules (``::=``)."""
    out = []
    for paragraph in passage.split("\n\n"):
        if "::=" in paragraph:
            continue
        for sentence in split_sentences(" ".join(paragraph.replace("*", " ").split())):
            chinese = sum(map(is_chinese, sentence))
            if len(sentence.split()) >= 5 or chinese >= 8:
                out.append(sentence)
    return out


# -- the application -------------------------------------------------------------------------------

class AskApp:
    """Answers from a knowledge base of triples and/or passages, every fact cited (`ChatApp`, kind ``ask``)."""

    kind = "ask"

    def __init__(self, kb: KnowledgeBase | None, index: Retriever | Callable[[], Retriever] | None,
                 settings: AskSettings | None = None,
                 guard: Guard | None = None, writer: TextGenerator | None = None) -> None:
        if kb is None and index is None:
            raise DataError("an ask application needs triples or passages; both are missing")
        self.kb, self._index = kb, index
        self.settings = settings or AskSettings()
        self.name = self.settings.name
        self.guard, self.writer = knowledge_guard(guard), writer
        self.rules: Rules = load_rules(self.settings.rules)

    @property
    def index(self) -> Retriever | None:
        """The passages, loaded on first use (a question the triples answer needs no encoder)."""
        if callable(self._index):
            self._index = self._index()
        return self._index

    # question → answer
    def ask(self, question: str, earlier: Sequence[str] = ()) -> Answer:
        """The answer the knowledge base holds for ``question``, or an honest "not in the knowledge base"."""
        if not question.strip():
            raise DataError("the question is empty")
        language = "zh" if is_chinese(question) else "en"
        folded = fold(question)
        cues = self.rules.find_relations(folded)
        link, asked = self._link(question, folded, cues)
        if link is None and cues and not asked.replace(" ", ""):  # "那第一句呢？": the entity of an earlier turn
            link = next((found for text in reversed(earlier) if (found := self._topic(text)) is not None), None)
        if link is not None and self.kb is not None:
            relation = next((r for r, _, _ in cues if self.kb.lookup(link.entity, r)), cues[0][0] if cues else None)
            return self._facts(link, relation, language)
        found = self._passage_answer(question)
        if found is not None:
            return found
        if asked:
            return Answer(self.rules.not_found_entity[language].format(name=asked))
        return Answer(self.rules.not_found[language])

    def _topic(self, text: str) -> Link | None:
        """The entity an earlier question was about (linked exactly or by alias only)."""
        folded = fold(text)
        link, _ = self._link(text, folded, self.rules.find_relations(folded))
        return link if link is not None and link.how != "fuzzy" else None

    def _link(self, question: str, folded: str, cues: list[tuple[str, int, int]]) -> tuple[Link | None, str]:
        """The entity a question names, and the name as asked (for an honest "not found")."""
        if self.kb is None:
            return None, ""
        cutoff = self.settings.fuzzy_cutoff
        if "《" in question and "》" in question.split("《", 1)[1]:
            asked = question.split("《", 1)[1].split("》", 1)[0].strip()
            return self.kb.link(asked, cutoff), asked
        asked = self._strip(folded, cues)
        spans = [(a, b) for _, a, b in cues]
        mentions = [(name, a, b) for name, a, b in self.kb.mentions(folded)
                    if all(b <= s or a >= e for s, e in spans)]
        if mentions:
            name, start, end = max(mentions, key=lambda m: (m[2] - m[1], -m[1]))
            if 2 * (end - start) >= len(asked.replace(" ", "")):  # the name is most of what is asked
                entity, how = self.kb.names[name]
                return Link(entity, how, 1.0, name), asked
        known = len(asked) >= 2 or fold(asked) in self.kb.names  # one character: an exact name only (《蝉》)
        return (self.kb.link(asked, cutoff) if known else None), asked

    def _strip(self, folded: str, cues: list[tuple[str, int, int]]) -> str:
        """The question less its relation cues and question words: the name it asks about."""
        for _, start, end in sorted(cues, key=lambda c: -c[1]):
            folded = folded[:start] + " " + folded[end:]
        words = [fold(w) for w in self.rules.question_words]
        latin = {w for w in words if w.isascii()}
        kept = " ".join(w for w in folded.split() if w not in latin)
        for word in sorted((w for w in words if not w.isascii()), key=len, reverse=True):
            kept = kept.replace(word, "")
        return " ".join(kept.split())

    def _facts(self, link: Link, relation: str | None, language: str) -> Answer:
        assert self.kb is not None
        subject = self.kb.name_of(link.entity)
        triples = self.kb.lookup(link.entity, relation) if relation else []
        if relation and triples:
            joiner = "、" if language == "zh" else " and "
            objects = list(dict.fromkeys(t.object for t in triples))
            text = self.rules.say(relation, language, subject, joiner.join(objects))
        else:
            reverse = [t for t in self.kb.about_object(link.entity) if relation in (None, t.relation)]
            triples = (self.kb.about(link.entity) or reverse)[:MAX_FACTS]  # a poet: the poems naming them
            if not triples:
                return Answer(self.rules.not_found_entity[language].format(name=subject))
            objects = [t.object for t in triples]
            text = " ".join(self.rules.say(t.relation, language, t.subject, t.object) for t in triples)
            if relation and not reverse:  # asked for a relation the entity lacks: say so before what is known
                text = self.rules.not_found_fact(relation, language, subject) + " " + text
        if link.how == "fuzzy":  # say which name was answered about
            text = self.rules.fuzzy_note[language].format(asked=link.mention, name=subject) + text
        ids = [f"triple:{self.kb.id_of(t)}" for t in triples]
        pairs = list(zip(triples, ids, strict=True))
        return Answer(text, [Citation(t.fact(), t.source, i) for t, i in pairs],
                      [Hit(i, link.score, t.fact(), t.to_json()) for t, i in pairs],
                      objects, subject, relation, link.how, link.score)

    def _passage_answer(self, question: str) -> Answer | None:
        """The best passage sharing words with the question, its most relevant sentences cited."""
        if self.index is None or len(self.index) == 0:
            return None
        wanted = terms(question)
        hits = self.index.search(question, k=self.settings.passages_k)
        shared = [len(wanted & terms(hit.text)) for hit in hits]  # re-ranked by the question's words they hold
        for rank in sorted(range(len(hits)), key=lambda i: (-shared[i], i)):
            hit = hits[rank]
            if not shared[rank]:
                break
            sentences = quotable(hit.text)
            scored = sorted(range(len(sentences)), key=lambda i: (-len(wanted & terms(sentences[i])), i))
            chosen = sorted(i for i in scored[:self.settings.sentences] if wanted & terms(sentences[i]))
            quoted = [" ".join(sentences[i].split()) for i in chosen]
            source = str(hit.meta.get("source", hit.id))
            return Answer(" ".join(quoted), [Citation(s, source, hit.id) for s in quoted], hits,
                          [], str(hit.meta.get("title", "")) or None, None, "passage", 1.0 / (1 + rank))
        return None

    # statement → contradictions
    def check(self, text: str) -> list[Contradiction]:
        """Each claim of ``text`` that the knowledge base contradicts (see `check_statement`)."""
        return check_statement(self.kb, text, self.rules) if self.kb is not None else []

    # the chat turn
    def reply(self, messages: Sequence[Message], conversation_id: str | None = None) -> AppReply:
        """One guarded turn: the cited answer, rephrased by the writer when there is one and it stays true."""
        question = last_user_message(messages)
        earlier = [m.get("content", "") for m in messages if m.get("role") == "user"][:-1]
        held: dict[str, Any] = {}

        def compose() -> str:
            answer = self.ask(question, earlier)
            text, warnings = self._rephrase(question, answer)
            held.update(answer=answer, warnings=warnings)
            return text

        text, safety, blocked = turn_guard(self.guard, question, compose)
        answer: Answer | None = held.get("answer")
        if answer is None or blocked:
            return AppReply(text, safety=safety, intent="blocked", warnings=held.get("warnings", []))
        slots = {k: v for k, v in (("entity", answer.entity), ("relation", answer.relation),
                                   ("linked_by", answer.linked_by)) if v}
        return AppReply(text, answer.sources, answer.citations, answer.relation or answer.linked_by or "not_found",
                        round(answer.confidence, 4), slots=slots, warnings=held["warnings"], safety=safety)

    def _rephrase(self, question: str, answer: Answer) -> tuple[str, list[str]]:
        """The writer's wording of the cited facts, kept only if it contradicts none and states them all."""
        if self.writer is None or not answer.found:
            return answer.text, []
        facts = "\n".join(f"- {c.fact} [{c.source}]" for c in answer.citations)
        messages = [{"role": "system", "content": "Answer the question using only these facts, and say nothing "
                     f"they do not say.\nFacts:\n{facts}\nA correct answer: {answer.text}"},
                    {"role": "user", "content": question}]
        prompt, stops = self.writer.render_chat(messages)
        config = GenerationConfig(max_new_tokens=160, temperature=0, stop=stops, seed=0)
        written = self.writer.generate([prompt], config)[0].text.strip()
        warnings = [c.message() for c in self.check(written)]
        missing = [o for o in answer.objects if fold(o) not in fold(written)]
        if warnings or missing or not written:
            left_out = ", ".join(missing) or "everything"
            why = "it " + ("contradicts the knowledge base" if warnings else f"leaves out {left_out}")
            return answer.text, [*warnings, f"the writer's text was not used: {why}; answered with the cited facts"]
        return written, []

    @classmethod
    def load(cls, path: str | Path, guard: Guard | None = None, writer: TextGenerator | None = None,
             device: str = "auto") -> AskApp:
        """An ask application directory (`build_ask`)."""
        path = Path(path)
        if not (path / APP_FILE).is_file():
            raise ConfigError(f"{path}: not an ask application (no {APP_FILE}); build one with `luoxia apps ask build`")
        settings = build_config(AskSettings, read_yaml(path / APP_FILE), str(path / APP_FILE))
        if settings.rules:
            settings.rules = str(path / settings.rules)
        kb = KnowledgeBase(read_triples(path / TRIPLES_FILE)) if (path / TRIPLES_FILE).is_file() else None
        index = (lambda: HybridIndex.load(path / APP_INDEX_DIR)) if (path / APP_INDEX_DIR).is_dir() else None
        if writer is None and settings.writer:
            writer = load_writer(settings.writer, device)
        return cls(kb, index, settings, guard, writer)


def knowledge_guard(guard: Guard | None) -> Guard | None:
    """The guard as an ask application uses it: people, places and organisations are what a knowledge
    base is about (a poem's author), so the names a tagger finds (PERSON, ADDRESS, ORG) stay in its
    cited answers; contact data, ID numbers and secrets are still redacted, moderation is unchanged."""
    if guard is None or not set(guard.policy.pii_types) & set(ENTITY_TYPES):
        return guard
    types = [t for t in guard.policy.pii_types if t not in ENTITY_TYPES]
    own = copy.copy(guard)
    own.policy = guard.policy.model_copy(update={"pii_types": types})
    own.redactor = replace(guard.redactor, types=tuple(types))
    return own


def check_statement(kb: KnowledgeBase, text: str, rules: Rules | None = None) -> list[Contradiction]:
    """The claims in ``text`` that contradict ``kb``: a sentence naming a subject, a relation cue and a
    value the knowledge base knows for that relation, where the subject's own values differ. The
    knowledge base is taken as complete for each subject and relation it has (closed world there);
    a claim about a subject or relation it lacks, or with a value it has never seen, is not judged."""
    rules = rules or load_rules()
    found: list[Contradiction] = []
    for sentence in split_sentences(text):
        folded = fold(sentence)
        cues = rules.find_relations(folded)
        if not cues:
            continue
        mentioned = [(kb.names[name][0], a, b) for name, a, b in kb.mentions(folded)
                     if all(b <= s or a >= e for _, s, e in cues)]
        titled = (fold(part.split("》", 1)[0]) for part in sentence.split("《")[1:] if "》" in part)
        mentioned += [(kb.names[t][0], -1, -1) for t in titled if t in kb.names]  # 《蝉》: one character too
        for relation in dict.fromkeys(r for r, _, _ in cues):
            subjects = list(dict.fromkeys(e for e, _, _ in mentioned if kb.lookup(e, relation)))
            expected = {fold(t.object): t for s in subjects for t in kb.lookup(s, relation)}
            expected_entities = {kb.names[k][0] for k in expected}
            claims = [e for e, _, _ in mentioned if e in kb.objects[relation] and e not in subjects]
            for claimed in dict.fromkeys(c for c in claims if c not in expected_entities):
                for subject in subjects:
                    facts = kb.lookup(subject, relation)
                    found.append(Contradiction(sentence, kb.name_of(subject), relation, kb.name_of(claimed),
                                               [t.object for t in facts],
                                               [Citation(t.fact(), t.source, f"triple:{kb.id_of(t)}") for t in facts]))
    return found


def build_ask(out: str | Path, triples: Sequence[Triple] = (), documents: Sequence[Document] = (),
              settings: AskSettings | None = None, encoder: Encoder | None = None) -> Path:
    """Write an ask application directory: ``app.yaml``, ``triples.jsonl`` and (with passages) ``index/``."""
    settings = settings or AskSettings()
    if not triples and not documents:
        raise DataError("nothing to build from: give triples (--triples/--poems) and/or passages (--passages)")
    if triples:
        KnowledgeBase(list(triples))  # fail before writing anything
    rules = load_rules(settings.rules).source if settings.rules else None
    out = Path(out)
    with atomic_directory(out) as tmp:
        if rules is not None:  # the application keeps its own copy of the rules it was built with
            atomic_write_text(tmp / RULES_FILE, rules)
            settings = settings.model_copy(update={"rules": RULES_FILE})
        dump_config(settings, tmp / APP_FILE)
        if triples:
            atomic_write_text(tmp / TRIPLES_FILE, triples_jsonl(triples))
        if documents:
            HybridIndex.build(list(documents), encoder or load_encoder(settings.encoder)).save(tmp / APP_INDEX_DIR)
    return out


def load_ask(path: Path, context: Any) -> AskApp:
    """The registry's loader (`luoxia.apps.registry.APPS`)."""
    return AskApp.load(path, context.guard, context.writer, context.device)
