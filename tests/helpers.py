"""Helpers shared by the tests: tiny corpora text, tiny seeded models, tiny recipes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

from luoxia import cli
from luoxia.checkpoint import save_weights
from luoxia.config import dump_config, load_config, resolve_recipe
from luoxia.data.tokenizer import TextTokenizer
from luoxia.models.gpt import GPT, GPTConfig
from luoxia.models.rnn import RNNLM, RNNConfig
from luoxia.runs import CONFIG_FILE, WEIGHTS_FILE

REPO = Path(__file__).resolve().parents[1]
TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles\n"
    "And by opposing end them. To die—to sleep,\n"
    "No more; and by a sleep to say we end\n"
)


def tiny_gpt(seed: int = 0, vocab_size: int = 32, **options) -> GPT:
    config = dict(vocab_size=vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=16)
    config.update(options)
    torch.manual_seed(seed)
    return GPT(GPTConfig(**config)).eval()


def tiny_rnn(cell: str = "lstm", vocab_size: int = 32, seed: int = 0, spread: float = 0.3, **options) -> RNNLM:
    """A tiny LSTM/GRU LM whose weights are pushed ``spread`` away from the near-uniform
    initialisation, so its next-token choices are clear-cut and its texts differ by seed."""
    config = dict(cell=cell, vocab_size=vocab_size, block_size=16, n_layer=2, n_embd=16, hidden_size=24)
    config.update(options)
    torch.manual_seed(seed)
    model = RNNLM(RNNConfig(**config)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * spread)
    return model


def save_rnn_run(run_dir: Path, model: RNNLM, tokenizer: TextTokenizer, stateful: bool = True) -> Path:
    """A run directory holding just an RNN, written by hand: recipe, weights, tokenizer."""
    from luoxia.train.rnn import RNNRecipe, RNNTrainConfig

    run_dir.mkdir(parents=True, exist_ok=True)
    recipe = RNNRecipe(out_dir=str(run_dir), model=model.config, train=RNNTrainConfig(stateful=stateful))
    dump_config(recipe, run_dir / CONFIG_FILE)
    save_weights(model, run_dir / WEIGHTS_FILE)
    tokenizer.save(run_dir)
    return run_dir


def tiny_recipe(out_dir: Path, corpus: Path | str, *overrides: str):
    """configs/lm/tiny.yaml on a given corpus, silent and on one thread."""
    from luoxia.train.lm import LMRecipe

    return load_config(LMRecipe, resolve_recipe("lm/tiny.yaml"), [
        f"out_dir={out_dir}", f"data.corpus={corpus}", "data.max_documents=null", "progress=false",
        "num_threads=1", "device=cpu", *overrides])


def tiny_hf_model(directory: Path) -> Path:
    """A tiny random GPT-2 with a character-level tokenizer, saved as a standard HF directory."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from luoxia.data.tokenizer import train_char_tokenizer

    text_tokenizer = train_char_tokenizer([TEXT], special_tokens=["<|endoftext|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=text_tokenizer.backend, eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=32, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def luoxia(*args: str, check: bool = True, input: str | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run a ``luoxia`` command through its real entry point (`luoxia.cli.main`: parsing, one-line
    errors, exit status 2), offline, with ``env`` added — in this process, so that a test pays
    Luoxia's import once, not per command. Real processes: `luoxia_process` (and tests/test_readme.py)."""
    runner = CliRunner()
    saved_argv, saved_cwd = sys.argv, os.getcwd()
    with runner.isolation(input=input, env={"HF_HUB_OFFLINE": "1", **env}) as (out, err, _):
        sys.argv = ["luoxia", *args]
        os.chdir(REPO)
        try:
            cli.main()
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
        finally:
            sys.stdout.flush()  # the isolated streams buffer text until flushed
            sys.stderr.flush()
            sys.argv = saved_argv
            os.chdir(saved_cwd)
        result = subprocess.CompletedProcess(["luoxia", *args], code, out.getvalue().decode("utf-8", "replace"),
                                             err.getvalue().decode("utf-8", "replace"))
    if check:
        assert result.returncode == 0, result.stderr
    return result


def luoxia_process(*args: str, check: bool = True, input: str | None = None, **env: str
                   ) -> subprocess.CompletedProcess:
    """Run the ``luoxia`` command in its own process as a user would, offline, on one thread."""
    result = subprocess.run([sys.executable, "-m", "luoxia.cli", *args], cwd=REPO, capture_output=True, text=True,
                            input=input, env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                                              **env})
    if check:
        assert result.returncode == 0, result.stderr
    return result


# An image recipe small enough to train in a second or two (scikit-learn digits at 8×8).
TINY_IMAGE = ["data.image_size=8", "model.latent_dim=4", "model.width=8", "model.hidden=32", "train.max_steps=30",
              "train.batch_size=32", "train.warmup_steps=0", "train.eval_interval=15", "train.eval_batches=2",
              "train.log_interval=5", "train.checkpoint_interval=15", "train.sample_interval=30",
              "train.progress=false", "train.device=cpu", "train.num_threads=1"]


def on_event_loop() -> bool:
    """Whether the caller runs on an asyncio event loop (work there stalls every other request)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
