"""LoRA fine-tuning: Luoxia's training loop vs Hugging Face `transformers.Trainer` + `peft`.

    python bench/finetune_lora.py [--steps 40] [--warmup 5] [--batch-size 8] [--seq-len 128]
                                  [--side both|luoxia|hf] [--device cpu|cuda]

Prints one JSON line: training throughput (samples/s) and peak memory of each side, and their ratios
(luoxia / hf: a throughput ratio above 1 and a memory ratio below 1 favour Luoxia).

Both sides train the same thing:

- model: a GPT-2-shaped causal LM (4 layers, 256 wide, 4 heads) with random weights (seed 0), saved in
  Hugging Face format into a temporary directory with a byte-level BPE tokenizer (2,048 tokens)
  trained on ``pydoc_data.topics``; nothing is downloaded;
- data: the 68 chats of configs/finetune/data/pydoc_chat.jsonl, repeated so one pass covers the run,
  tokenized once (``tokenize_conversation``, cut at ``--seq-len``, loss on the assistant's tokens only);
- batches: the same tensors, in the same order, on both sides. Luoxia's loop pads each batch itself
  (``pad_batch``: right padding to the batch's longest row, attention mask 0 and label -100 on the
  padding) and cannot take rows padded in advance, so the Trainer is given exactly those batches:
  Luoxia's ``ExampleSampler`` order and ``pad_batch`` output, computed once here, read sequentially.
  At ``--seq-len 128`` almost every chat is longer than that, so nearly every batch is 128 wide
  (``mean_batch_width`` says how wide they were);
- LoRA r=8, alpha=16, dropout 0.05 on all linear layers; AdamW (lr 1e-3, betas 0.9/0.999, no weight
  decay, torch's non-fused implementation on both sides), constant learning rate, no warm-up, gradient
  clipping at 1.0, batch ``--batch-size``, no accumulation, fp32; loss logged every step on both sides.

Luoxia runs ``luoxia.train.finetune.finetune`` on configs/finetune/lora_chat.yaml with overrides (the
same path as ``luoxia finetune``); Hugging Face runs ``Trainer.train`` on
``peft.get_peft_model(AutoModelForCausalLM.from_pretrained(...))``. Each side runs in a fresh
subprocess (``--side luoxia`` / ``--side hf`` with ``--workdir``, which print one JSON line).

Timed span: the ``--steps`` optimizer steps after ``--warmup`` untimed ones, from the end of the last
warm-up step to the end of the last step: batch fetch, forward, backward, clipping, optimizer step,
the per-step loss logging and the loop's own bookkeeping. Luoxia's end of step k is the wall-clock
``time`` of its step-k row in metrics.jsonl (``log_interval=1``, written right after the step);
the Trainer's is an ``on_step_end`` callback. Not timed: loading, data preparation, warm-up, and
Luoxia's final evaluation and checkpoint (evaluation and checkpoint intervals are set past the run).

Peak memory: ``ru_maxrss`` of each child process over its whole life (imports and loading included;
for Luoxia also the final evaluation of one batch, its checkpoint and the adapter it saves, for the
Trainer nothing is saved), and ``torch.cuda.max_memory_allocated`` on CUDA. A ``--side luoxia|hf``
run without ``--workdir`` prepares its own data first, which then counts in its peak too.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "finetune" / "lora_chat.yaml"
DATA = ROOT / "configs" / "finetune" / "data" / "pydoc_chat.jsonl"
SEED = 1337
LR = 1e-3
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}
SHAPE = {"n_layer": 4, "n_embd": 256, "n_head": 4}
VOCAB_SIZE = 2048
NEVER = 10**9  # an evaluation/checkpoint interval past any run


def lora_config():
    import peft

    return peft.LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                           target_modules=LORA["target_modules"], task_type=peft.TaskType.CAUSAL_LM)


def peak_memory(device: str) -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peak = {"peak_rss_mib": round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)}
    if device == "cuda":
        peak["cuda_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return peak


# Shared set-up --------------------------------------------------------------------------------
def prepare(workdir: Path, args) -> dict:
    """Model directory, chat files and the training batches both sides read; returns the model's shape."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from luoxia.data.instruct import tokenize_conversation, validate_file
    from luoxia.data.tokenizer import EOS_TOKEN, train_bpe_tokenizer
    from luoxia.train.finetune import pad_batch, trainable_share
    from luoxia.train.task import ExampleSampler

    model_dir = workdir / "model"
    bpe = train_bpe_tokenizer(list(topics.values()), vocab_size=VOCAB_SIZE, special_tokens=(EOS_TOKEN,))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe.backend, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN)
    config = GPT2Config(**SHAPE, n_positions=max(256, args.seq_len), vocab_size=len(tokenizer),
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    total = args.steps + args.warmup
    lines = [line for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    repeat = math.ceil(total * args.batch_size / len(lines))
    (workdir / "train.jsonl").write_text("\n".join(lines * repeat) + "\n", encoding="utf-8")
    (workdir / "val.jsonl").write_text("\n".join(lines[: args.batch_size]) + "\n", encoding="utf-8")

    # Tokenized once, with the tokenizer as Luoxia loads it, into the rows Luoxia builds from train.jsonl.
    loaded = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    rows = [tokenize_conversation(c, loaded, args.seq_len) for c in validate_file(DATA, "chat")] * repeat
    sampler = ExampleSampler(len(rows), args.batch_size, 1, SEED)
    batches = [pad_batch([rows[i] for i in sampler.indices(step, 0)], loaded.pad_token_id) for step in range(total)]
    torch.save(batches, workdir / "batches.pt")

    import peft

    params = trainable_share(model)[1]
    trainable = trainable_share(peft.get_peft_model(model, lora_config()))[0]
    return {"shape": {**SHAPE, "n_positions": config.n_positions, "vocab_size": config.vocab_size},
            "params": params, "trainable_params": trainable,
            "mean_batch_width": round(sum(b[0].size(1) for b in batches[args.warmup :]) / args.steps, 1)}


# Luoxia ---------------------------------------------------------------------------------------
def run_luoxia(workdir: Path, args) -> dict:
    from luoxia.registry import load_recipe
    from luoxia.runs import read_metrics
    from luoxia.train.finetune import finetune

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    total = args.steps + args.warmup
    run_dir = workdir / "luoxia_run"
    overrides = [
        f"base_model={workdir / 'model'}", f"out_dir={run_dir}", f"seed={SEED}",
        f"data.train={workdir / 'train.jsonl'}", f"data.val={workdir / 'val.jsonl'}", "data.format=chat",
        f"data.max_length={args.seq_len}", "data.packing=false",
        "method.name=lora", f"method.r={LORA['r']}", f"method.alpha={LORA['alpha']}",
        f"method.dropout={LORA['dropout']}", f"method.target_modules={LORA['target_modules']}",
        f"train.max_steps={total}", f"train.batch_size={args.batch_size}", "train.grad_accum=1",
        "train.optimizer=adamw", f"train.lr={LR}", "train.warmup_steps=0", "train.schedule=constant",
        "train.weight_decay=0.0", "train.beta1=0.9", "train.beta2=0.999", "train.grad_clip=1.0",
        f"train.eval_interval={NEVER}", "train.eval_batches=1", f"train.checkpoint_interval={NEVER}",
        "train.log_interval=1", "train.progress=false", f"train.device={args.device}", "train.precision=fp32",
        "train.compile=false",
    ]
    finetune(load_recipe(RECIPE, overrides))
    logged = {row["step"]: row for row in read_metrics(run_dir) if row.get("kind") == "train"}
    elapsed = logged[total]["time"] - logged[args.warmup]["time"]
    return {"samples_per_s": round(args.steps * args.batch_size / elapsed, 2),
            **peak_memory(args.device), "final_loss": round(logged[total]["loss"], 4),
            "threads": torch.get_num_threads()}


# Hugging Face ---------------------------------------------------------------------------------
class PaddedRows(torch.utils.data.Dataset):
    """The prepared batches as rows, in order: a sequential sampler regroups them batch by batch."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
        self.rows = [(ids[i], mask[i], labels[i]) for ids, mask, labels in batches for i in range(ids.size(0))]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids, mask, labels = self.rows[index]
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def run_hf(workdir: Path, args) -> dict:
    import numpy as np
    import peft
    from transformers import AutoModelForCausalLM, Trainer, TrainerCallback, TrainingArguments, default_data_collator
    from transformers.trainer_callback import PrinterCallback

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    total = args.steps + args.warmup
    random.seed(SEED)  # as Luoxia's seed_everything, before the adapter is initialised
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    base = AutoModelForCausalLM.from_pretrained(str(workdir / "model"), local_files_only=True, dtype=torch.float32)
    model = peft.get_peft_model(base, lora_config())
    batches = torch.load(workdir / "batches.pt", weights_only=True)
    if len(batches) != total or batches[0][0].size(0) != args.batch_size:
        raise SystemExit(f"{workdir / 'batches.pt'} was prepared for other --steps/--warmup/--batch-size")

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.ends: dict[int, float] = {}

        def on_step_end(self, args, state, control, **kwargs):
            self.ends[state.global_step] = time.perf_counter()

    timer = StepTimer()
    training_args = TrainingArguments(
        output_dir=str(workdir / "hf_out"), per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=1, max_steps=total, learning_rate=LR, lr_scheduler_type="constant",
        warmup_steps=0, weight_decay=0.0, adam_beta1=0.9, adam_beta2=0.999, max_grad_norm=1.0,
        optim="adamw_torch", logging_steps=1, save_strategy="no", eval_strategy="no", report_to=[],
        use_cpu=args.device == "cpu", dataloader_num_workers=0, dataloader_pin_memory=False,
        disable_tqdm=True, seed=SEED, train_sampling_strategy="sequential", remove_unused_columns=False,
        label_names=["labels"],
    )
    trainer = Trainer(model=model, args=training_args, train_dataset=PaddedRows(batches),
                      data_collator=default_data_collator, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)  # it prints every log to stdout; Luoxia's loop prints nothing
    trainer.train()
    elapsed = timer.ends[total] - timer.ends[args.warmup]
    losses = {row["step"]: row["loss"] for row in trainer.state.log_history if "loss" in row}
    return {"samples_per_s": round(args.steps * args.batch_size / elapsed, 2),
            **peak_memory(args.device), "final_loss": round(losses[total], 4),
            "threads": torch.get_num_threads()}


# Driver ---------------------------------------------------------------------------------------
def run_child(side: str, workdir: Path, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--workdir", str(workdir),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
               "--seq-len", str(args.seq_len), "--device", args.device]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)  # stderr passes through
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"--side {side} failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    return json.loads(lines[-1])


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them (at least 1)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128, help="longest row in tokens (longer chats are cut)")
    parser.add_argument("--side", choices=("both", "luoxia", "hf"), default="both",
                        help="both: each side in its own subprocess; luoxia/hf: run that side in this process")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--workdir", type=Path, help="(for --side luoxia/hf) a directory prepared by --side both")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.batch_size < 1 or args.seq_len < 2:
        parser.error("--steps and --warmup must be at least 1, --batch-size at least 1, --seq-len at least 2")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available")

    with tempfile.TemporaryDirectory(prefix="finetune_lora_") as tmp:
        if args.side != "both":
            workdir = args.workdir
            if workdir is None:
                workdir = Path(tmp)
                prepare(workdir, args)
            runner = run_luoxia if args.side == "luoxia" else run_hf
            return {"side": args.side, **runner(workdir, args)}
        workdir = Path(tmp)
        model = prepare(workdir, args)
        width = model.pop("mean_batch_width")
        luoxia = run_child("luoxia", workdir, args)
        hf = run_child("hf", workdir, args)
    for side in (luoxia, hf):
        del side["side"]
    threads = luoxia["threads"] if luoxia["threads"] == hf["threads"] else None
    if threads is not None:  # the same in both children: reported once
        del luoxia["threads"], hf["threads"]
    return {
        "benchmark": "finetune_lora",
        "model": model,
        "lora": LORA,
        "device": args.device,
        "steps_timed": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "mean_batch_width": width,
        "luoxia": luoxia,
        "hf_trainer": hf,
        "throughput_ratio_luoxia_over_hf": round(luoxia["samples_per_s"] / hf["samples_per_s"], 3),
        "memory_ratio_luoxia_over_hf": round(luoxia["peak_rss_mib"] / hf["peak_rss_mib"], 3),
        "threads": threads,
    }


if __name__ == "__main__":
    print(json.dumps(main()), flush=True)
