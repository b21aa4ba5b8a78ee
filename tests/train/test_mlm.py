"""The masked LM end to end: bidirectional attention, determinism, exact resume, fill-mask on a
memorised toy corpus, `luoxia.load`, `luoxia eval`, `luoxia fill-mask` and their one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import luoxia
from luoxia.cli import app, error_line
from luoxia.config import load_config
from luoxia.data.mlm import MLM_SPECIALS
from luoxia.data.tokenizer import train_tokenizer
from luoxia.errors import ConfigError, DataError, LuoxiaError
from luoxia.evaluate.lm import evaluate_run
from luoxia.export import write_run
from luoxia.generate.interface import GenerationConfig, TextGenerator
from luoxia.generate.mlm import MaskedLMGenerator
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.runs import read_metrics
from luoxia.serve.models import load_models
from luoxia.serve.settings import ServeSettings
from luoxia.train.mlm import MLMRecipe, train_mlm
from tests.helpers import tiny_gpt

TOY = "abcdef"  # one short "sentence" of distinct characters, repeated: each window is a rotation of it


def toy_recipe(out_dir: Path, corpus: Path, *overrides: str) -> MLMRecipe:
    return load_config(MLMRecipe, "configs/mlm/pydoc.yaml", [
        f"out_dir={out_dir}", f"data.corpus={corpus}", "data.tokenizer=char", "data.split=tail", "data.dedup=false",
        "model.block_size=8", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.dropout=0",
        "max_steps=120", "batch_size=64", "lr=1e-2", "weight_decay=0", "warmup_steps=20", "schedule=constant",
        "eval_interval=60", "eval_batches=2", "log_interval=1", "checkpoint_interval=120", "progress=false",
        "num_threads=1", "device=cpu", *overrides])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mlm") / "toy.txt"
    path.write_text(TOY * 300, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def mlm_run(corpus: Path) -> Path:
    run = corpus.parent / "run"
    train_mlm(toy_recipe(run, corpus))
    return run


def test_no_causal_mask_a_later_token_changes_an_earlier_logit():
    torch.manual_seed(0)
    for position in ("post", "pre"):
        model = MaskedLM(MLMConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0,
                                   norm_position=position)).eval()
        ids = torch.tensor([[1, 5, 6, 7, 8, 2]])
        changed = ids.clone()
        changed[0, 4] = 9
        first = model(ids)[0][0, 1]
        assert not torch.allclose(first, model(changed)[0][0, 1])


def test_same_seed_same_losses_and_exact_resume(corpus: Path, tmp_path: Path):
    """Two runs give bit-identical losses; so does one resumed from its step-5 checkpoint."""
    short = ("max_steps=10", "checkpoint_interval=5", "eval_interval=5", "model.dropout=0.1", "masking.whole_word=true")
    curves = []
    for name in ("a", "b"):
        train_mlm(toy_recipe(tmp_path / name, corpus, *short))
        curves.append([(r["step"], r["loss"]) for r in read_metrics(tmp_path / name) if r["kind"] == "train"])
    assert curves[0] == curves[1] and len(curves[0]) == 10
    checkpoints = tmp_path / "b" / "checkpoints"
    shutil.rmtree(sorted(checkpoints.glob("step-*"))[-1])
    (checkpoints / "latest.json").write_text(json.dumps({"dir": "step-0000005", "step": 5}))
    train_mlm(toy_recipe(tmp_path / "b", corpus, *short), resume=True)
    assert [(r["step"], r["loss"]) for r in read_metrics(tmp_path / "b") if r["kind"] == "train"] == curves[0]


def test_fill_mask_top1_on_the_memorised_corpus_and_load(mlm_run: Path):
    generator = luoxia.load(mlm_run, device="cpu")
    assert isinstance(generator, MaskedLMGenerator) and isinstance(generator, TextGenerator)
    fillers = generator.fill_mask("abc[MASK]ef") + generator.fill_mask("[MASK]bcdef", top_k=3)
    assert [f[0][0] for f in fillers] == ["d", "a"]  # the character missing from the memorised sentence
    assert len(fillers[0]) == 5 and len(fillers[1]) == 3 and fillers[1][0][1] >= fillers[1][1][1]
    assert len(generator.fill_mask("[MASK]bc[MASK]ef")) == 2  # one list per [MASK]
    assert all(token not in MLM_SPECIALS for f in fillers for token, _ in f)
    with pytest.raises(DataError, match=r"no \[MASK\] in the text"):
        generator.fill_mask("abc")
    [result] = generator.generate(["ab"], GenerationConfig(max_new_tokens=3, temperature=0))
    assert len(result.token_ids) == 3 and result.finish_reason == "length"
    with pytest.raises(ConfigError, match="no beam search"):
        generator.generate(["ab"], GenerationConfig(num_beams=2))


def test_eval_reports_masked_accuracy_and_pseudo_perplexity(mlm_run: Path):
    report = evaluate_run(mlm_run, device="cpu")
    assert report["mlm_accuracy"] > 0.3 and report["masked_tokens"] > 0  # a uniform guess gets 1/6
    assert 1.0 <= report["pseudo_perplexity"] < 6  # below a uniform guess over the six characters
    assert report["scored_tokens"] > 0
    result = CliRunner().invoke(app, ["eval", "--model", str(mlm_run), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert '"pseudo_perplexity"' in result.output


def test_fill_mask_cli_and_its_one_line_errors(mlm_run: Path, tmp_path: Path):
    done = CliRunner().invoke(app, ["fill-mask", "--model", str(mlm_run), "--top-k", "2", "--device", "cpu",
                                    "abc[MASK]ef"])
    assert done.exit_code == 0 and "[MASK] 1" in done.output and "'d'" in done.output
    gpt_run = tmp_path / "gpt"
    write_run(gpt_run, tiny_gpt(vocab_size=3), train_tokenizer("char", ["ab"]), {"source": "test"})
    for model, text, message in [(mlm_run, "no mask here", "no [MASK] in the text"),
                                 (gpt_run, "a [MASK]", "not a masked-LM run"),
                                 (tmp_path / "missing", "a [MASK]", "no run at")]:
        # `luoxia.cli.main` prints a user error as `error: <error_line>` and exits with status 2
        result = CliRunner().invoke(app, ["fill-mask", "--model", str(model), "--device", "cpu", text])
        assert isinstance(result.exception, LuoxiaError)
        assert message in error_line(result.exception) and "\n" not in str(result.exception)


def test_the_server_refuses_a_masked_lm_run_in_one_line(mlm_run: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="masked language model.*not served"):
        load_models(ServeSettings(models=[str(mlm_run)], data_dir=tmp_path))


def test_muon_trains_the_encoder_matrices(corpus: Path, tmp_path: Path):
    recipe = toy_recipe(tmp_path / "muon", corpus, "optimizer=muon", "max_steps=3", "eval_interval=3",
                        "checkpoint_interval=3")
    assert train_mlm(recipe).step == 3
