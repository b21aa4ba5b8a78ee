"""Knowledge-grounded answers: exact match on questions about held-out triples, with the knowledge
base and without it; citations; contradiction detection on seeded false statements.

    python bench/apps_ask.py [--poems | --triples FILE] [--max-poems N] [--questions 1000] [--seed 0] [--lm RUN]

Data: the Tang poems in ../shared/data/chinese_poetry_tang as (title, author) and (title, first_line)
triples (``--poems``, the default when the folder is there), else Luoxia's bundled triples or FILE.
Facts whose subject and relation have exactly one value are split by a seeded shuffle: ``--held-out``
of them are asked about, the rest is "train". Each held-out fact becomes one question from a template
of ``luoxia/apps/data/ask_relations.yaml`` (Chinese and English, seeded choice: half as written, a
quarter in traditional characters via OpenCC s2t, a quarter with one character of a 4+ character
name replaced by a random one: fuzzy linking), answered by `AskApp.ask` over the whole knowledge base — the facts live
in the knowledge base, so "with" measures question reading, entity linking and composition, not
recall from weights (and the templates share their cue words with the rules that read them).
"Without the knowledge base" is the best a model that never saw the held-out
facts can do from the train facts alone: answer each relation's most frequent train value (the
answer-less prior; a small LM trained on the train facts has no more to go on for an unseen title).
``--lm RUN`` also asks a Luoxia text model alone (e.g. a run trained on the poems: `configs/lm/tang_poems.yaml`)
each question, greedy, 48 new tokens: ``lm_alone_contains_gold`` counts a continuation that merely
contains the gold value anywhere (lenient: an upper bound on its exact match).
Exact match: the answer's values equal the gold value. Citations: answered questions whose every
value appears in a cited fact. Contradictions: per held-out fact, the true statement and a false one
(the value swapped for another value of the same relation that the subject does not have) are run
through `check_statement`; flagged = predicted false. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter

from opencc import OpenCC
from report import print_report

from luoxia.apps.ask import AskApp, check_statement
from luoxia.apps.knowledge import (
    KnowledgeBase,
    Triple,
    bundled_triples_path,
    fold,
    load_rules,
    poem_triples,
    read_triples,
)
from luoxia.data.corpora import shared_data_dir


def single_valued(kb: KnowledgeBase, relations: list[str]) -> list[Triple]:
    """One triple per (entity, relation) that has exactly one value: a question with one right answer."""
    out = []
    for (_, relation), ids in kb.facts.items():
        values = {kb.triples[i].object for i in ids}
        if relation in relations and len(values) == 1:
            out.append(kb.triples[ids[0]])
    return sorted(out, key=kb.id_of)


def lm_alone(run: str, questions: list[str], gold: list[str]) -> dict:
    """A text model asked each question with no knowledge base: how often its continuation holds the answer."""
    import luoxia
    from luoxia.generate.interface import GenerationConfig

    model = luoxia.load(run)
    config = GenerationConfig(max_new_tokens=48, temperature=0, seed=0)
    found = sum(fold(value) in fold(result.text)
                for start in range(0, len(questions), 32)
                for result, value in zip(model.generate(questions[start:start + 32], config),
                                         gold[start:start + 32], strict=True))
    return {"lm_alone": run, "lm_alone_contains_gold": round(found / max(len(questions), 1), 4)}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poems", action="store_true", help="the Tang poems (default when ../shared/data has them)")
    parser.add_argument("--triples", help="a triples CSV/JSONL instead")
    parser.add_argument("--max-poems", type=int, default=None)
    parser.add_argument("--questions", type=int, default=1000, help="held-out facts asked about (at most)")
    parser.add_argument("--held-out", type=float, default=0.1, help="share of the facts held out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm", help="a text-model run to ask without the knowledge base")
    args = parser.parse_args()
    poems = args.poems or (not args.triples and shared_data_dir() is not None
                           and (shared_data_dir() / "chinese_poetry_tang").is_dir())
    triples = (poem_triples(args.max_poems) if poems
               else read_triples(args.triples or bundled_triples_path()))
    kb = KnowledgeBase(triples)
    rules = load_rules()
    relations = [r for r in rules.relations if r in kb.relations]
    facts = single_valued(kb, relations)
    rng = random.Random(args.seed)
    rng.shuffle(facts)
    cut = max(1, round(len(facts) * args.held_out))
    held_out, train = facts[:cut][:args.questions], facts[cut:]
    prior = {r: Counter(t.object for t in train if t.relation == r).most_common(1) for r in relations}
    to_traditional = OpenCC("s2t")
    app = AskApp(kb, None)

    exact = prior_exact = cited = answered = 0
    questions: list[str] = []
    start = time.perf_counter()
    variants: dict[str, list[bool]] = {"plain": [], "traditional": [], "typo": []}
    letters = "".join(sorted({c for t in train for c in t.subject if c.isalpha()}))
    for fact in held_out:
        templates = [q for qs in rules.relations[fact.relation]["questions"].values() for q in qs]
        subject, variant = fact.subject, rng.choice(["plain", "plain", "traditional", "typo"])
        if variant == "typo" and len(subject) >= 4:  # one character replaced: fuzzy linking
            at = rng.randrange(len(subject))
            subject = subject[:at] + rng.choice(letters) + subject[at + 1:]
        question = rng.choice(templates).format(subject=subject)
        if variant == "traditional":
            question = to_traditional.convert(question)
        questions.append(question)
        answer = app.ask(question)
        exact += answer.objects == [fact.object]
        variants["plain" if variant == "typo" and subject == fact.subject else variant].append(
            answer.objects == [fact.object])
        answered += answer.found
        cited += answer.found and all(any(o in c.fact for c in answer.citations) for o in answer.objects)
        guess = prior[fact.relation]
        prior_exact += bool(guess) and guess[0][0] == fact.object
    seconds = time.perf_counter() - start

    values = {r: sorted({t.object for t in kb.triples if t.relation == r}) for r in relations}
    tp = fp = fn = tn = 0
    for fact in held_out:
        own = {t.object for t in kb.lookup(kb.names[fold(fact.subject)][0], fact.relation)}
        wrong = rng.choice(values[fact.relation])
        while wrong in own and len(values[fact.relation]) > len(own):
            wrong = rng.choice(values[fact.relation])
        for text, false in ((rules.say(fact.relation, "zh", fact.subject, fact.object, "statement"), False),
                            (rules.say(fact.relation, "zh", fact.subject, wrong, "statement"), True)):
            flagged = bool(check_statement(kb, text, rules))
            tp += flagged and false
            fp += flagged and not false
            fn += false and not flagged
            tn += not false and not flagged
    n = len(held_out)
    lm = lm_alone(args.lm, questions, [f.object for f in held_out]) if args.lm else {}
    return {
        "benchmark": "apps_ask",
        "data": "chinese_poetry_tang" if poems else str(args.triples or "bundled ask_triples.csv"),
        "triples": len(kb), "single_valued_facts": len(facts), "questions": n, "seed": args.seed,
        "exact_match_with_kb": round(exact / n, 4),
        "exact_match_by_variant": {k: {"questions": len(v), "exact_match": round(sum(v) / max(len(v), 1), 4)}
                                   for k, v in variants.items()},
        "exact_match_without_kb": round(prior_exact / n, 4),
        "without_kb_means": "each relation's most frequent value among the train facts (the answer-less prior)",
        "answered_rate": round(answered / n, 4),
        "citation_rate": round(cited / max(answered, 1), 4),
        "contradiction_precision": round(tp / max(tp + fp, 1), 4),
        "contradiction_recall": round(tp / max(tp + fn, 1), 4),
        "true_statements_flagged": round(fp / max(fp + tn, 1), 4),
        "ms_per_question": round(1000 * seconds / n, 3),
        **lm,
    }


if __name__ == "__main__":
    print_report(main)
