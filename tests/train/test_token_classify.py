"""Token classification (issue 14 item 3): the IOB2 reader's one-line errors, sub-token label
alignment, training through the shared loop with exact resume, seqeval scores from `luoxia eval`, and
a tagger whose spans are character offsets in the text as given (Chinese and English)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import luoxia
from luoxia.config import load_config
from luoxia.data.instruct import IGNORE
from luoxia.data.iob import align_labels, bio_spans, label_names, read_iob
from luoxia.errors import ConfigError, DataError
from luoxia.evaluate.lm import evaluate_run
from luoxia.evaluate.tagging import entity_scores
from luoxia.generate.tagger import Tagger
from luoxia.registry import FAMILIES, load_recipe, tasks
from luoxia.runs import ADAPTER_DIR, read_metrics
from luoxia.train.token_classify import TokenClassifyRecipe, finetune_tagger, unknown_characters
from tests.helpers import REPO
from tests.helpers import luoxia as run_cli

NAMES_ZH, PLACES_ZH = ["张三", "李四", "王五"], ["北京", "上海", "广州"]
NAMES_EN, PLACES_EN = ["Alice", "Bob", "Carol"], ["Paris", "London", "Rome"]
FILLER_ZH, FILLER_EN = ["住", "在", "去", "了"], ["lives", "in", "went", "to"]


def tiny_bert(directory: Path, extra_chars: str = "") -> Path:
    """A 1-layer BERT (hidden 32) with a WordPiece vocabulary of the test's words and characters,
    saved as a Hugging Face directory: a base model built in the test, offline."""
    from transformers import BertConfig, BertModel, BertTokenizer

    chars = sorted(set("".join(NAMES_ZH + PLACES_ZH + FILLER_ZH) + extra_chars + "。，"))
    words = [w.lower() for w in NAMES_EN + PLACES_EN + FILLER_EN] + [".", ","]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *words]
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    assert len(tokenizer) == len(vocab)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def sentence(i: int) -> list[tuple[str, str]]:
    """A tagged sentence, alternating Chinese (names and places split in characters as UNER does not,
    to exercise multi-sub-token words) and English."""
    if i % 2:
        name, place = NAMES_EN[i % 3], PLACES_EN[(i // 3) % 3]
        return [(name, "B-PER"), ("lives", "O"), ("in", "O"), (place, "B-LOC"), (".", "O")]
    name, place = NAMES_ZH[i % 3], PLACES_ZH[(i // 3) % 3]
    return [(name, "B-PER"), ("住", "O"), ("在", "O"), (place[0], "B-LOC"), (place[1], "I-LOC"), ("。", "O")]


def write_iob(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    blocks = ["\n".join(f"{k}\t{w}\t{t}\t-\t-" for k, (w, t) in enumerate(s, 1)) for s in sentences]
    path.write_text("# newdoc id = x\n" + "\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert") / "base")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("iob")
    write_iob(directory / "train.iob2", [sentence(i) for i in range(24)])
    write_iob(directory / "dev.iob2", [sentence(i) for i in range(24, 32)])
    return directory


def recipe(base: Path, data: Path, out: Path, *overrides: str) -> TokenClassifyRecipe:
    return load_config(TokenClassifyRecipe, REPO / "configs/finetune/ner_zh_uner.yaml", [
        f"base_model={base}", f"out_dir={out}", f"data.train={data / 'train.iob2'}", f"data.val={data / 'dev.iob2'}",
        "data.max_length=32", "train.batch_size=8", "train.max_steps=6", "train.warmup_steps=0",
        "train.eval_interval=3", "train.eval_batches=1", "train.log_interval=1", "train.checkpoint_interval=3",
        "train.progress=false", "train.device=cpu", "train.num_threads=1", *overrides])


# Reader ---------------------------------------------------------------------------------------
def test_reader_keeps_words_tags_and_text(tmp_path: Path):
    path = tmp_path / "a.iob2"
    path.write_text("# sent_id = 1\n# text = 张三住北京\n1\t张三\tB-PER\n2\t住\tO\n3\t北京\tB-LOC\n\n"
                    "Bob B-PER\nruns O\n", encoding="utf-8")
    first, second = read_iob(path)
    assert (first.words, first.tags, first.text) == (["张三", "住", "北京"], ["B-PER", "O", "B-LOC"], "张三住北京")
    assert (second.words, second.tags, second.text) == (["Bob", "runs"], ["B-PER", "O"], None)
    assert first.origin == f"{path}:3" and label_names([first, second]) == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


@pytest.mark.parametrize("content, message", [
    (None, "no such IOB2 file"),
    ("# only a comment\n\n", "no tagged sentences"),
    ("1\tA\tB-PER\n2\tB\tO\tx\nlonely\n", "x.iob2:3: malformed line"),
    ("1\tA\tB-PER\n2\tB\tPER\n", "x.iob2:2: tag 'PER' is not IOB2"),
    ("1\tA\tO\n2\tB\tI-PER\n", "x.iob2:2: tag I-PER follows O"),
    ("1\tA\tB-LOC\n2\tB\tI-PER\n", "x.iob2:2: tag I-PER follows B-LOC"),
])
def test_reader_errors_are_one_line_with_file_and_line(tmp_path: Path, content: str | None, message: str):
    path = tmp_path / "x.iob2"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message) as error:
        read_iob(path)
    assert "\n" not in str(error.value)


# Alignment and spans --------------------------------------------------------------------------
def test_every_sub_token_is_labelled_and_entities_continue_inside_a_word():
    ids = {name: i for i, name in enumerate(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])}
    # [CLS] 张 三 | 住 | 北 京 [SEP]: words 0 (two sub-tokens), 1, 2 (two sub-tokens)
    labels = align_labels([None, 0, 0, 1, 2, 2, None], ["B-PER", "O", "B-LOC"], ids)
    assert labels == [IGNORE, ids["B-PER"], ids["I-PER"], ids["O"], ids["B-LOC"], ids["I-LOC"], IGNORE]
    assert align_labels([None, 0, 0], ["O"], ids) == [IGNORE, 0, 0]


def test_bio_spans_read_iob2_and_stray_inside_tags():
    assert bio_spans(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4),
                                                                            ("LOC", 4, 6)]
    assert bio_spans(["O", "I-ORG", "I-ORG", "I-PER"]) == [("ORG", 1, 3), ("PER", 3, 4)]


def test_entity_scores_are_seqeval_micro_and_per_type():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "B-LOC"]]
    scores = entity_scores(gold, predicted)
    assert scores["micro"]["precision"] == pytest.approx(2 / 3) and scores["micro"]["recall"] == pytest.approx(2 / 3)
    assert scores["per_type"]["PER"]["f1"] == 1.0 and scores["per_type"]["LOC"]["f1"] == 0.0
    assert scores["per_type"]["LOC"]["support"] == 1


# Training, resume, eval, load -----------------------------------------------------------------
def test_tagging_trains_resumes_exactly_and_evaluates(base: Path, data: Path, tmp_path: Path):
    """A run stopped after its step-3 checkpoint resumes to the losses and weights of the run that
    never stopped; the run then loads as a tagger and `luoxia eval` reports seqeval scores."""
    from safetensors.torch import load_file

    finetune_tagger(recipe(base, data, tmp_path / "reference", "method.dropout=0.2"))
    reference = [row["loss"] for row in read_metrics(tmp_path / "reference") if row["kind"] == "train"]
    finetune_tagger(recipe(base, data, tmp_path / "killed", "method.dropout=0.2"))
    checkpoints = tmp_path / "killed" / "checkpoints"
    for later in sorted(checkpoints.glob("step-*"))[1:]:
        shutil.rmtree(later)
    (checkpoints / "latest.json").write_text(json.dumps({"dir": "step-0000003", "step": 3}))
    finetune_tagger(recipe(base, data, tmp_path / "killed", "method.dropout=0.2"), resume=True)
    resumed = [row["loss"] for row in read_metrics(tmp_path / "killed") if row["kind"] == "train"]
    assert len(reference) == 6 and resumed == reference
    final = [load_file(tmp_path / run / "checkpoints/step-0000006/model.safetensors")
             for run in ("reference", "killed")]
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])

    evals = [row for row in read_metrics(tmp_path / "reference") if row["kind"] == "eval"]
    assert {"val_loss", "val_accuracy", "val_f1"} <= set(evals[-1])
    assert (tmp_path / "reference" / ADAPTER_DIR).is_dir()
    tagger = luoxia.load(tmp_path / "reference", device="cpu")
    assert isinstance(tagger, Tagger) and tagger.entity_types == ["LOC", "PER"]
    report = evaluate_run(tmp_path / "reference", device="cpu")
    assert report["sentences"] == 8 and set(report["per_type"]) <= {"LOC", "PER"}
    assert set(report["micro"]) == {"precision", "recall", "f1", "support"} and report["micro"]["support"] == 16


@pytest.mark.slow
def test_a_trained_tagger_finds_names_and_places_at_their_offsets(base: Path, data: Path, tmp_path: Path):
    """Full fine-tuning learns the toy set; spans are offsets in the text as given, whatever its case,
    spacing or language."""
    finetune_tagger(recipe(base, data, tmp_path / "run", "method.name=full", "train.max_steps=60", "train.lr=3e-3",
                           "train.eval_interval=60", "train.checkpoint_interval=60"))
    tagger = luoxia.load(tmp_path / "run", device="cpu")
    texts = ["王五住在上海。", "  CAROL  lives in  Rome.", ""]
    spans = tagger.tag(texts)
    assert [[(kind, text[s:e]) for kind, s, e in found] for text, found in zip(texts, spans, strict=True)] == [
        [("PER", "王五"), ("LOC", "上海")], [("PER", "CAROL"), ("LOC", "Rome")], []]
    report = evaluate_run(tmp_path / "run", device="cpu")
    assert report["micro"]["f1"] == 1.0


def test_lora_adds_unknown_characters_as_tokens(tmp_path: Path, data: Path):
    """``data.extend_vocab``: the base reads 赵 as [UNK]; the run adds it, trains its embedding
    (saved with the adapter) and tags it."""
    base = tiny_bert(tmp_path / "base")
    write_iob(tmp_path / "train.iob2", [[("赵", "B-PER"), ("住", "O"), ("北", "B-LOC"), ("京", "I-LOC")]] * 8)
    sentences = read_iob(tmp_path / "train.iob2")
    from transformers import AutoTokenizer

    assert unknown_characters(sentences, AutoTokenizer.from_pretrained(str(base))) == ["赵"]
    finetune_tagger(recipe(base, data, tmp_path / "run", f"data.train={tmp_path / 'train.iob2'}",
                           "data.extend_vocab=true", "train.max_steps=2"))
    tagger = luoxia.load(tmp_path / "run", device="cpu")
    assert tagger.tokenizer("赵", add_special_tokens=False)["input_ids"] != [tagger.tokenizer.unk_token_id]
    assert len(tagger.tag(["赵住北京"])) == 1


def test_recipe_refuses_virtual_token_methods_and_unknown_keys(base: Path, data: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="prefix/prompt"):
        recipe(base, data, tmp_path / "run", "method.name=prefix")
    with pytest.raises(ConfigError, match="text_field"):
        recipe(base, data, tmp_path / "run", "data.text_field=x")


def test_registry_and_cli_list_token_classify(base: Path, data: Path, tmp_path: Path):
    assert "token_classify" in tasks("finetune") and FAMILIES["token_classify"].output == "spans"
    assert isinstance(load_recipe(REPO / "configs/finetune/ner_zh_uner.yaml"), TokenClassifyRecipe)
    (tmp_path / "bad.yaml").write_text("task: nope\nbase_model: x\n")
    result = run_cli("finetune", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0 and "valid: finetune, classify, token_classify" in result.stderr
    result = run_cli("finetune", "configs/finetune/ner_zh_uner.yaml", f"base_model={base}",
                     f"data.train={data / 'train.iob2'}", f"data.val={data / 'dev.iob2'}", "--check", COLUMNS="300")
    assert "train.iob2: 24 sentences; entities {'LOC': 24, 'PER': 24}" in result.stdout
    assert "dev.iob2: 8 sentences; entities {'LOC': 8, 'PER': 8}" in result.stdout
    assert "[PER: 张三, LOC: 北 京]" in result.stdout and "[PER: Bob, LOC: Paris]" in result.stdout


class LookupTagger(torch.nn.Module):
    """A stand-in token classifier: each token id's tag is fixed (names PER, places LOC), so the
    tagger's windows and offsets are tested exactly, with no training."""

    def __init__(self, tokenizer, names: list[str]):
        super().__init__()
        from types import SimpleNamespace

        self.config = SimpleNamespace(id2label=dict(enumerate(names)))
        table = torch.full((len(tokenizer), len(names)), -1.0)
        table[:, names.index("O")] = 0.0
        for words, kind in [(NAMES_ZH + NAMES_EN, "PER"), (PLACES_ZH + PLACES_EN, "LOC")]:
            for word in words:
                ids = tokenizer(word, add_special_tokens=False)["input_ids"]
                table[ids[0], names.index(f"B-{kind}")] = 1.0
                for later in ids[1:]:
                    table[later, names.index(f"I-{kind}")] = 1.0
        self.table = torch.nn.Parameter(table)

    def forward(self, input_ids, attention_mask=None):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.table[input_ids])


def test_long_texts_are_tagged_in_overlapping_windows_at_their_offsets(base: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    tagger = Tagger(LookupTagger(tokenizer, names), tokenizer, max_length=12, batch_size=4)
    long = "李四住在北京。" * 12  # 84 sub-tokens: windows of 10 that cut names and places in two
    texts = [long, "  CAROL  lives in\tRome.", "", "王五住在上海"]
    spans = tagger.tag(texts)
    assert [(kind, long[s:e]) for kind, s, e in spans[0]] == [("PER", "李四"), ("LOC", "北京")] * 12
    assert spans[1] == [("PER", 2, 7), ("LOC", 18, 22)] and spans[2] == []
    assert [(kind, texts[3][s:e]) for kind, s, e in spans[3]] == [("PER", "王五"), ("LOC", "上海")]
    assert tagger.tag_words([["王五", "住", "在", "上海"], ["Bob"]]) == [["B-PER", "O", "O", "B-LOC"], ["B-PER"]]
