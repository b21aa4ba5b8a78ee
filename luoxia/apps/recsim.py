"""A seeded user simulator for recommendation: no open click log with item text could be obtained
under a licence that allows redistribution, so impressions are simulated over a real catalogue.

Each user has latent preferences over the catalogue's tags (a Dirichlet draw). Per session the
logging policy shows a slate of items (drawn from a mix of popularity-weighted and uniform choice,
shown in random order); the user examines position p with probability (1 + p)^-position_decay
(position bias) and clicks an examined item with probability sigmoid(base + interest·(θ_u·m_i) +
popularity·pop_i + recency·rec_i); a click becomes a purchase with probability purchase_rate ·
sigmoid(interest·(θ_u·m_i) − 1). ``m_i`` spreads the item's tags evenly; pop_i and rec_i are the
standardised log ratings count and publication year.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from luoxia.checkpoint import atomic_write_text
from luoxia.config import Config
from luoxia.errors import DataError

SLATE_KEY = 10_000  # a slate's id: user × SLATE_KEY + session
IMPRESSION_KEYS = ("user", "session", "time", "item", "position", "clicked", "purchased")


class SimConfig(Config):
    """The simulated users and their behaviour."""

    users: int = Field(300, ge=1, description="simulated users")
    sessions: int = Field(8, ge=3, lt=SLATE_KEY, description="sessions per user (the last two: dev and test)")
    slate: int = Field(20, ge=2, description="items shown per session")
    concentration: float = Field(0.2, gt=0, description="Dirichlet concentration of a user's tag preferences")
    position_decay: float = Field(0.7, ge=0, description="examination probability (1 + position)^-decay")
    base: float = Field(-3.5, description="click logit of an item of no interest, average popularity and age")
    interest: float = Field(12.0, ge=0, description="click logit per unit of tag affinity")
    popularity: float = Field(0.3, description="click logit per standard deviation of log ratings count")
    recency: float = Field(0.3, description="click logit per standard deviation of publication year")
    purchase_rate: float = Field(0.5, ge=0, le=1, description="purchase probability scale given a click")
    explore: float = Field(0.7, ge=0, le=1, description="share of the slate policy drawn uniformly (the rest "
                           "by popularity)")
    seed: int = Field(0, description="the simulation's seed")


@dataclass
class Impression:
    """One item shown to one user: where, when, and what the user did."""

    user: int
    session: int
    time: int  # session index × slate + position: increasing within a user's log
    item: int  # the catalogue's book_id
    position: int  # 0: top of the slate
    clicked: bool
    purchased: bool

    def to_json(self) -> dict:
        return asdict(self)


def standardise(values: np.ndarray) -> np.ndarray:
    """(x − mean) / std, 0 for a constant column."""
    std = float(values.std())
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def topic_matrix(tags: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """(N, T): each item's tags, each with weight 1/len(tags)."""
    column = {name: i for i, name in enumerate(names)}
    out = np.zeros((len(tags), len(names)), np.float64)
    for row, item_tags in zip(out, tags, strict=True):
        known = [column[t] for t in item_tags if t in column]
        row[known] = 1.0 / max(len(known), 1)
    return out


def draw_preferences(rng: np.random.Generator, config: SimConfig, tags: int) -> np.ndarray:
    """(U, T): each user's latent tag preferences, a Dirichlet draw (the simulator's first draw, so a
    benchmark can recompute them from the seed as the ceiling a ranker could reach)."""
    return rng.dirichlet(np.full(tags, config.concentration), size=config.users)


def simulate(topics: np.ndarray, popularity: np.ndarray, recency: np.ndarray, ids: Sequence[int],
             config: SimConfig) -> list[Impression]:
    """Impressions of ``config.users`` users over items with ``topics`` (N, T) and standardised
    ``popularity``/``recency`` (N,); the same config gives the same log."""
    rng = np.random.default_rng(config.seed)
    n, t = topics.shape
    if n < config.slate:
        raise DataError(f"the catalogue has {n} items, fewer than a slate of {config.slate}")
    preferences = draw_preferences(rng, config, t)  # (U, T)
    policy = np.exp(popularity - popularity.max())
    policy = config.explore / n + (1 - config.explore) * policy / policy.sum()  # (N,)
    examine = (1.0 + np.arange(config.slate)) ** -config.position_decay  # (slate,)
    out: list[Impression] = []
    for user in range(config.users):
        affinity = topics @ preferences[user]  # (N,)
        logit = config.base + config.interest * affinity + config.popularity * popularity + config.recency * recency
        click = 1.0 / (1.0 + np.exp(-logit))
        buy = config.purchase_rate / (1.0 + np.exp(1.0 - config.interest * affinity))
        for session in range(config.sessions):
            shown = rng.choice(n, size=config.slate, replace=False, p=policy)  # random order: position ⟂ item
            examined = rng.random(config.slate) < examine
            clicked = examined & (rng.random(config.slate) < click[shown])
            purchased = clicked & (rng.random(config.slate) < buy[shown])
            out += [Impression(user, session, session * config.slate + p, int(ids[i]), p, bool(c), bool(b))
                    for p, (i, c, b) in enumerate(zip(shown, clicked, purchased, strict=True))]
    return out


def write_impressions(path: str | Path, impressions: Sequence[Impression]) -> None:
    """JSONL, one impression a line, written atomically."""
    atomic_write_text(Path(path), "".join(json.dumps(i.to_json()) + "\n" for i in impressions))


def read_impressions(path: str | Path) -> list[Impression]:
    """A JSONL impression log (`write_impressions`); a bad line is a one-line error naming it."""
    out = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(Impression(*(type_(row[k]) for k, type_ in zip(IMPRESSION_KEYS, (int,) * 5 + (bool,) * 2,
                                                                       strict=True))))
        except (ValueError, KeyError, TypeError) as error:
            raise DataError(f"{path}:{number}: not an impression ({', '.join(IMPRESSION_KEYS)}): {error}") from None
    if not out:
        raise DataError(f"{path}: no impressions")
    return out


def histories(impressions: Sequence[Impression]) -> dict[tuple[int, int], list[int]]:
    """(user, session) → the items the user clicked in earlier sessions, oldest first."""
    clicks: dict[int, list[tuple[int, int, int]]] = {}
    for i in impressions:
        if i.clicked:
            clicks.setdefault(i.user, []).append((i.session, i.time, i.item))
    out: dict[tuple[int, int], list[int]] = {}
    for i in impressions:
        if (i.user, i.session) not in out:
            out[(i.user, i.session)] = [item for session, _, item in sorted(clicks.get(i.user, []))
                                        if session < i.session]
    return out


def split_of(session: int, sessions: int) -> str:
    """Sessions in time order: all but the last two train, then dev, then test."""
    return "test" if session == sessions - 1 else "dev" if session == sessions - 2 else "train"
