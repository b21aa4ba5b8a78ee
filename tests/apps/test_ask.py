"""Knowledge-grounded answers (`luoxia.apps.ask`): cited answers from the bundled triples, linking by
alias and by a misspelt name, passages, the consistency check, the guard, the writer, bad inputs."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from luoxia import registry
from luoxia.apps.ask import AskApp, AskSettings, build_ask, check_statement, passages
from luoxia.apps.knowledge import KnowledgeBase, Triple, bundled_triples_path, poem_triples, read_triples
from luoxia.apps.registry import AppContext, load_app
from luoxia.cli import app as cli
from luoxia.errors import ConfigError, DataError
from luoxia.retrieval.index import HybridIndex
from luoxia.serve.app import create_app
from luoxia.serve.models import serve_app
from tests.echo import LOOPBACK, ScriptedWriter, WordHashEncoder, echo_models, echo_settings


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase(read_triples(bundled_triples_path()))


def ask(kb: KnowledgeBase, question: str):
    return AskApp(kb, None).ask(question)


def test_the_worked_example_is_answered_with_its_citation(kb):
    answer = ask(kb, "《登鹳雀楼》的作者是谁？")
    assert answer.text == "《登鹳雀楼》的作者是王之涣。"
    assert answer.objects == ["王之涣"] and answer.linked_by == "exact"
    (citation,) = answer.citations
    assert (citation.fact, citation.source) == ("(登鹳雀楼, author, 王之涣)", "全唐诗")
    assert citation.document_id == "triple:0"
    first = ask(kb, "《春晓》的第一句是什么？")
    assert first.objects == ["春眠不觉晓，处处闻啼鸟。"] and first.relation == "first_line"


@pytest.mark.parametrize(("question", "how"), [
    ("《登鸛雀樓》的作者是誰？", "exact"),  # traditional characters fold to the simplified name
    ("登鹳雀楼是谁写的？", "exact"),  # no title marks
    ("登鹳雀搂的作者是谁？", "fuzzy"),  # 楼 misspelt 搂
    ("Who wrote On the Stork Tower?", "alias"),  # an alias row of the knowledge base
    ("WHO WROTE on the stork tower", "alias"),  # case
])
def test_linking_by_alias_and_fuzzy(kb, question, how):
    answer = ask(kb, question)
    assert answer.objects == ["王之涣"] and answer.linked_by == how
    assert answer.citations[0].document_id == "triple:0"
    assert ("最接近的是“登鹳雀楼”" in answer.text) == (how == "fuzzy")  # a near miss is never passed off as exact


def test_an_unknown_entity_gets_an_honest_answer_never_a_made_up_one(kb):
    for question in ("《不存在的诗》的作者是谁？", "Who wrote Moby Dick?", "今天天气怎么样？"):
        answer = ask(kb, question)
        assert not answer.found and answer.citations == [] and answer.objects == []
        assert "知识库中没有" in answer.text or "knowledge base has nothing" in answer.text
    assert "不存在的诗" in ask(kb, "《不存在的诗》的作者是谁？").text
    with pytest.raises(DataError, match="empty"):
        ask(kb, "  ")


def test_an_english_question_is_answered_from_pydoc_passages_with_citations():
    documents = passages("pydoc", max_documents=3)  # assert, assignment, async
    index = HybridIndex.build(documents, WordHashEncoder(256))
    app = AskApp(None, index)
    answer = app.ask("What does the assert statement do?")
    assert answer.linked_by == "passage" and answer.citations
    assert "assert" in answer.text
    for citation in answer.citations:
        assert citation.source == "pydoc_data.topics['assert']" and citation.fact in answer.text
        assert citation.document_id.startswith("pydoc_data.topics['assert']#")
    assert not app.ask("《登鹳雀楼》的作者是谁？").found  # nothing in these passages shares its words


def test_contradictions_are_flagged_and_true_statements_are_not(kb):
    (found,) = check_statement(kb, "《登鹳雀楼》的作者是李白。")
    assert (found.subject, found.relation, found.claimed, found.expected) == ("登鹳雀楼", "author", "李白", ["王之涣"])
    assert found.citations[0].source == "全唐诗" and "王之涣" in found.message()
    assert check_statement(kb, "《登鹳雀楼》的作者是王之涣。") == []
    assert check_statement(kb, "静夜思是Li Bai写的。") == []  # an alias of the right author
    assert check_statement(kb, "《静夜思》和《春晓》的作者分别是李白和孟浩然。") == []
    assert [c.claimed for c in check_statement(kb, "Du Fu wrote Quiet Night Thoughts.")] == ["杜甫"]
    (line,) = check_statement(kb, "《春晓》的第一句是“白日依山尽，黄河入海流。”")  # the 。 in quotes ends nothing
    assert line.relation == "first_line" and line.expected == ["春眠不觉晓，处处闻啼鸟。"]
    assert check_statement(kb, "《登鹳雀楼》的作者是曹雪芹。") == []  # a name it never saw: not judged
    one = KnowledgeBase([Triple("蝉", "author", "虞世南", "全唐诗"), Triple("酒", "author", "李峤", "全唐诗")])
    assert [c.claimed for c in check_statement(one, "《蝉》的作者是李峤。")] == ["李峤"]  # a one-character title
    assert ask(one, "蝉是谁写的？").objects == ["虞世南"]


def test_a_follow_up_question_asks_about_the_earlier_turns_entity(kb):
    app = AskApp(kb, None)
    turns = [{"role": "user", "content": "《春晓》的作者是谁？"}, {"role": "assistant", "content": "孟浩然"},
             {"role": "user", "content": "那第一句呢？"}]
    reply = app.reply(turns)
    assert reply.answer == "《春晓》的第一句是“春眠不觉晓，处处闻啼鸟。”"
    assert reply.citations[0].document_id == "triple:5"
    assert not app.reply(turns[-1:]).citations  # without the earlier turn there is nothing to answer about


def test_the_writer_is_used_only_when_it_states_the_cited_facts_truly(kb):
    question = [{"role": "user", "content": "《登鹳雀楼》的作者是谁？"}]
    true = AskApp(kb, None, writer=ScriptedWriter("这首诗是王之涣写的。")).reply(question)
    assert true.answer == "这首诗是王之涣写的。" and true.warnings == [] and true.citations
    false = AskApp(kb, None, writer=ScriptedWriter("《登鹳雀楼》的作者是李白。")).reply(question)
    assert false.answer == "《登鹳雀楼》的作者是王之涣。"
    assert "contradicts the knowledge base" in false.warnings[0] and "not used" in false.warnings[-1]
    vague = AskApp(kb, None, writer=ScriptedWriter("一位唐代诗人。")).reply(question)
    assert vague.answer == "《登鹳雀楼》的作者是王之涣。" and "leaves out 王之涣" in vague.warnings[0]


def test_app_yaml_names_the_writer_and_the_context_overrides_it(tmp_path, monkeypatch):
    loaded: list[str] = []
    monkeypatch.setattr("luoxia.apps.ask.load_writer",
                        lambda path, device: loaded.append(path) or ScriptedWriter("王之涣。"))
    folder = build_ask(tmp_path / "app", read_triples(bundled_triples_path()), settings=AskSettings(writer="runs/w"))
    question = [{"role": "user", "content": "《登鹳雀楼》的作者是谁？"}]
    assert load_app(folder).reply(question).answer == "王之涣。" and loaded == ["runs/w"]
    overridden = load_app(folder, AppContext(writer=ScriptedWriter("是王之涣写的。")))
    assert overridden.reply(question).answer == "是王之涣写的。"
    monkeypatch.setattr("luoxia.apps.ask.load_writer", registry.load_writer)
    monkeypatch.setattr("luoxia.registry.load", lambda path, device: object())  # what load_writer checks
    with pytest.raises(ConfigError, match="writer: runs/w is not a text model"):
        load_app(folder)


def test_the_server_answers_model_ask_with_citations_and_the_guard_on(tmp_path):
    folder = build_ask(tmp_path / "apps" / "ask", read_triples(bundled_triples_path()))
    settings = echo_settings(tmp_path / "data", open_access=True, apps=[folder])
    models = echo_models(settings)
    serve_app(models, folder)
    app = models.apps["ask"]
    assert "PERSON" in models.guard.policy.pii_types  # the server's guard itself is unchanged
    assert "EMAIL" in app.guard.policy.pii_types and "PERSON" not in app.guard.policy.pii_types
    with TestClient(create_app(settings, models=models), **LOOPBACK) as client:
        def chat(text: str) -> dict:
            reply = client.post("/v1/chat/completions", json={"model": "ask", "messages": [
                {"role": "user", "content": text}]})
            assert reply.status_code == 200, reply.text
            return reply.json()

        body = chat("《登鹳雀楼》的作者是谁？")
        # a poet's name is the answer, not personal data: the guard leaves it
        assert body["choices"][0]["message"]["content"] == "《登鹳雀楼》的作者是王之涣。"
        assert body["app"]["citations"] == [{"fact": "(登鹳雀楼, author, 王之涣)", "source": "全唐诗",
                                             "document_id": "triple:0"}]
        assert body["app"]["intent"] == "author" and body["app"]["safety"]["decisions"][0]["stage"] == "input"
        unknown = chat("Who wrote Moby Dick?")
        assert unknown["app"]["citations"] == [] and "nothing" in unknown["choices"][0]["message"]["content"]
        cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
        assert cards["ask"]["app"] == "ask"


def test_bad_knowledge_bases_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no such triples file"):
        read_triples(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("subject,relation,object,source\n", encoding="utf-8")
    with pytest.raises(DataError, match="no triples"):
        read_triples(empty)
    columns = tmp_path / "columns.csv"
    columns.write_text("title,author\n静夜思,李白\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"columns.csv:2: missing column\(s\) subject, relation, object; columns are "
                                        r"subject, relation, object, source"):
        read_triples(columns)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"subject": "a", "relation": "b", "object": "c"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="broken.jsonl:2: not JSON"):
        read_triples(broken)
    (tmp_path / "ok.jsonl").write_text('{"subject": "a", "relation": "b", "object": "c"}\n', encoding="utf-8")
    assert read_triples(tmp_path / "ok.jsonl")[0].source == "ok.jsonl:1"  # no source column: FILE:LINE
    with pytest.raises(DataError, match="empty"):
        KnowledgeBase([])
    with pytest.raises(DataError, match="nothing to build from"):
        build_ask(tmp_path / "app")
    with pytest.raises(ConfigError, match="not an application directory"):
        load_app(tmp_path)
    (tmp_path / "rules.yaml").write_text("relations: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="rules.yaml: a rules file needs the keys"):
        build_ask(tmp_path / "app", read_triples(bundled_triples_path()), settings=AskSettings(rules=str(
            tmp_path / "rules.yaml")))


def test_an_application_keeps_its_own_rules(tmp_path):
    rules = (bundled_triples_path().parent / "ask_relations.yaml").read_text(encoding="utf-8")
    (tmp_path / "mine.yaml").write_text(rules.replace("[作者,", "[撰者, 作者,"), encoding="utf-8")
    folder = build_ask(tmp_path / "app", read_triples(bundled_triples_path()),
                       settings=AskSettings(rules=str(tmp_path / "mine.yaml")))
    (tmp_path / "mine.yaml").unlink()  # the application holds a copy
    assert AskApp.load(folder).ask("《静夜思》的撰者？").objects == ["李白"]


def test_the_cli_builds_queries_and_checks(tmp_path):
    runner = CliRunner()
    out = tmp_path / "kb"
    built = runner.invoke(cli, ["apps", "ask", "build", "--triples", str(bundled_triples_path()), "--out", str(out),
                                "--name", "poems"])
    assert built.exit_code == 0, built.output
    assert load_app(out, AppContext()).name == "poems"
    queried = runner.invoke(cli, ["apps", "ask", "query", str(out), "《登鹳雀楼》的作者是谁？", "--json", "--no-guard"])
    reply = json.loads(queried.output)
    assert reply["answer"] == "《登鹳雀楼》的作者是王之涣。" and reply["citations"][0]["source"] == "全唐诗"
    checked = runner.invoke(cli, ["apps", "ask", "check", str(out), "《登鹳雀楼》的作者是李白。", "--json"])
    assert json.loads(checked.output)[0]["expected"] == ["王之涣"]
    nothing = runner.invoke(cli, ["apps", "ask", "build", "--out", str(tmp_path / "none")])
    assert nothing.exit_code != 0 and "nothing to build from" in str(nothing.exception)


@pytest.mark.shared_data("chinese_poetry_tang")
def test_the_tang_poems_answer_the_worked_example():
    kb = KnowledgeBase(poem_triples(max_poems=7000))  # 《登鹳雀楼》 is on lines 6694 and 6994
    answer = ask(kb, "《登鹳雀楼》的作者是谁？")
    assert "王之涣" in answer.objects  # the corpus also holds a poem of that title by 耿湋: both are cited
    assert all(c.source.startswith("chinese_poetry_tang/tang_poems_simp.jsonl.gz:") for c in answer.citations)
    assert check_statement(kb, "《登鹳雀楼》的作者是李白。")
