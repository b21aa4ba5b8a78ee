"""A masked-LM run as the base of fine-tuning (issue 15): `luoxia export` writes it as BERT, and
`task: classify` (full and LoRA) and `task: token_classify` start from its pretrained encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification, AutoModelForTokenClassification

import luoxia
from luoxia.config import load_config
from luoxia.errors import ConfigError
from luoxia.evaluate.classify import classify_file
from luoxia.export import export_run
from luoxia.generate.mlm import load_mlm
from luoxia.models.mlm_hf import to_bert_state
from luoxia.runs import BASE_DIR
from luoxia.train.finetune import FinetuneRecipe, build_model, export_base, finetune
from luoxia.train.mlm import MLMRecipe, train_mlm
from luoxia.train.token_classify import finetune_tagger
from tests.helpers import REPO, TEXT
from tests.train.test_token_classify import NAMES_EN, PLACES_EN, recipe, write_iob

WORDS = "good great nice bad awful terrible Alice Bob Carol lives in went to Paris London Rome . 0123456789"
LOOP = ["train.warmup_steps=0", "train.log_interval=1", "train.progress=false", "train.device=cpu",
        "train.num_threads=1"]


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory) -> Path:
    """A tiny post-norm masked LM with NSP, pre-trained for a few steps on a character tokenizer."""
    directory = tmp_path_factory.mktemp("mlm")
    (directory / "corpus.txt").write_text((TEXT + WORDS + "\n") * 8, encoding="utf-8")
    train_mlm(load_config(MLMRecipe, REPO / "configs/mlm/pydoc.yaml", [
        f"out_dir={directory / 'run'}", f"data.corpus={directory / 'corpus.txt'}", "data.tokenizer=char",
        "data.split=tail", "model.block_size=64", "model.n_layer=1", "model.n_head=2", "model.n_embd=16",
        "model.nsp=true", "train.max_steps=3", "train.batch_size=4", "train.eval_interval=3",
        "train.eval_batches=1", "train.checkpoint_interval=3", *LOOP]))
    return directory / "run"


def encoder_equals_mlm(model: torch.nn.Module, mlm_run: Path) -> None:
    """Every encoder weight (``bert.*``; the pooler where ``model`` has one) is the masked LM's, bit for bit."""
    ours = {k: v for k, v in to_bert_state(load_mlm(mlm_run, "cpu")[0]).items() if k.startswith("bert.")}
    theirs = {k[k.index("bert."):]: v for k, v in model.state_dict().items()
              if "bert." in k and "lora_" not in k}
    theirs = {k.replace(".base_layer.", "."): v for k, v in theirs.items()}
    assert {k for k in ours if not k.startswith("bert.pooler.")} <= set(theirs)  # taggers have no pooler
    for name in set(ours) & set(theirs):
        assert torch.equal(theirs[name], ours[name]), name  # a copy of the same float32 weights: bit-identical


def test_export_writes_a_bert_that_loads(mlm_run: Path, tmp_path: Path):
    assert export_run(mlm_run, tmp_path / "hf") == "BertForPreTraining"
    encoder_equals_mlm(AutoModelForPreTraining.from_pretrained(tmp_path / "hf", local_files_only=True), mlm_run)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_classify_starts_from_the_pretrained_encoder(method: str, mlm_run: Path, tmp_path: Path):
    rows = [{"text": f"Alice {w}", "label": "up" if w in "good great nice" else "down"}
            for w in "good bad great awful nice terrible".split()] * 4
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    classify = load_config(FinetuneRecipe, REPO / "configs/finetune/classify_fin_sentiment.yaml", [
        f"base_model={mlm_run}", f"out_dir={tmp_path / 'run'}", f"data.train={tmp_path / 'rows.jsonl'}",
        f"data.val={tmp_path / 'rows.jsonl'}", "data.label_names=null", "data.max_length=32",
        f"method.name={method}", "train.max_steps=2", "train.batch_size=8", "train.eval_interval=2",
        "train.eval_batches=1", "train.checkpoint_interval=2", *LOOP])
    model, _ = build_model(classify, tmp_path / "run", ["down", "up"])
    encoder_equals_mlm(model, mlm_run)  # before training: the encoder is the masked LM's
    finetune(classify)
    assert classify_file(tmp_path / "run", tmp_path / "rows.jsonl", device="cpu")["metrics"]["labels"] == ["down", "up"]
    base = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / BASE_DIR, local_files_only=True)
    assert base.config.model_type == "bert"


def test_token_classify_starts_from_the_masked_lm(mlm_run: Path, tmp_path: Path):
    sentences = [[(NAMES_EN[i % 3], "B-PER"), ("lives", "O"), ("in", "O"), (PLACES_EN[i % 3], "B-LOC"), (".", "O")]
                 for i in range(12)]
    write_iob(tmp_path / "train.iob2", sentences[:9])
    write_iob(tmp_path / "dev.iob2", sentences[9:])
    finetune_tagger(recipe(mlm_run, tmp_path, tmp_path / "run", "method.name=full", "train.max_steps=2",
                           "train.eval_interval=2", "train.checkpoint_interval=2"))
    base = AutoModelForTokenClassification.from_pretrained(tmp_path / "run" / BASE_DIR, num_labels=5,
                                                           local_files_only=True)
    encoder_equals_mlm(base, mlm_run)  # the tagger started from the masked LM's encoder
    tagger = luoxia.load(tmp_path / "run", device="cpu")
    text = "Bob lives in Rome."
    spans = tagger.tag([text])[0]
    assert all(0 <= start < end <= len(text) for _, start, end in spans)  # the char tokenizer's offsets


def test_a_base_of_another_family_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "rnn").mkdir()
    (tmp_path / "rnn" / "config.yaml").write_text("task: lm\nmodel:\n  family: rnn\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="model family 'rnn' has no transformers counterpart"):
        export_base(str(tmp_path / "rnn"), tmp_path / "base")
