"""Recommendation: AUC and NDCG@10 of the interest model and the fused ranker on held-out simulated
impressions, against popularity and TF-IDF; the share of copy passing the fact check.

    python bench/apps_recommend.py [--books 2000] [--users 600] [--sessions 8] [--slate 20] [--steps 100]
                                   [--copies 200] [--writer SPEC] [--seed 0]
    python bench/apps_recommend.py --books 300 --users 60 --steps 50 --copies 20   # a smoke run

Data: the goodbooks-10k catalogue in ../shared/data/books_goodbooks (the first ``--books`` rows), else
Luoxia's 40 bundled books. Tags: each book gets its 2 genre tags nearest "title by author" by MiniLM
similarity (only a sample of goodbooks' book→tag table ships). Impressions: `luoxia.apps.recsim`
(seeded users with Dirichlet tag preferences, position bias, popularity and recency effects). Sessions
in time order: all but the last two train the interest head, the second-to-last (dev) fits the fusion
weights, the last (test) is scored here only. Rows: impressions whose user clicked something in an
earlier session (the history). AUC over test impressions (clicked or not); NDCG@10 over test slates
with a click (gain: 1 per click, +1 for a purchase), each slate ranked by the method's score.
Baselines: popularity (log ratings count); TF-IDF cosine between the history's item texts and the
item's text (title, authors, tags). Copy: for ``--copies`` test users, the copy of their top-ranked
item (the writer's when ``--writer`` is given, else the template) and its fact check; the check itself
is measured on template copies with the year or the author swapped for another book's (caught share).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
from report import print_report
from sklearn.feature_extraction.text import TfidfVectorizer

from luoxia.apps.recommend import (
    GOODBOOKS,
    RecommendApp,
    RecommendConfig,
    auc,
    bundled_books_path,
    encode_catalogue,
    fact_check,
    features,
    genre_names,
    impression_rows,
    ndcg_at,
    read_books,
    template_copy,
    train_interest,
)
from luoxia.apps.recsim import SLATE_KEY, SimConfig, draw_preferences, simulate, topic_matrix
from luoxia.data.corpora import resolve_data_path
from luoxia.encoders import load_encoder
from luoxia.errors import DataError
from luoxia.registry import load_writer


def catalogue(limit: int) -> tuple[str, list]:
    try:
        path = resolve_data_path(GOODBOOKS)
    except DataError:
        path = None
    if path is None or not path.is_file():
        return "luoxia bundled (40 books)", read_books(bundled_books_path(), limit)
    return f"goodbooks-10k (first {limit})", read_books(path, limit)


def swapped(text: str, book, other) -> str:
    """The copy with one fact of ``book`` replaced by ``other``'s (the year when both have one, else the author)."""
    if book.year is not None and other.year is not None and other.year != book.year:
        return text.replace(f"({book.year})", f"({other.year})")
    return text.replace(f"by {book.authors}", f"by {other.authors}")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=int, default=2000)
    parser.add_argument("--users", type=int, default=600)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--slate", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--writer", default=None, help="a writer model for copy (run dir or openai:BASE#MODEL)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    source, books = catalogue(args.books)
    names = genre_names()
    config = RecommendConfig(steps=args.steps, seed=args.seed)
    encoder = load_encoder(config.encoder, "cpu")
    vectors, tag_vectors = encode_catalogue(books, encoder, names, config.tags_per_item)
    encoded = time.perf_counter()
    sim = SimConfig(users=args.users, sessions=args.sessions, slate=args.slate, seed=args.seed)
    popularity, recency = features(books)
    topics = topic_matrix([b.tags for b in books], names)  # (N, T)
    log = simulate(topics, popularity, recency, [b.book_id for b in books], sim)
    head, weights = train_interest(books, vectors, log, sim.sessions, config)
    trained = time.perf_counter()
    test = impression_rows(log, books, vectors, "test", sim.sessions)
    texts = [f"{b.text}. {' '.join(b.tags)}" for b in books]
    tfidf = TfidfVectorizer(sublinear_tf=True).fit(texts)
    items = tfidf.transform(texts)
    history = tfidf.transform([" ".join(texts[i] for i in h) for h in test.history])
    interest = head.logits(test.users, vectors[test.items])
    methods = {
        "popularity": popularity[test.items],
        "tfidf": np.asarray(history.multiply(items[test.items]).sum(1)).ravel(),
        "interest": interest,
        "fused": (weights["interest"] * interest + weights["popularity"] * popularity[test.items]
                  + weights["recency"] * recency[test.items]),
    }
    # the ceiling: the simulator's own tag affinity of each test pair (not a method: it reads the latent truth)
    truth = draw_preferences(np.random.default_rng(sim.seed), sim, len(names))[test.slates // SLATE_KEY]
    ceiling = (topics[test.items] * truth).sum(1)
    gains = test.clicked.astype(float) + test.purchased
    scores = {m: {"auc": round(auc(s, test.clicked) or 0.0, 4), "ndcg@10": round(ndcg_at(s, gains, test.slates), 4)}
              for m, s in methods.items()}
    config = config.model_copy(update={f"{p}_weight": w for p, w in weights.items()})
    writer = load_writer(args.writer, "auto") if args.writer else None
    app = RecommendApp(config, books, vectors, head, names, tag_vectors, writer=writer, encoder=encoder)
    rng = random.Random(args.seed)
    users = sorted({tuple(h) for h in test.history})[:args.copies]
    copies, caught = [], []
    for h in users:
        titles = [books[i].short_title for i in h]
        top = app.rank(titles, 1)[0].book
        made = app.copy(titles, top.book_id)
        copies.append(made)
        keywords = made.keywords
        other = books[rng.randrange(len(books))]
        if other.book_id != top.book_id:
            caught.append(bool(fact_check(swapped(template_copy(top, keywords), top, other), top, keywords)))
    return {
        "bench": "apps_recommend", "catalogue": source, "items": len(books), "tags": len(names),
        "users": sim.users, "impressions": len(log), "clicks": int(sum(i.clicked for i in log)),
        "test_impressions": len(test.items), "test_clicks": int(test.clicked.sum()),
        "test_slates": int(len(np.unique(test.slates))), "weights": weights, **scores,
        "ceiling_true_affinity": {"auc": round(auc(ceiling, test.clicked) or 0.0, 4),
                                  "ndcg@10": round(ndcg_at(ceiling, gains, test.slates), 4)},
        "copy_checked": len(copies), "copy_pass_share": round(float(np.mean([c.passed for c in copies])), 4)
        if copies else None,
        "copy_from_writer_share": round(float(np.mean([c.source == "writer" for c in copies])), 4) if copies else None,
        "writer": args.writer, "fact_check_catches_swapped": round(float(np.mean(caught)), 4) if caught else None,
        "seconds": {"encode": round(encoded - start, 1), "simulate_train": round(trained - encoded, 1),
                    "total": round(time.perf_counter() - start, 1)},
    }


if __name__ == "__main__":
    print_report(main)
