"""Recommendation with interest scores and personalised copy (`luoxia apps recommend`).

Items are books (title, authors, year, rating, ratings count, tags). A user is a history: titles
they liked (matched to the catalogue) or free keywords. The interest model is a bi-encoder: the
sentence encoder's item vectors (title by author, plus the mean vector of the item's tags) and the
user's vector (the mean of their history entries' vectors) are frozen; a small head trained on the
simulated clicks (`luoxia.apps.recsim`) scores a pair as (A·u)·(A·v) + w·(u∘v) + b. The encoder runs
once per item at build time and once per free-text entry at request time, so ranking the whole
catalogue is one matrix product (a cross-encoder would need one forward pass per item per request).
The ranking adds standardised popularity and recency with weights fitted on a dev split.

Copy: a template (or a writer model) from the profile's keywords and the item's facts, checked so
that every number and capitalised name it states is the item's (`fact_check`), released through
`turn_guard` (names kept, as in the ask application: they are the catalogue's facts); copy failing
the check falls back to the template.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from pydantic import Field

from luoxia.apps.ask import knowledge_guard
from luoxia.apps.interface import AppConfig, turn_guard
from luoxia.apps.recsim import (
    SLATE_KEY,
    Impression,
    SimConfig,
    histories,
    simulate,
    split_of,
    standardise,
    topic_matrix,
)
from luoxia.apps.recsim import write_impressions as write_log
from luoxia.checkpoint import atomic_directory
from luoxia.config import build_config, dump_config, read_yaml
from luoxia.data.corpora import resolve_data_path
from luoxia.encoders import Encoder, load_encoder
from luoxia.errors import CheckpointError, ConfigError, DataError
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.registry import load_writer
from luoxia.runs import APP_FILE
from luoxia.safety.guard import Guard

GOODBOOKS = "shared:books_goodbooks/books.csv"  # the real catalogue (goodbooks-10k)
GOODBOOKS_TAGS = "shared:books_goodbooks/tags.csv"
CATALOGUE_FILE, VECTORS_FILE, HEAD_FILE, TAGS_FILE, USERS_FILE, LOG_FILE = (
    "catalogue.jsonl", "vectors.npy", "head.npz", "tags.json", "users.json", "impressions.jsonl")
# Common genre tags of Goodreads shelves (each is a tag name in goodbooks' tags.csv): the topics items get
GENRES = ("fantasy", "science-fiction", "mystery", "romance", "historical-fiction", "thriller", "horror",
          "young-adult", "classics", "non-fiction", "biography", "memoir", "poetry", "philosophy", "history",
          "self-help", "business", "humor", "childrens", "graphic-novels", "dystopian", "paranormal", "crime",
          "adventure", "science", "psychology", "religion", "travel", "war", "chick-lit")
PARTS = ("interest", "popularity", "recency")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
CAPITALISED = re.compile(r"[A-Z][\w'’.-]*")
SENTENCE_START = re.compile(r"(?:^|[.!?:;—–]\s+|\n)$")
# capitalised at a sentence's start, these are ordinary words, not names
COMMON = frozenset("a an and because by discover enjoy fans for from here if in it like love lovers meet more "
                   "of on rated readers the this try what with you your".split())


class RecommendConfig(AppConfig):
    """A recommend application's ``app.yaml``: the ranking weights (fitted on the dev split at build
    time) and the interest head's training settings."""

    kind: Literal["recommend"] = Field("recommend", description="the application kind")
    name: str = Field("recommend", description="the model name on the server")
    k: int = Field(10, ge=1, le=100, description="items a ranking returns")
    history: int = Field(10, ge=1, description="newest history entries a profile uses")
    tags_per_item: int = Field(2, ge=1, description="genre tags given to an item the catalogue gives none")
    interest_weight: float = Field(1.0, description="ranking weight of the interest logit")
    popularity_weight: float = Field(0.0, description="ranking weight of the standardised log ratings count")
    recency_weight: float = Field(0.0, description="ranking weight of the standardised publication year")
    rank: int = Field(16, ge=1, description="the interest head's projection size")
    steps: int = Field(100, ge=1, description="full-batch AdamW steps training the interest head")
    learning_rate: float = Field(0.02, gt=0, description="the head's AdamW learning rate")
    seed: int = Field(0, description="the head's initialisation seed")


class _Context(Protocol):  # `luoxia.apps.registry.AppContext`, which imports this module
    guard: Guard | None
    writer: TextGenerator | None
    device: str


@dataclass
class Book:
    """One catalogue item and the facts copy may state."""

    book_id: int
    title: str
    authors: str
    year: int | None = None
    rating: float | None = None
    ratings_count: int = 0
    language: str = ""
    tags: list[str] = field(default_factory=list)

    @property
    def short_title(self) -> str:
        """The title without a series note: "The Hunger Games (The Hunger Games, #1)" → "The Hunger Games"."""
        return self.title.split(" (")[0].strip() or self.title

    @property
    def text(self) -> str:
        return f"{self.short_title} by {self.authors}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Ranked:
    """One recommendation: the item, its fused score and the weighted parts that make it up."""

    book: Book
    score: float
    interest: float  # the head's click probability
    parts: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"item": self.book.to_json(), "score": round(self.score, 4), "interest": round(self.interest, 4),
                "parts": {k: round(v, 4) for k, v in self.parts.items()}}


@dataclass
class Copy:
    """Personalised copy for one item: the text released, where it came from, the fact check."""

    text: str
    source: str  # "writer" | "template" (the writer's failed the check, or there is no writer)
    passed: bool  # the released text's fact check
    problems: list[str] = field(default_factory=list)  # the writer's text's, when it was not used
    keywords: list[str] = field(default_factory=list)
    safety: dict[str, Any] = field(default_factory=dict)
    blocked: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def bundled_books_path() -> Path:
    """Luoxia's own 40-book catalogue (public-domain classics; ratings illustrative)."""
    return Path(str(resources.files("luoxia.apps") / "data" / "recommend_books.csv"))


def _number(value: str | None, kind: type) -> Any:
    try:
        return kind(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def read_books(path: str | Path, limit: int | None = None) -> list[Book]:
    """A catalogue CSV: goodbooks' books.csv (``original_publication_year``, ``average_rating``…) or
    Luoxia's shape (``year``, ``tags`` separated by ';'); the first ``limit`` rows."""
    path = resolve_data_path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such catalogue file")
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))[:limit]
    if not rows or not {"book_id", "title", "authors"} <= set(rows[0]):
        raise DataError(f"{path}: a catalogue needs rows with columns book_id, title, authors")
    books = [Book(int(r["book_id"]), r["title"].strip(), r["authors"].strip(),
                  _number(r.get("year") or r.get("original_publication_year"), int),
                  _number(r.get("average_rating"), float), _number(r.get("ratings_count"), int) or 0,
                  (r.get("language") or r.get("language_code") or "").strip(),
                  [t for t in (r.get("tags") or "").split(";") if t]) for r in rows]
    if len({b.book_id for b in books}) != len(books):
        raise DataError(f"{path}: book_id values repeat")
    return books


def genre_names(tags_csv: str | Path | None = GOODBOOKS_TAGS) -> list[str]:
    """`GENRES` that are tag names of the tag table (all of them when it is absent)."""
    try:
        path = resolve_data_path(tags_csv) if tags_csv else None
    except DataError:
        path = None
    if path is None or not path.is_file():
        return list(GENRES)
    with path.open(encoding="utf-8", newline="") as file:
        names = {row.get("tag_name", "") for row in csv.DictReader(file)}
    return [g for g in GENRES if g in names]


def tag_descriptions(names: Sequence[str]) -> list[str]:
    """What a tag is encoded as: "science fiction books"."""
    return [f"{n.replace('-', ' ')} books" for n in names]


def assign_tags(books: Sequence[Book], title_vectors: np.ndarray, names: Sequence[str], tag_vectors: np.ndarray,
                k: int) -> None:
    """Give each book without tags the ``k`` genre tags nearest "title by author" (cosine)."""
    similarity = title_vectors @ tag_vectors.T  # (N, T)
    for book, row in zip(books, similarity, strict=True):
        if not book.tags:
            book.tags = [names[j] for j in np.argsort(-row, kind="stable")[:k]]


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-9)).astype(np.float32)


def item_vectors(books: Sequence[Book], title_vectors: np.ndarray, names: Sequence[str],
                 tag_vectors: np.ndarray) -> np.ndarray:
    """(N, d): an item is its title-by-author vector plus the mean of its tags' vectors, normalised."""
    topics = topic_matrix([b.tags for b in books], names)  # (N, T), rows sum to 1
    return normalise(title_vectors + topics @ tag_vectors)


def features(books: Sequence[Book]) -> tuple[np.ndarray, np.ndarray]:
    """Standardised log ratings count and publication year (years before 1800 count as 1800)."""
    popularity = standardise(np.log1p(np.array([b.ratings_count for b in books], np.float64)))
    years = np.array([b.year if b.year is not None else 1800 for b in books], np.float64)
    return popularity, standardise(np.clip(years, 1800, None))


@dataclass
class InterestHead:
    """logit(u, v) = (A·u)·(A·v) + w·(u∘v) + c·v + b over frozen encoder vectors u (user) and v (item):
    a low-rank bilinear match, a weighted cosine (w starts at 1: the plain cosine) and an item term."""

    a: np.ndarray  # (r, d)
    w: np.ndarray  # (d,)
    c: np.ndarray  # (d,)
    b: float

    def logits(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Row-wise pairs: users (B, d), items (B, d) → (B,)."""
        return ((users @ self.a.T) * (items @ self.a.T)).sum(-1) + (users * items) @ self.w + items @ self.c + self.b

    def score_all(self, user: np.ndarray, items: np.ndarray) -> np.ndarray:
        """One user (d,) against every item (N, d) → (N,)."""
        return (items @ self.a.T) @ (self.a @ user) + items @ (self.w * user + self.c) + self.b

    def save(self, path: Path) -> None:
        np.savez(path, a=self.a, w=self.w, c=self.c, b=np.array([self.b]))

    @classmethod
    def load(cls, path: Path) -> InterestHead:
        with np.load(path) as data:
            return cls(data["a"], data["w"], data["c"], float(data["b"][0]))


def train_head(users: np.ndarray, items: np.ndarray, clicked: np.ndarray, config: RecommendConfig) -> InterestHead:
    """Fit the head on (user, item, clicked) rows: full-batch AdamW on the binary cross-entropy, from
    the plain cosine and the base click rate."""
    generator = torch.Generator().manual_seed(config.seed)
    u, v = torch.from_numpy(users), torch.from_numpy(items)  # (B, d)
    y = torch.from_numpy(clicked.astype(np.float32))  # (B,)
    rate = float(y.mean().clamp(1e-4, 1 - 1e-4))
    a = (torch.randn(config.rank, u.shape[1], generator=generator) * 0.1).requires_grad_()
    w, c = torch.ones(u.shape[1], requires_grad=True), torch.zeros(u.shape[1], requires_grad=True)
    b = torch.tensor([np.log(rate / (1 - rate))], dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.AdamW([a, w, c, b], lr=config.learning_rate, weight_decay=0.01)
    for _ in range(config.steps):
        logits = ((u @ a.T) * (v @ a.T)).sum(-1) + (u * v) @ w + v @ c + b  # (B,)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return InterestHead(*(t.detach().numpy().copy() for t in (a, w, c)), float(b.item()))


@dataclass
class Rows:
    """Impressions with a history, as arrays: catalogue index, user vector, position, labels, slate key."""

    items: np.ndarray  # (B,) catalogue indices
    users: np.ndarray  # (B, d) history vectors
    positions: np.ndarray  # (B,)
    clicked: np.ndarray  # (B,) bool
    purchased: np.ndarray  # (B,) bool
    slates: np.ndarray  # (B,) one id per (user, session)
    history: list[list[int]]  # catalogue indices, per row


def impression_rows(impressions: Sequence[Impression], books: Sequence[Book], vectors: np.ndarray,
                    split: str, sessions: int) -> Rows:
    """The impressions of one split (`split_of`) whose user has clicked something before."""
    index = {b.book_id: i for i, b in enumerate(books)}
    earlier = histories(impressions)
    chosen = [i for i in impressions if split_of(i.session, sessions) == split and earlier[(i.user, i.session)]]
    hist = [[index[b] for b in earlier[(i.user, i.session)]] for i in chosen]
    users = normalise(np.stack([vectors[h].mean(0) for h in hist])) if chosen else np.zeros((0, vectors.shape[1]),
                                                                                             np.float32)
    return Rows(np.array([index[i.item] for i in chosen], int), users, np.array([i.position for i in chosen], int),
                np.array([i.clicked for i in chosen], bool), np.array([i.purchased for i in chosen], bool),
                np.array([i.user * SLATE_KEY + i.session for i in chosen], int), hist)


def fit_weights(interest: np.ndarray, popularity: np.ndarray, recency: np.ndarray, positions: np.ndarray,
                clicked: np.ndarray) -> dict[str, float]:
    """Ranking weights from a logistic regression of dev clicks on the three parts plus log(1 +
    position) (a nuisance term, so position bias does not leak into the weights; dropped at ranking)."""
    from sklearn.linear_model import LogisticRegression  # heavy: only when building

    if clicked.all() or not clicked.any():
        return {"interest": 1.0, "popularity": 0.0, "recency": 0.0}
    x = np.stack([interest, popularity, recency, np.log1p(positions)], 1)  # (B, 4)
    model = LogisticRegression(C=10.0, max_iter=1000).fit(x, clicked)
    return {p: round(float(c), 4) for p, c in zip(PARTS, model.coef_[0][:3], strict=True)}


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """ROC AUC (ties count half); None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None


def ndcg_at(scores: np.ndarray, gains: np.ndarray, slates: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over the slates with a positive gain, each slate ranked by ``scores``."""
    values = []
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for slate in np.unique(slates):
        mask = slates == slate
        g = gains[mask].astype(np.float64)
        if g.sum() <= 0:
            continue
        order = np.argsort(-scores[mask], kind="stable")[:k]
        ideal = np.sort(g)[::-1][:k]
        values.append(float((g[order] * discount[:len(order)]).sum() / (ideal * discount[:len(ideal)]).sum()))
    return float(np.mean(values)) if values else 0.0


def _figures(text: str) -> list[str]:
    return [n.replace(",", "").rstrip(".") for n in NUMBER.findall(text)]


def fact_check(text: str, book: Book, keywords: Sequence[str] = ()) -> list[str]:
    """What ``text`` states that is not the item's: a number that is not its year, rating, ratings
    count or a number in its title/authors, a capitalised word not in its title, authors or tags
    (a common word starting a sentence is fine), or a missing title. Empty: the copy passes."""
    own = " ".join([book.title, book.authors, *book.tags, *keywords])
    numbers = set(_figures(own))
    numbers |= {str(abs(book.year))} if book.year is not None else set()
    if book.rating is not None:
        numbers |= {f"{book.rating:.2f}", f"{book.rating:.1f}", f"{book.rating:g}"}
    numbers |= {str(book.ratings_count)} if book.ratings_count else set()
    words = {w.lower() for w in re.findall(r"[\w'’-]+", own)}
    words |= {m.group().rstrip(".").lower() for m in CAPITALISED.finditer(own)}  # initials: "J.K. Rowling"
    words |= {"bc"} if book.year is not None and book.year < 0 else set()
    problems = [f"the number {n} is not the item's" for n in _figures(text) if n not in numbers]
    for match in CAPITALISED.finditer(text):
        word = match.group().rstrip(".").lower()
        start = SENTENCE_START.search(text[max(0, match.start() - 3):match.start()]) is not None
        if word not in words and not (start and word in COMMON):
            problems.append(f"the name '{match.group().rstrip('.')}' is not the item's")
    if book.short_title.lower() not in text.lower():
        problems.append(f"the copy does not name the item ('{book.short_title}')")
    return problems


def template_copy(book: Book, keywords: Sequence[str]) -> str:
    """Copy from the item's facts only."""
    liked = " and ".join(k.replace("-", " ") for k in keywords[:2]) or "good books"
    parts = [f"For readers who like {liked}: {book.short_title} by {book.authors}"]
    if book.year is not None:
        parts.append(f" ({book.year})" if book.year >= 0 else f" ({-book.year} BC)")
    kinds = " and ".join(t.replace("-", " ") for t in book.tags[:2])
    parts.append(f", {'an' if kinds[:1] in set('aeiou') else 'a'} {kinds} read." if book.tags else ".")
    if book.rating is not None:
        parts.append(f" Rated {book.rating:.2f} on average"
                     + (f" by {book.ratings_count:,} readers." if book.ratings_count else "."))
    return "".join(parts)


class RecommendApp:
    """Rank the catalogue for a user and write copy for an item (`App`, kind ``recommend``)."""

    kind = "recommend"

    def __init__(self, config: RecommendConfig, books: list[Book], vectors: np.ndarray, head: InterestHead,
                 tag_names: list[str], tag_vectors: np.ndarray, users: dict[str, list[str]] | None = None,
                 guard: Guard | None = None, writer: TextGenerator | None = None, encoder: Encoder | None = None,
                 device: str = "auto"):
        self.config, self.books, self.vectors, self.head = config, books, vectors, head
        self.tag_names, self.tag_vectors, self.users = tag_names, tag_vectors, users or {}
        # titles and authors are the catalogue's public facts (the fact check allows no other name): the
        # guard keeps PERSON/ADDRESS/ORG in copy, as the ask application's does; contact data is still redacted
        self.guard, self.writer, self._encoder, self.device = knowledge_guard(guard), writer, encoder, device
        self.popularity, self.recency = features(books)
        self.by_title = {b.short_title.casefold(): i for i, b in reversed(list(enumerate(books)))}
        self.by_title.update({b.title.casefold(): i for i, b in reversed(list(enumerate(books)))})
        self.by_id = {b.book_id: i for i, b in enumerate(books)}

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder(self.config.encoder, self.device)
        return self._encoder

    def entries(self, user: str | int | Sequence[str]) -> list[str]:
        """A user's history entries: a known user id's clicked titles, or titles/keywords given as a
        list or as one text separated by ';', ',' or new lines."""
        if isinstance(user, int) or (isinstance(user, str) and user.strip() in self.users):
            found = self.history_of(str(user))
        else:
            found = re.split(r"[;,\n]", user) if isinstance(user, str) else list(user)
        found = [e.strip() for e in found if e and e.strip()][-self.config.history:]
        if not found:
            raise DataError("the history is empty: give a few liked titles or keywords")
        return found

    def history_of(self, user_id: str) -> list[str]:
        """A simulated user's clicked titles, oldest first."""
        if user_id.strip() not in self.users:
            raise DataError(f"unknown user '{user_id}'; this application knows users 0–{len(self.users) - 1}")
        return self.users[user_id.strip()]

    def profile(self, entries: Sequence[str]) -> tuple[np.ndarray, list[int], list[str]]:
        """The user vector (d,), the catalogue items the history names, and its top tags (keywords)."""
        matched = [self.by_title.get(e.casefold()) for e in entries]
        free = [e for e, m in zip(entries, matched, strict=True) if m is None]
        rows = [self.vectors[m] for m in matched if m is not None]
        tags = Counter(t for m in matched if m is not None for t in self.books[m].tags)
        if free:
            encoded = normalise(self.encoder.encode(free))  # (F, d)
            rows += list(encoded)
            for vector, entry in zip(encoded, free, strict=True):
                exact = entry.casefold().replace(" ", "-")
                nearest = self.tag_names[int(np.argmax(self.tag_vectors @ vector))]
                tags[exact if exact in self.tag_names else nearest] += 1
        user = normalise(np.mean(rows, 0))
        return user, [m for m in matched if m is not None], [t for t, _ in tags.most_common(3)]

    def rank(self, user: str | int | Sequence[str], k: int | None = None) -> list[Ranked]:
        """The ``k`` best items the history does not already hold, with their score parts."""
        vector, seen, _ = self.profile(self.entries(user))
        logits = self.head.score_all(vector, self.vectors)  # (N,)
        weights = (self.config.interest_weight, self.config.popularity_weight, self.config.recency_weight)
        parts = np.stack([logits, self.popularity, self.recency], 1) * np.array(weights)  # (N, 3)
        score = parts.sum(1)
        score[seen] = -np.inf
        order = np.argsort(-score, kind="stable")[:k or self.config.k]
        return [Ranked(self.books[i], float(score[i]), float(1 / (1 + np.exp(-logits[i]))),
                       dict(zip(PARTS, map(float, parts[i]), strict=True))) for i in order if np.isfinite(score[i])]

    def item(self, item: int | str) -> Book:
        """A catalogue item by book_id or title."""
        if isinstance(item, int) or str(item).isdigit():
            if int(item) in self.by_id:
                return self.books[self.by_id[int(item)]]
        elif str(item).casefold() in self.by_title:
            return self.books[self.by_title[str(item).casefold()]]
        raise DataError(f"no item '{item}' in the catalogue (give a book_id or a title)")

    def copy(self, user: str | int | Sequence[str], item: int | str) -> Copy:
        """Copy for ``item`` addressed to ``user``'s keywords: the writer's when it passes the fact
        check, else the template's; released through the guard."""
        entries = self.entries(user)
        book, (_, _, keywords) = self.item(item), self.profile(entries)
        held: dict[str, Any] = {"source": "template", "problems": []}

        def compose() -> str:
            fallback = template_copy(book, keywords)
            if self.writer is None:
                return fallback
            written = self._write(book, keywords)
            held["problems"] = fact_check(written, book, keywords) if written else ["the writer wrote nothing"]
            if held["problems"]:
                return fallback
            held["source"] = "writer"
            return written

        text, safety, blocked = turn_guard(self.guard, "; ".join(entries), compose)
        passed = not blocked and not fact_check(text, book, keywords)
        problems = held["problems"]  # they quote the writer's text, which the guard never released
        if self.guard is not None and self.guard.policy.pii != "allow":
            problems = [self.guard.redactor(problem) for problem in problems]
        return Copy(text, held["source"], passed, problems, keywords, safety, blocked)

    def _write(self, book: Book, keywords: Sequence[str]) -> str:
        assert self.writer is not None
        facts = (f"title: {book.short_title}; author: {book.authors}; year: {book.year}; average rating: "
                 f"{book.rating}; ratings: {book.ratings_count}; tags: {', '.join(book.tags)}")
        messages = [{"role": "system", "content": "Write one or two sentences of advertising copy for this book, "
                     f"for a reader who likes {', '.join(keywords)}. State only these facts; no other names or "
                     f"numbers.\nFacts: {facts}"}, {"role": "user", "content": "Write the copy."}]
        prompt, stops = self.writer.render_chat(messages)
        config = GenerationConfig(max_new_tokens=96, temperature=0, stop=stops, seed=0)
        return self.writer.generate([prompt], config)[0].text.strip()


def encode_catalogue(books: list[Book], encoder: Encoder, names: Sequence[str],
                     tags_per_item: int) -> tuple[np.ndarray, np.ndarray]:
    """Tag the untagged books and return (item vectors (N, d), tag vectors (T, d))."""
    tag_vectors = normalise(encoder.encode(tag_descriptions(names)))
    titles = normalise(encoder.encode([b.text for b in books]))
    assign_tags(books, titles, names, tag_vectors, tags_per_item)
    return item_vectors(books, titles, names, tag_vectors), tag_vectors


def train_interest(books: list[Book], vectors: np.ndarray, impressions: Sequence[Impression], sessions: int,
                   config: RecommendConfig) -> tuple[InterestHead, dict[str, float]]:
    """The head on the train split, the ranking weights on the dev split (the test split is untouched)."""
    train = impression_rows(impressions, books, vectors, "train", sessions)
    dev = impression_rows(impressions, books, vectors, "dev", sessions)
    if not train.clicked.any():
        raise DataError("no clicks with a history in the train split: simulate more users or sessions")
    head = train_head(train.users, vectors[train.items], train.clicked, config)
    popularity, recency = features(books)
    weights = fit_weights(head.logits(dev.users, vectors[dev.items]), popularity[dev.items], recency[dev.items],
                          dev.positions, dev.clicked)
    return head, weights


def simulate_catalogue(books: list[Book], names: Sequence[str], sim: SimConfig) -> list[Impression]:
    """`simulate` over tagged ``books``."""
    popularity, recency = features(books)
    return simulate(topic_matrix([b.tags for b in books], names), popularity, recency, [b.book_id for b in books],
                    sim)


def build_recommend(out: str | Path, books: list[Book], config: RecommendConfig | None = None,
                    sim: SimConfig | None = None, encoder: Encoder | None = None,
                    names: Sequence[str] | None = None, impressions: Sequence[Impression] | None = None
                    ) -> dict[str, Any]:
    """Write a recommend application: tag and encode the catalogue, simulate impressions (unless
    given), train the interest head, fit the ranking weights; a summary of what was built."""
    config, sim = config or RecommendConfig(), sim or SimConfig()
    encoder = encoder or load_encoder(config.encoder)
    names = list(names or genre_names())
    vectors, tag_vectors = encode_catalogue(books, encoder, names, config.tags_per_item)
    if impressions is None:
        impressions = simulate_catalogue(books, names, sim)
    else:
        known = {b.book_id for b in books}
        if unknown := sorted({i.item for i in impressions} - known)[:3]:
            raise DataError(f"impressions name items the catalogue lacks (book_id {unknown}…)")
        sim = sim.model_copy(update={"users": max(i.user for i in impressions) + 1,
                                     "sessions": max(3, max(i.session for i in impressions) + 1)})
    head, weights = train_interest(books, vectors, impressions, sim.sessions, config)
    config = config.model_copy(update={f"{p}_weight": w for p, w in weights.items()})
    by_id = {b.book_id: b for b in books}
    last = histories(impressions)
    users = {str(u): [by_id[i].short_title for i in h] for (u, session), h in sorted(last.items())
             if session == sim.sessions - 1}
    with atomic_directory(Path(out)) as tmp:
        dump_config(config, tmp / APP_FILE)
        (tmp / CATALOGUE_FILE).write_text("".join(json.dumps(b.to_json(), ensure_ascii=False) + "\n" for b in books),
                                          encoding="utf-8")
        np.save(tmp / VECTORS_FILE, vectors)
        head.save(tmp / HEAD_FILE)
        (tmp / TAGS_FILE).write_text(json.dumps({"names": names, "vectors": tag_vectors.tolist()}), encoding="utf-8")
        (tmp / USERS_FILE).write_text(json.dumps(users), encoding="utf-8")
        write_log(tmp / LOG_FILE, impressions)
    return {"items": len(books), "impressions": len(impressions), "clicks": sum(i.clicked for i in impressions),
            "weights": weights, "users": len(users)}


def load_recommend(path: str | Path, guard: Guard | None = None, writer: TextGenerator | None = None,
                   device: str = "auto", encoder: Encoder | None = None) -> RecommendApp:
    """A recommend application directory (`build_recommend`)."""
    path = Path(path)
    if not (path / APP_FILE).is_file():
        raise ConfigError(f"{path}: not a recommend application (no {APP_FILE}); build one with "
                          "`luoxia apps recommend build`")
    config = build_config(RecommendConfig, read_yaml(path / APP_FILE), str(path / APP_FILE))
    try:
        books = [Book(**json.loads(line)) for line in (path / CATALOGUE_FILE).read_text(encoding="utf-8").splitlines()]
        tags = json.loads((path / TAGS_FILE).read_text(encoding="utf-8"))
        vectors, head = np.load(path / VECTORS_FILE), InterestHead.load(path / HEAD_FILE)
        users = json.loads((path / USERS_FILE).read_text(encoding="utf-8")) if (path / USERS_FILE).is_file() else {}
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path}: a damaged recommend application ({error}); build it again") from None
    if writer is None and config.writer:
        writer = load_writer(config.writer, device)
    return RecommendApp(config, books, vectors, head, tags["names"], np.array(tags["vectors"], np.float32), users,
                        guard, writer, encoder, device)


def load_recommend_app(path: Path, context: _Context) -> RecommendApp:
    """`luoxia.apps.registry.APPS`'s loader."""
    return load_recommend(path, context.guard, context.writer, context.device)
