"""``luoxia demo`` / ``make demo``: the main job on an embedded default corpus, end to end in a few minutes.

Part of the command layer (it ends by pointing at ``luoxia serve``): only `luoxia.cli` imports it."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from luoxia.config import load_config, resolve_recipe
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.evaluate.lm import evaluate_run
from luoxia.generate.interface import GenerationConfig
from luoxia.registry import load
from luoxia.runs import TENSORBOARD_DIR
from luoxia.serve.models import DEMO_RUN
from luoxia.train.lm import LMRecipe, train_lm

# corpus → (recipe, prompts for the samples)
DEMOS = {
    "pydoc": ("lm/pydoc.yaml", ["The ", "A function ", "If the "]),
    "shakespeare": ("lm/shakespeare_char.yaml", ["ROMEO:\n", "JULIET:\n", "KING HENRY:\n"]),
    "poems": ("lm/tang_poems.yaml", ["春", "月", "山"]),
}


def run_demo(corpus: str, out_dir: str | None, overrides: list[str], console: Console) -> dict:
    """Prepare, train (resuming a finished or interrupted demo run), sample and measure."""
    if corpus not in DEMOS:
        raise ConfigError(f"unknown demo corpus '{corpus}'; valid: {', '.join(DEMOS)}")
    recipe_path, prompts = DEMOS[corpus]
    out_dir = out_dir or f"runs/demo-{corpus}"
    recipe = load_config(LMRecipe, resolve_recipe(recipe_path), [f"out_dir={out_dir}", *overrides])
    console.print(Panel.fit(
        f"Luoxia demo — corpus [bold]{corpus}[/bold], recipe {recipe_path}\n"
        f"GPT {recipe.model.n_layer} layers × {recipe.model.n_embd} wide, context {recipe.model.block_size}, "
        f"{recipe.train.max_steps} steps; run directory {out_dir}"))
    if train_lm(recipe, resume=True).stop_reason == "signal":
        raise LuoxiaError(f"demo interrupted; `make demo CORPUS={corpus}` continues it from its last checkpoint")
    generator = load(out_dir)
    config = GenerationConfig(max_new_tokens=160, top_k=50, seed=0)  # the default temperature
    console.rule("samples")
    for prompt, result in zip(prompts, generator.generate(prompts, config), strict=True):
        console.print(f"[bold cyan]{escape(prompt)}[/bold cyan]{escape(result.text)}", highlight=False)
        console.rule(style="dim")
    report = evaluate_run(out_dir)
    console.print(f"validation perplexity [bold]{report['perplexity']:.2f}[/bold] "
                  f"(loss {report['loss']:.4f} nats/token, {report['bits_per_char']:.3f} bits/char "
                  f"on {report['tokens']:,} held-out tokens)")
    console.print(f"next: luoxia generate --model {out_dir} --prompt \"{prompts[0]}\"  ·  "
                  f"luoxia eval --model {out_dir} --samples 20  ·  tensorboard --logdir {out_dir}/{TENSORBOARD_DIR}")
    serve = "luoxia serve" if Path(out_dir) == DEMO_RUN else f"luoxia serve --model {out_dir}"
    console.print(f"serve it (OpenAI-compatible API and web studio): {serve} --open-access, then open "
                  "http://127.0.0.1:8000")
    return report
