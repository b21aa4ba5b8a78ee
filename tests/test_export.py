"""The Hugging Face bridge: a Luoxia GPT exported for `transformers` gives the same logits and the
same greedy text; a `transformers` GPT-2/Llama/Qwen3/Arcee imported into Luoxia does too."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import luoxia
from luoxia.data.tokenizer import EOS_TOKEN, TextTokenizer, train_char_tokenizer
from luoxia.errors import ConfigError
from luoxia.export import export_run, import_hf, write_run
from luoxia.generate.interface import GenerationConfig
from luoxia.models.gpt import GPTConfig
from luoxia.models.gpt_hf import gpt_to_hf, hf_family
from tests.helpers import TEXT, tiny_gpt
from tests.helpers import luoxia as run_cli

VARIANTS = {
    "gpt2": dict(),
    "gpt2-bias-free-relu2-untied": dict(bias=False, mlp="relu2", tie_embeddings=False),
    "llama": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    "llama-bias": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=True),
    "qwen3": dict(position="rope", norm="rmsnorm", mlp="swiglu", bias=False, qk_norm=True),
    "arcee": dict(position="rope", norm="rmsnorm", mlp="relu2", bias=False),  # the speedrun recipe
}
GREEDY = GenerationConfig(max_new_tokens=24, temperature=0)


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return train_char_tokenizer([TEXT], special_tokens=[EOS_TOKEN])


def distinct_weights(options: dict, vocab_size: int, seed: int = 0):
    """A tiny GPT whose weights are far from the near-uniform initialisation, so greedy choices are
    clear-cut and a wrong mapping cannot hide behind tiny logits."""
    model = tiny_gpt(seed=seed, vocab_size=vocab_size, **options)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return model


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_export_gives_the_same_logits_and_greedy_text(name: str, tokenizer, tmp_path: Path):
    model = distinct_weights(VARIANTS[name], tokenizer.vocab_size)
    write_run(tmp_path / "run", model, tokenizer, {"test": name})
    written = export_run(tmp_path / "run", tmp_path / "hf")
    assert written.startswith(name.split("-")[0])

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
    ids = torch.tensor([tokenizer.encode("To be, or not to be")])
    with torch.no_grad():
        assert (hf_model(ids).logits - model(ids)[0]).abs().max() <= 1e-4

    ours = luoxia.load(tmp_path / "run", device="cpu").generate(["To be"], GREEDY)[0].text
    assert luoxia.load(tmp_path / "hf", device="cpu").generate(["To be"], GREEDY)[0].text == ours
    with torch.no_grad():
        theirs = hf_model.generate(ids[:, :5], max_new_tokens=24, do_sample=False)
    assert tokenizer.decode(theirs[0, 5:].tolist(), skip_special_tokens=True) == ours


def test_exported_directory_is_standard(tokenizer, tmp_path: Path):
    write_run(tmp_path / "run", distinct_weights({}, tokenizer.vocab_size), tokenizer, {})
    export_run(tmp_path / "run", tmp_path / "hf")
    files = {p.name for p in (tmp_path / "hf").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    hf_tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer.eos_token == EOS_TOKEN and hf_tokenizer("To be")["input_ids"] == tokenizer.encode("To be")


@pytest.mark.parametrize("options, unmappable", [
    (dict(position="rope", norm="layernorm"), "norm=layernorm"),
    (dict(position="learned", norm="rmsnorm"), "position=learned"),
    (dict(position="rope", norm="rmsnorm", mlp="swiglu", qk_norm=True, bias=True), "qk_norm=True"),
])
def test_unmappable_options_are_named(options: dict, unmappable: str):
    with pytest.raises(ConfigError, match="exportable") as error:
        hf_family(GPTConfig(vocab_size=8, n_embd=16, n_head=2, **options))
    assert unmappable in str(error.value)


def test_export_refuses_a_non_empty_directory(tokenizer, tmp_path: Path):
    write_run(tmp_path / "run", distinct_weights({}, tokenizer.vocab_size), tokenizer, {})
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        export_run(tmp_path / "run", tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("name", ["gpt2", "llama-bias", "qwen3", "arcee"])
def test_import_gives_the_same_logits_and_greedy_text(name: str, tokenizer, tmp_path: Path):
    """A `transformers` model (built here as an export of a random Luoxia model, then perturbed on
    the transformers side) imported back into Luoxia computes what transformers computes."""
    hf_model, hf_tokenizer = gpt_to_hf(distinct_weights(VARIANTS[name], tokenizer.vocab_size, seed=1), tokenizer)
    with torch.no_grad():
        for param in hf_model.parameters():
            param.mul_(1.1)
    hf_model.save_pretrained(tmp_path / "hf")
    hf_tokenizer.save_pretrained(tmp_path / "hf")

    config = import_hf(tmp_path / "hf", tmp_path / "run")
    assert config.n_layer == 2 and hf_family(config) == name.split("-")[0]
    imported = luoxia.load(tmp_path / "run", device="cpu")
    ids = torch.tensor([tokenizer.encode("Whether 'tis nobler")])
    with torch.no_grad():
        assert (imported.model(ids)[0] - hf_model(ids).logits).abs().max() <= 1e-4
    assert imported.generate(["To be"], GREEDY)[0].text == \
        luoxia.load(tmp_path / "hf", device="cpu").generate(["To be"], GREEDY)[0].text


def test_import_refuses_grouped_query_attention(tokenizer, tmp_path: Path):
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "hf")
    PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token=EOS_TOKEN).save_pretrained(tmp_path / "hf")
    with pytest.raises(ConfigError, match="grouped-query attention"):
        import_hf(tmp_path / "hf", tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_cli_export_and_import_round_trip(tokenizer, tmp_path: Path):
    write_run(tmp_path / "run", distinct_weights(VARIANTS["llama"], tokenizer.vocab_size), tokenizer, {})
    assert "llama model" in run_cli("export", str(tmp_path / "run"), "--format", "hf", "--out",
                                    str(tmp_path / "hf")).stdout
    run_cli("import", str(tmp_path / "hf"), "--out", str(tmp_path / "back"))
    texts = [run_cli("generate", "--model", str(path), "-p", "To be", "--temperature", "0", "--max-new-tokens",
                     "16", "--json").stdout for path in (tmp_path / "run", tmp_path / "back")]
    assert texts[0] == texts[1]
    bad = run_cli("export", str(tmp_path / "run"), "--format", "gguf", "--out", str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and "unknown export format 'gguf'; valid: hf" in bad.stderr
