"""The ``luoxia`` command: parse arguments, then call one library function per command."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from luoxia import cli_apps, cli_retrieval, cli_safety, cli_serve, cli_summarize, cli_write
from luoxia.cli_demo import run_demo
from luoxia.cli_options import config_options
from luoxia.config import build_config, load_config
from luoxia.data.mlm import MASK_TOKEN
from luoxia.data.prepare import DataConfig
from luoxia.data.prepare import prepare as run_prepare
from luoxia.errors import ConfigError, LuoxiaError
from luoxia.evaluate.classify import classify_file
from luoxia.evaluate.image import evaluate_image_run, write_report
from luoxia.evaluate.lm import evaluate_run
from luoxia.export import export_run, import_hf
from luoxia.generate.image import generate_image_files
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.mlm import MaskedLMGenerator
from luoxia.generate.templates import prepare_prompts
from luoxia.registry import load, load_recipe, recipe_family, tasks
from luoxia.runs import EVAL_IMAGE_DIR
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import Guard, GuardedGenerator, GuardedImageGenerator, GuardPolicy, write_guarded_images
from luoxia.safety.pii import mask_pii
from luoxia.safety.watermark import WatermarkLogitsProcessor, resolve_key
from luoxia.train.finetune import check_data
from luoxia.train.loop import TrainState
from luoxia.train.token_classify import TokenClassifyRecipe, check_tagging_data

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Luoxia (落霞): prepare data, pre-train, fine-tune, generate and evaluate generative models.")
console = Console()
err_console = Console(stderr=True)


def _print_json(data: dict) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False))


@app.command()
@config_options(DataConfig, into="options", exclude={"corpus"}, flags={"field": ("--field", "--column")})
def prepare(
    inputs: Annotated[list[str], typer.Argument(help="files, directories or a corpus name (pydoc, stdlib, "
                                                "shakespeare, poems)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for tokenizer.json, train/val.bin, meta.json")],
    options: dict,
) -> None:
    """Clean, deduplicate, split and tokenize a corpus into memory-mapped token files."""
    corpus = inputs[0] if len(inputs) == 1 else inputs
    config = build_config(DataConfig, {"corpus": corpus, **options}, source="from the command line")
    meta = run_prepare(config, out, mask=mask_pii)
    counts, dedup_stats = meta["counts"], meta["dedup"]
    masked = f", {meta['pii_redacted']} personal data spans masked" if config.redact_pii else ""
    console.print(f"prepared {out}: {counts['documents']} documents kept of {counts['documents_read']} "
                  f"({dedup_stats['exact_duplicates']} exact and {dedup_stats['near_duplicates']} near duplicates, "
                  f"{dedup_stats['empty']} empty{masked}), "
                  f"vocab {meta['vocab_size']}, "
                  f"{counts['train_tokens']:,} train / {counts['val_tokens']:,} val tokens")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train(
    config: Annotated[str, typer.Argument(help="recipe YAML (e.g. configs/lm/tiny.yaml) or a run directory")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. max_steps=100")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in out_dir from its latest checkpoint")] = False,
) -> None:
    """Train a model from a recipe (under torchrun: distributed data parallel)."""
    recipe = load_recipe(config, overrides, allowed=tasks("train"))
    _train_and_report(recipe, resume)


def _train_and_report(recipe, resume: bool) -> None:
    """Run the recipe's family's train function and say where the run is (the PII masker goes to
    families whose data can ask for it)."""
    found = recipe_family(recipe)
    result = found.train(recipe, resume=resume, **({"mask": mask_pii} if found.masks_data else {}))
    if not isinstance(result, TrainState):
        console.print(f"done: {found.title} in {recipe.out_dir}")
    elif result.last_val is not None:
        console.print(f"done: step {result.step}, best val loss {result.best_val:.4f} — run in {recipe.out_dir}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def finetune(
    config: Annotated[str, typer.Argument(help="recipe YAML (e.g. configs/finetune/lora_chat.yaml)")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. method.name=ia3")] = None,
    check: Annotated[bool, typer.Option(help="validate the data and render two examples, then stop")] = False,
    resume: Annotated[bool, typer.Option(help="continue the run in out_dir from its latest checkpoint")] = False,
) -> None:
    """Fine-tune a Luoxia run or a local Hugging Face model: full, LoRA, AdaLoRA, IA3, prefix or prompt tuning;
    a generator, a text classifier (task: classify) or a tagger (task: token_classify)."""
    recipe = load_recipe(config, overrides, allowed=tasks("finetune"))
    if check:
        checker = check_tagging_data if isinstance(recipe, TokenClassifyRecipe) else check_data
        console.print(checker(recipe), highlight=False, markup=False)
        return
    _train_and_report(recipe, resume)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(help="a pre-training or fine-tuning run directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="new directory for the exported model")],
    format: Annotated[str, typer.Option(help="hf (Hugging Face transformers directory)")] = "hf",
    merge: Annotated[bool, typer.Option(help="fine-tuning runs: fold the adapter into the base")] = False,
) -> None:
    """Write a standard Hugging Face model directory (config, safetensors, tokenizer, generation config)."""
    if format != "hf":
        raise ConfigError(f"unknown export format '{format}'; valid: hf")
    console.print(f"exported {export_run(run, out, merge)} ({escape(str(out))})")


@app.command("import")
def import_model(
    hf_dir: Annotated[Path, typer.Argument(help="a local Hugging Face GPT-2, Llama, Qwen3 or Arcee directory")],
    out: Annotated[Path, typer.Option("--out", "-o", help="new Luoxia run directory")],
) -> None:
    """Import a Hugging Face checkpoint into Luoxia's own GPT (then generate, eval or fine-tune it)."""
    config = import_hf(hf_dir, out)
    console.print(f"imported {escape(str(hf_dir))} as a {config.n_layer}-layer GPT × {config.n_embd} "
                  f"({escape(str(out))})", highlight=False)


@app.command()
def classify(
    model: Annotated[Path, typer.Option("--model", "-m", help="a classification fine-tuning run")],
    input: Annotated[Path, typer.Option("--input", "-i", help="CSV or JSONL with texts (and labels, to score)")],
    text_field: Annotated[str, typer.Option(help="text column/field")] = "text",
    label_field: Annotated[str, typer.Option(help="label column/field (optional in the file)")] = "label",
    json_out: Annotated[Path | None, typer.Option(help="write predictions and metrics here as JSON")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
) -> None:
    """Label texts with a fine-tuned classifier; with gold labels, print accuracy, macro-F1 and the report."""
    result = classify_file(model, input, text_field, label_field, device=device)
    metrics = result.get("metrics")
    if metrics:
        console.print(metrics["report_text"], highlight=False, markup=False)
        console.print(f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
                      f"confusion matrix (rows gold, columns predicted; {', '.join(metrics['labels'])}): "
                      f"{metrics['confusion_matrix']}", highlight=False)
    else:
        for label in result["predictions"]:
            print(label)
    if json_out is not None:
        json_out.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")


def _read_prompts(prompt: list[str] | None, prompt_file: Path | None) -> list[str]:
    prompts = list(prompt or [])
    if prompt_file is not None:
        if not prompt_file.is_file():
            raise LuoxiaError(f"{prompt_file}: no such prompt file")
        prompts += [line for line in cli_safety.read_text_file(prompt_file).splitlines() if line.strip()]
    return prompts or [""]


@app.command()
@config_options(GenerationConfig, into="options")
def generate(
    model: Annotated[str, typer.Option("--model", "-m", help="run directory, or openai:BASE_URL#MODEL (any "
                                       "OpenAI-compatible server; key from $OPENAI_API_KEY)")],
    prompt: Annotated[list[str] | None, typer.Option("--prompt", "-p", help="prompt (repeat for a batch)")] = None,
    prompt_file: Annotated[Path | None, typer.Option(help="one prompt per line")] = None,
    template: Annotated[Path | None, typer.Option(help="Jinja prompt template (the prompt is {{ input }})")] = None,
    var: Annotated[list[str] | None, typer.Option(help="template variable name=value (repeatable)")] = None,
    chat: Annotated[bool, typer.Option(help="send each prompt as a user turn through the model's chat "
                                       "template")] = False,
    stream: Annotated[bool | None, typer.Option(help="print tokens as they come (default: one prompt)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per completion")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    compile: Annotated[bool, typer.Option(help="compile the decode step (Luoxia GPTs): faster after a slow "
                                          "start")] = False,
    watermark: Annotated[bool, typer.Option(help="add the green-list watermark (`luoxia watermark detect` finds "
                                            "it)")] = False,
    guard: Annotated[bool, typer.Option(help="moderate prompt and output, redact personal data, watermark, "
                                        "audit")] = False,
    key_file: Annotated[Path | None, typer.Option(help="watermark key file (default: $LUOXIA_WATERMARK_KEY, "
                                                     "else the public demo key)")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="--guard: audit database directory")] = None,
    policy: Annotated[Path | None, typer.Option(help="--guard: policy YAML (default configs/safety/guard.yaml "
                                                   "settings)")] = None,
    options: dict | None = None,
) -> None:
    """Generate text from a trained model."""
    config = build_config(GenerationConfig, options or {}, source="from the command line")

    generator = load(model, device, compile=compile)
    prompts, config = prepare_prompts(_read_prompts(prompt, prompt_file), generator, config, template, var, chat)
    generator, processors = _safety_wrap(generator, watermark, guard, key_file, data_dir, policy)
    if stream is None:
        stream = len(prompts) == 1 and config.num_beams == 1 and not as_json and not config.collapse_repeats
    if stream:
        for p in prompts:
            sys.stdout.write(p)
            for piece in generator.stream(p, config, processors):
                sys.stdout.write(piece)
                sys.stdout.flush()
            sys.stdout.write("\n")
        return
    for p, result in zip(prompts, generator.generate(prompts, config, processors), strict=True):
        if as_json:
            print(json.dumps({"prompt": p, "text": result.text, "finish_reason": result.finish_reason,
                              "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                              **({"safety": result.safety} if result.safety else {})}, ensure_ascii=False))
        else:
            console.print(f"[bold]{escape(p)}[/bold]{escape(result.text)}", highlight=False)
            console.rule(style="dim")


def _safety_wrap(generator, watermark: bool, guard: bool, key_file: Path | None, data_dir: Path | None,
                 policy_file: Path | None):
    """The generator behind the guard (``--guard``), or with the watermark's logits processor."""
    if not (watermark or guard):
        return generator, []

    key = resolve_key(key_file=key_file)
    if not guard:
        return generator, [WatermarkLogitsProcessor(key)]

    policy = load_config(GuardPolicy, policy_file) if policy_file else GuardPolicy()
    checks = Guard(policy, key=key, audit=AuditStore(data_dir), model_name=generator.name)
    return GuardedGenerator(generator, checks), []


def _report_table(report: dict) -> Table:
    table = Table(title=f"evaluation of {report['run']}", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, dict):  # a tagger's per-type scores
                    for name, w in v.items():
                        table.add_row(f"{key}.{sub}.{name}", f"{w:.4f}" if isinstance(w, float) else str(w))
                else:
                    table.add_row(f"{key}.{sub}", f"{v:.4f}" if isinstance(v, float) else str(v))
        elif key not in ("run",):
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    return table


@app.command("generate-image")
def generate_image(
    model: Annotated[Path, typer.Option("--model", "-m", help="an image run directory (vae, gan, ddpm)")],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help='what to draw: "7", "seven", "digit 7"')],
    n: Annotated[int, typer.Option(help="how many images")] = 16,
    seed: Annotated[int | None, typer.Option(help="same seed, same images")] = None,
    steps: Annotated[int | None, typer.Option(help="diffusion: DDIM steps (default: the recipe's)")] = None,
    guidance: Annotated[float | None, typer.Option(help="diffusion: classifier-free guidance weight "
                                                      "(default: the recipe's)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="directory for grid.png and the single "
                                      "images")] = Path("samples"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
    watermark: Annotated[bool, typer.Option(help="moderate the prompt, watermark the images (256x256 RGB) and sign "
                                            "their provenance (`luoxia provenance verify`)")] = False,
    key_file: Annotated[Path | None, typer.Option(help="key file (default: $LUOXIA_WATERMARK_KEY, else the "
                                                     "public demo key)")] = None,
) -> None:
    """Draw images of a class with a trained image model; writes a PNG grid and one PNG per image."""
    options = {k: v for k, v in {"steps": steps, "guidance": guidance}.items() if v is not None}
    inner = load(model, device)
    if watermark:
        generator = GuardedImageGenerator(inner, Guard(key=resolve_key(key_file=key_file), model_name=inner.name))
        written = write_guarded_images(generator, prompt, n, seed, out, str(model), **options)
    else:
        written = generate_image_files(inner, model, prompt, n, seed, out, **options)
    console.print(f"wrote {n} images and {', '.join(p.name for p in written)} in {escape(str(out))}",
                  highlight=False)


@app.command("eval-image")
def eval_image(
    model: Annotated[Path, typer.Option("--model", "-m", help="an image run directory (vae, gan, ddpm)")],
    classifier: Annotated[Path, typer.Option(help="a classifier run (configs/image/classifier.yaml) on the same data")],
    n_per_class: Annotated[int, typer.Option(help="samples drawn of each class")] = 100,
    seed: Annotated[int, typer.Option(help="class c is drawn with seed + c")] = 0,
    steps: Annotated[int | None, typer.Option(help="diffusion: DDIM steps (default: the recipe's)")] = None,
    guidance: Annotated[float | None, typer.Option(help="diffusion: classifier-free guidance weight "
                                                      "(default: the recipe's)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="directory for report.json and report.png "
                                                "(default: RUN/eval-image)")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
) -> None:
    """FID and KID (in the classifier's feature space), conditional accuracy and per-class coverage of samples."""
    result = evaluate_image_run(model, classifier, n_per_class, seed, steps, guidance, device)
    out = out or model / EVAL_IMAGE_DIR
    console.print(write_report(result, out))
    console.print(f"wrote report.json and report.png in {escape(str(out))}", highlight=False)


@app.command("fill-mask")
def fill_mask(
    text: Annotated[str, typer.Argument(help='text with [MASK] where tokens are missing, e.g. "The [MASK] '
                                        'statement returns a value"')],
    model: Annotated[Path, typer.Option("--model", "-m", help="a masked-LM run directory (task: mlm)")],
    top_k: Annotated[int, typer.Option(help="fillers shown per [MASK]")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON list per [MASK]")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
) -> None:
    """The most probable fillers of each [MASK] in a text, with their probabilities (a masked LM)."""
    generator = load(model, device)
    if not isinstance(generator, MaskedLMGenerator):
        raise ConfigError(f"{model}: not a masked-LM run (task: mlm); fill-mask needs one, e.g. one trained "
                          "from configs/mlm/pydoc.yaml")
    for n, fillers in enumerate(generator.fill_mask(text, top_k), start=1):
        if as_json:
            print(json.dumps([{"token": t, "probability": p} for t, p in fillers], ensure_ascii=False))
            continue
        console.print(f"[bold]{escape(MASK_TOKEN)} {n}[/bold]", highlight=False)
        for token, probability in fillers:
            console.print(f"  {probability:.4f}  {escape(repr(token))}", highlight=False)


@app.command("eval")
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="run directory")],
    data: Annotated[str | None, typer.Option(help="file, directory or corpus name (default: the run's val "
                                             "split)")] = None,
    samples: Annotated[int, typer.Option(help="generate N samples and measure their diversity")] = 0,
    prompt: Annotated[str, typer.Option(help="prompt for the samples")] = "",
    max_new_tokens: Annotated[int, typer.Option(help="length of each sample")] = 100,
    temperature: Annotated[float, typer.Option(help="sampling temperature for the samples")] = 1.0,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    json_out: Annotated[Path | None, typer.Option(help="also write the report here as JSON")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, mps")] = "auto",
) -> None:
    """Loss, perplexity, bits per char/byte on held-out text; diversity and repetition of samples; for a
    tagger (token_classify run), entity precision/recall/F1 per type and micro on IOB2 data; for a masked LM
    (mlm run), masked-token accuracy and pseudo-perplexity."""
    generation = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    report = evaluate_run(model, data, samples, prompt, generation, device=device)
    console.print(_report_table(report))
    _print_json(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


@app.command()
def demo(
    corpus: Annotated[str, typer.Option(help="pydoc (ships with Python), shakespeare or poems "
                                        "(../shared/data)")] = "pydoc",
    out_dir: Annotated[str | None, typer.Option(help="run directory (default runs/demo-CORPUS)")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="recipe override key=value")] = None,
) -> None:
    """The main job: prepare a corpus, train a small GPT for a few minutes, print samples and perplexity."""
    run_demo(corpus, out_dir, overrides or [], console)


cli_safety.register(app)
cli_serve.register(app)
cli_apps.register(app)
cli_retrieval.register(app)
cli_summarize.register(app)
cli_write.register(app)


USER_ERRORS = (LuoxiaError, OSError, UnicodeDecodeError)  # caused by input or the host, not bugs: no traceback


def error_line(error: BaseException) -> str:
    """What a user error says, as one line with no control characters (a file name or a quoted input
    could carry escape sequences to the terminal)."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror[:1].lower()}{error.strerror[1:]}"
    elif isinstance(error, UnicodeDecodeError):
        text = f"input is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start})"
    else:
        text = str(error) or type(error).__name__
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "".join(c for c in "; ".join(line for line in lines if line) if c.isprintable())


def main() -> None:
    """The ``luoxia`` entry point: a user error prints ``error: <one line>`` and exits with status 2."""
    try:
        app()
    except USER_ERRORS as error:
        err_console.print(f"[bold red]error:[/bold red] {escape(error_line(error))}", highlight=False,
                          soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
