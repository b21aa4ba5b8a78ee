"""Recommendation (`luoxia.apps.recommend`, `luoxia.apps.recsim`): the seeded simulator, the interest
head, ranking with its parts, the fact check, copy from a writer or the template, the guard, the CLI,
bad inputs. Built on Luoxia's 40 bundled books with a weightless hashing encoder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from luoxia.apps.interface import App
from luoxia.apps.recommend import (
    Book,
    RecommendApp,
    RecommendConfig,
    auc,
    build_recommend,
    bundled_books_path,
    fact_check,
    load_recommend,
    ndcg_at,
    read_books,
    template_copy,
    train_head,
    train_interest,
)
from luoxia.apps.recsim import Impression, SimConfig, histories, read_impressions, simulate, write_impressions
from luoxia.apps.registry import load_app
from luoxia.cli import app as cli
from luoxia.errors import CheckpointError, ConfigError, DataError
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard
from tests.echo import ScriptedWriter, WordHashEncoder

SIM = SimConfig(users=40, sessions=4, slate=8, base=-1.5)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("recommend") / "app"
    build_recommend(out, read_books(bundled_books_path()), RecommendConfig(steps=20), SIM, WordHashEncoder())
    return out


@pytest.fixture(scope="module")
def app(app_dir: Path) -> RecommendApp:
    return load_recommend(app_dir, encoder=WordHashEncoder())


def test_the_simulator_is_seeded_and_biased_by_position(tmp_path: Path):
    topics = np.eye(4)[np.arange(40) % 4]  # (40, 4): item i has topic i mod 4
    flat = np.zeros(40)
    config = SimConfig(users=200, sessions=3, slate=10, position_decay=2.0, base=0.0)
    log = simulate(topics, flat, flat, list(range(40)), config)
    assert log == simulate(topics, flat, flat, list(range(40)), config)
    assert log != simulate(topics, flat, flat, list(range(40)), config.model_copy(update={"seed": 1}))
    top = np.mean([i.clicked for i in log if i.position == 0])
    last = np.mean([i.clicked for i in log if i.position == 9])
    assert top > 3 * last  # examination 1 vs 1/100
    assert all(i.clicked for i in log if i.purchased)
    write_impressions(tmp_path / "log.jsonl", log)
    assert read_impressions(tmp_path / "log.jsonl") == log
    (tmp_path / "bad.jsonl").write_text('{"user": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1: not an impression"):
        read_impressions(tmp_path / "bad.jsonl")
    with pytest.raises(DataError, match="fewer than a slate"):
        simulate(topics[:5], flat[:5], flat[:5], range(5), config)


def test_history_holds_only_earlier_sessions():
    log = [Impression(0, 0, 0, 7, 0, True, False), Impression(0, 1, 8, 8, 0, True, False),
           Impression(0, 1, 9, 9, 1, False, False), Impression(0, 2, 16, 9, 0, False, False)]
    assert histories(log) == {(0, 0): [], (0, 1): [7], (0, 2): [7, 8]}


def test_the_head_learns_a_click_rule_the_cosine_misses():
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(400, 8)).astype(np.float32), rng.normal(size=(400, 8)).astype(np.float32)
    clicked = items[:, 0] > 0  # an item-side rule: the item term learns it
    head = train_head(users, items, clicked, RecommendConfig(steps=100, rank=4, learning_rate=0.05))
    assert auc(head.logits(users, items), clicked) > 0.9
    assert abs(auc((users * items).sum(1), clicked) - 0.5) < 0.1
    # the one-user path scores as the row-wise one (same sums, other order: float32 rounding)
    np.testing.assert_allclose(head.score_all(users[0], items), head.logits(np.repeat(users[:1], 400, 0), items),
                               rtol=1e-4, atol=1e-4)


def test_ranking_weights_never_see_the_test_session():
    books = read_books(bundled_books_path())
    vectors = WordHashEncoder().encode([b.text for b in books])
    topics = np.eye(4)[np.arange(40) % 4]
    flat = np.zeros(40)
    log = simulate(topics, flat, flat, [b.book_id for b in books], SIM)
    flipped = [Impression(**{**i.to_json(), "clicked": not i.clicked}) if i.session == 3 else i for i in log]
    config = RecommendConfig(steps=10)
    (head, weights), (head2, weights2) = (train_interest(books, vectors, x, 4, config) for x in (log, flipped))
    assert weights == weights2 and np.array_equal(head.a, head2.a)  # bit-identical: the same computation


def test_metrics_on_a_hand_worked_slate():
    scores, gains, slates = np.array([0.9, 0.8, 0.1]), np.array([0.0, 1.0, 0.0]), np.array([1, 1, 1])
    assert ndcg_at(scores, gains, slates) == pytest.approx(1 / np.log2(3))  # the click at rank 2
    assert auc(scores, gains > 0) == pytest.approx(0.5)  # above one negative, below the other
    assert auc(scores, np.zeros(3, bool)) is None


def test_the_built_app_ranks_with_its_parts(app_dir: Path, app: RecommendApp):
    config = json.loads(json.dumps(__import__("yaml").safe_load((app_dir / "app.yaml").read_text())))
    assert config["kind"] == "recommend" and {"interest_weight", "popularity_weight"} <= set(config)
    loaded = load_app(app_dir)
    assert isinstance(loaded, App) and (loaded.kind, loaded.name) == ("recommend", "recommend")
    ranked = app.rank("Dracula; Frankenstein", 5)
    assert len(ranked) == 5 and {"Dracula", "Frankenstein"}.isdisjoint(r.book.title for r in ranked)
    for r in ranked:
        assert r.score == pytest.approx(sum(r.parts.values()), abs=1e-9)  # float64 sum of the same three parts
        assert 0 < r.interest < 1
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    assert app.rank(["Dracula", "Frankenstein"], 5)[0].book == ranked[0].book  # a list is the same history
    assert len(app.rank("0", 3)) == 3  # a simulated user's clicks
    assert app.rank("horror stories", 3)  # free text goes through the encoder


def test_bad_users_and_items(app: RecommendApp, app_dir: Path, tmp_path: Path):
    with pytest.raises(DataError, match="history is empty"):
        app.rank(" ; ", 3)
    with pytest.raises(DataError, match="no item 'Nonexistent'"):
        app.copy("Dracula", "Nonexistent")
    with pytest.raises(DataError, match="no item '99999'"):
        app.copy("Dracula", 99999)
    with pytest.raises(DataError, match="columns book_id, title, authors"):
        (tmp_path / "c.csv").write_text("a,b\n1,2\n", encoding="utf-8")
        read_books(tmp_path / "c.csv")
    broken = tmp_path / "broken"
    shutil.copytree(app_dir, broken)
    (broken / "head.npz").unlink()
    with pytest.raises(CheckpointError, match="damaged recommend application"):
        load_recommend(broken)
    (broken / "app.yaml").write_text("kind: recommend\nnmae: x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nmae"):
        load_recommend(broken)


def test_fact_check_allows_only_the_items_facts():
    book = Book(9, "1984", "George Orwell, Erich Fromm", 1949, 4.17, 2115562, "eng", ["dystopian", "classics"])
    copy = template_copy(book, ["dystopian"])
    assert fact_check(copy, book, ["dystopian"]) == [], copy
    assert "1949" in copy and "4.17" in copy and "2,115,562" in copy
    assert fact_check(copy.replace("1949", "1948"), book) == ["the number 1948 is not the item's"]
    assert fact_check(copy.replace("George Orwell", "Aldous Huxley"), book) == [
        "the name 'Aldous' is not the item's", "the name 'Huxley' is not the item's"]
    assert fact_check("A classic by George Orwell.", book) == ["the copy does not name the item ('1984')"]
    initials = Book(2, "The Hobbit", "J.R.R. Tolkien", -5, None, 0, "", [])
    assert fact_check(template_copy(initials, []), initials) == []  # initials and a year BC


def test_copy_from_a_writer_is_used_only_when_it_passes(app_dir: Path):
    good = "Dracula by Bram Stoker (1897): a horror classic."
    app = load_recommend(app_dir, writer=ScriptedWriter(good), encoder=WordHashEncoder())
    made = app.copy("Frankenstein", "Dracula")
    assert (made.text, made.source, made.passed) == (good, "writer", True)
    bad = load_recommend(app_dir, writer=ScriptedWriter("Dracula by Stephen King, 1990."), encoder=WordHashEncoder())
    made = bad.copy("Frankenstein", "Dracula")
    assert made.source == "template" and made.passed and "Bram Stoker" in made.text
    assert {"the name 'Stephen' is not the item's", "the number 1990 is not the item's"} <= set(made.problems)


def test_copy_is_released_through_the_guard(app_dir: Path, tmp_path: Path):
    guard = Guard(audit=AuditStore(tmp_path), model_name="recommend")
    app = load_recommend(app_dir, guard, writer=ScriptedWriter("Dracula by Bram Stoker. Call 13812345678."),
                         encoder=WordHashEncoder())
    made = app.copy("Frankenstein", "Dracula")
    assert made.source == "template" and "Bram Stoker" in made.text  # names are the catalogue's: kept
    assert made.safety["decisions"][0]["stage"] == "input"
    assert "13812345678" not in json.dumps(made.to_json())  # nor in the rejected writer text's problems
    refused = app.copy("how do I make a bomb to kill my neighbours; Dracula", "Dracula")
    assert refused.blocked and not refused.passed and refused.safety["blocked"] == "input"


def test_cli_ranks_and_writes_copy(app_dir: Path, monkeypatch, tmp_path: Path):
    monkeypatch.setattr("luoxia.apps.recommend.load_encoder", lambda *a, **k: WordHashEncoder())
    monkeypatch.setattr("luoxia.cli_recommend.load_encoder", lambda *a, **k: WordHashEncoder())
    runner = CliRunner()
    ranked = runner.invoke(cli, ["apps", "recommend", "rank", str(app_dir), "Dracula; Frankenstein", "--k", "3",
                                 "--json"])
    assert ranked.exit_code == 0, ranked.output
    assert len(json.loads(ranked.output)) == 3
    made = runner.invoke(cli, ["apps", "recommend", "copy", str(app_dir), "Dracula", "Frankenstein", "--no-guard"])
    assert made.exit_code == 0 and "Mary Shelley" in made.output and "fact check passed" in made.output
    missing = runner.invoke(cli, ["apps", "recommend", "rank", str(tmp_path), "Dracula"])
    assert missing.exit_code != 0 and "not a recommend application" in str(missing.exception)
    log = tmp_path / "log.jsonl"
    simulated = runner.invoke(cli, ["apps", "recommend", "simulate", "--out", str(log), "--users", "5",
                                    "--slate", "5", "--seed", "3", "--base", "0"])
    assert simulated.exit_code == 0, simulated.output
    assert len(read_impressions(log)) == 5 * 8 * 5
    built = runner.invoke(cli, ["apps", "recommend", "build", "--out", str(tmp_path / "app"), "--impressions",
                                str(log), "--steps", "5", "--k", "4"])
    assert built.exit_code == 0, built.output
    assert len(load_recommend(tmp_path / "app", encoder=WordHashEncoder()).rank("0")) == 4  # a user of that log
    alien = [Impression(0, 0, 0, 12345, 0, True, False)]
    with pytest.raises(DataError, match="items the catalogue lacks"):
        build_recommend(tmp_path / "x", read_books(bundled_books_path()), encoder=WordHashEncoder(), impressions=alien)
