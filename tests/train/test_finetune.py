"""Fine-tuning through the shared loop: every peft method lowers the loss, LoRA is small and merges
exactly, chat data is checked before training, and classification learns a separable set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import luoxia
from luoxia.config import load_config
from luoxia.data.tokenizer import EOS_TOKEN, train_char_tokenizer
from luoxia.evaluate.classify import classify_file
from luoxia.export import export_run, write_run
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.load import load_finetuned
from luoxia.runs import ADAPTER_DIR, read_metrics
from luoxia.train.finetune import FinetuneRecipe, MethodConfig, build_model, finetune, peft_config, trainable_share
from tests.helpers import REPO, TEXT, tiny_gpt, tiny_recipe
from tests.helpers import luoxia as run_cli

CHARS = TEXT + "<|im_start|>user assistant system\n0123456789 good bad great awful nice terrible"
LINES = TEXT.splitlines()


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    """A tiny Luoxia GPT (classic recipe) pre-trained for a few seconds: the base every test adapts."""
    from luoxia.train.lm import train_lm

    directory = tmp_path_factory.mktemp("base")
    (directory / "corpus.txt").write_text(CHARS * 20, encoding="utf-8")
    train_lm(tiny_recipe(directory / "run", directory / "corpus.txt", "max_steps=100", "eval_interval=100",
                         "data.split=tail", "model.n_embd=32", "model.block_size=128"))
    return directory / "run"


@pytest.fixture(scope="module")
def chat_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("chat") / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": LINES[i % 6][:20]},
                          {"role": "assistant", "content": LINES[(i + 1) % 6][:24]}]} for i in range(12)]
    path.write_text("\n".join(json.dumps(row) for row in rows), encoding="utf-8")
    return path


def recipe(base: Path, out: Path, train: Path, *overrides: str) -> FinetuneRecipe:
    raw = REPO / "configs/finetune/lora_chat.yaml"
    return load_config(FinetuneRecipe, raw, [
        f"base_model={base}", f"out_dir={out}", f"data.train={train}", "data.max_length=96", "train.batch_size=4",
        "train.max_steps=12", "train.warmup_steps=0", "train.eval_interval=12", "train.log_interval=1",
        "train.checkpoint_interval=12", "train.progress=false", "train.device=cpu", "train.num_threads=1",
        "sample.max_new_tokens=8", *overrides])


@pytest.mark.slow
@pytest.mark.parametrize("method, lr", [("full", 3e-3), ("lora", 1e-2), ("adalora", 3e-2), ("ia3", 3e-1),
                                        ("prefix", 3e-2), ("prompt", 3e-1)])
def test_each_method_lowers_the_loss(method: str, lr: float, base_run: Path, chat_file: Path, tmp_path: Path):
    """Four conversations in one batch: every step sees the same examples, so the loss must fall."""
    tiny_set = tmp_path / "four.jsonl"
    tiny_set.write_text("\n".join(chat_file.read_text().splitlines()[:4]))
    state = finetune(recipe(base_run, tmp_path / "run", tiny_set, f"method.name={method}", f"train.lr={lr}",
                            f"data.val={tiny_set}"))
    losses = [row["loss"] for row in read_metrics(tmp_path / "run") if row["kind"] == "train"]
    assert state.step == 12 and len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.01
    saved = tmp_path / "run" / ("hf" if method == "full" else ADAPTER_DIR)
    assert (saved / "tokenizer.json").is_file()


def test_lora_trains_under_five_percent(base_run: Path, chat_file: Path, tmp_path: Path):
    bigger = tmp_path / "bigger"
    tokenizer = train_char_tokenizer([CHARS], special_tokens=[EOS_TOKEN])
    write_run(bigger, tiny_gpt(vocab_size=tokenizer.vocab_size, n_embd=128, n_head=4, n_layer=2, block_size=128),
              tokenizer, {})
    model, _ = build_model(recipe(bigger, tmp_path / "run", chat_file, "method.r=4"), tmp_path / "run", None)
    trainable, total = trainable_share(model)
    assert 0 < trainable < 0.05 * total


def test_rows_longer_than_the_base_context_are_refused(base_run: Path, chat_file: Path, tmp_path: Path):
    from luoxia.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.max_length=124 \+ 8 virtual tokens exceeds .* context of 128"):
        build_model(recipe(base_run, tmp_path / "run", chat_file, "data.max_length=124", "method.name=prompt",
                           "data.packing=false"), tmp_path / "run", None)


@pytest.mark.slow
def test_merged_lora_equals_the_adapter_model(base_run: Path, chat_file: Path, tmp_path: Path):
    finetune(recipe(base_run, tmp_path / "run", chat_file, "train.lr=5e-2"))
    adapter_model, tokenizer = load_finetuned(tmp_path / "run", device="cpu", merge=False)
    base_model, _ = luoxia.load(base_run, device="cpu").model, None
    ids = torch.tensor([tokenizer("To be, or not")["input_ids"]])
    with torch.no_grad():
        adapted = adapter_model(input_ids=ids).logits
        assert (adapted - base_model(ids)[0]).abs().max() > 1e-3  # the adapter learned something

    export_run(tmp_path / "run", tmp_path / "merged", merge=True)
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", local_files_only=True).eval()
    with torch.no_grad():
        assert (merged(input_ids=ids).logits - adapted).abs().max() <= 1e-4
    greedy = GenerationConfig(max_new_tokens=12, temperature=0)
    assert luoxia.load(tmp_path / "merged", device="cpu").generate(["To be"], greedy)[0].text == \
        luoxia.load(tmp_path / "run", device="cpu").generate(["To be"], greedy)[0].text

    export_run(tmp_path / "run", tmp_path / "adapter-only")
    assert (tmp_path / "adapter-only" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_chat_tuned_tokenizer_keeps_the_training_template(base_run: Path, chat_file: Path, tmp_path: Path):
    finetune(recipe(base_run, tmp_path / "run", chat_file, "train.max_steps=2"))
    _, tokenizer = load_finetuned(tmp_path / "run", device="cpu")
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "To be"}], tokenize=False,
                                             add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>user\nTo be") and rendered.endswith("<|im_start|>assistant\n")


def test_check_renders_two_examples_and_marks_the_loss(base_run: Path, chat_file: Path, tmp_path: Path):
    result = run_cli("finetune", "configs/finetune/lora_chat.yaml", f"base_model={base_run}",
                     f"out_dir={tmp_path / 'run'}", f"data.train={chat_file}", "--check")
    assert LINES[1][:24] in result.stdout and LINES[2][:24] in result.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_check_names_the_bad_line_of_a_chat_file(base_run: Path, chat_file: Path, tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    lines = chat_file.read_text().splitlines()
    lines[3] = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}]})
    bad.write_text("\n".join(lines))
    result = run_cli("finetune", "configs/finetune/lora_chat.yaml", f"base_model={base_run}",
                     f"out_dir={tmp_path / 'run'}", f"data.train={bad}", "--check", check=False)
    assert result.returncode == 2 and "bad.jsonl:4" in result.stderr and "robot" in result.stderr


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """A separable set: the label is whether the text holds a positive or a negative word."""
    generator = torch.Generator().manual_seed(seed)
    positive, negative = ["good", "great", "nice"], ["bad", "awful", "terrible"]
    rows = []
    for i in range(n):
        label = i % 2
        word = (positive if label else negative)[int(torch.randint(3, (1,), generator=generator))]
        filler = LINES[int(torch.randint(6, (1,), generator=generator))][:12]
        rows.append({"text": f"{filler} {word}", "label": "up" if label else "down"})
    return rows


@pytest.mark.slow
def test_classification_learns_a_separable_set(base_run: Path, tmp_path: Path):
    for name, n, seed in [("train", 64, 0), ("val", 32, 1)]:
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in sentiment_rows(n, seed)))
    classify = load_config(FinetuneRecipe, REPO / "configs/finetune/classify_fin_sentiment.yaml", [
        f"base_model={base_run}", f"out_dir={tmp_path / 'run'}", f"data.train={tmp_path / 'train.jsonl'}",
        f"data.val={tmp_path / 'val.jsonl'}", "data.label_names=null", "train.max_steps=40", "train.batch_size=16",
        "train.lr=1e-2", "train.warmup_steps=0", "train.eval_interval=40", "train.eval_batches=2",
        "train.progress=false", "train.device=cpu", "train.num_threads=1", "method.name=full"])
    finetune(classify)
    result = classify_file(tmp_path / "run", tmp_path / "val.jsonl", device="cpu")
    metrics = result["metrics"]
    assert metrics["labels"] == ["down", "up"] and metrics["accuracy"] >= 0.9
    assert sum(map(sum, metrics["confusion_matrix"])) == 32 and "macro avg" in metrics["report_text"]


def test_conversations_with_no_assistant_token_in_range_are_dropped(chat_file: Path, tmp_path: Path):
    from transformers import PreTrainedTokenizerFast

    from luoxia.data.finetune import conversation_rows
    from luoxia.errors import DataError
    from luoxia.train.finetune import FinetuneData

    char = train_char_tokenizer([CHARS], special_tokens=[EOS_TOKEN])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=char.backend, eos_token=EOS_TOKEN)
    long_question = {"messages": [{"role": "user", "content": TEXT}, {"role": "assistant", "content": "To be"}]}
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(chat_file.read_text() + "\n" + json.dumps(long_question))
    data = FinetuneData(train=str(mixed), format="chat", max_length=96)
    with pytest.warns(UserWarning, match="1 of 13 conversations have no assistant token"):
        rows = conversation_rows(mixed, data, tokenizer)
    assert len(rows) == 12
    with pytest.raises(DataError, match="no conversation has an assistant token within data.max_length=8"):
        conversation_rows(mixed, data.model_copy(update={"max_length": 8}), tokenizer)


@pytest.mark.slow
def test_resume_after_a_kill_equals_the_uninterrupted_run(base_run: Path, chat_file: Path, tmp_path: Path):
    """A run stopped after its step-3 checkpoint (later checkpoints lost, as after ``kill -9``)
    resumes to exactly the losses and weights of the run that never stopped (dropout included)."""
    from safetensors.torch import load_file

    steps = ["train.max_steps=6", "train.checkpoint_interval=3", "train.eval_interval=100", "method.dropout=0.2"]
    finetune(recipe(base_run, tmp_path / "reference", chat_file, *steps))
    reference = [row["loss"] for row in read_metrics(tmp_path / "reference") if row["kind"] == "train"]

    finetune(recipe(base_run, tmp_path / "killed", chat_file, *steps))
    checkpoints = tmp_path / "killed" / "checkpoints"
    for later in sorted(checkpoints.glob("step-*"))[1:]:
        shutil.rmtree(later)
    (checkpoints / "latest.json").write_text(json.dumps({"dir": "step-0000003", "step": 3}))
    finetune(recipe(base_run, tmp_path / "killed", chat_file, *steps), resume=True)
    resumed = [row["loss"] for row in read_metrics(tmp_path / "killed") if row["kind"] == "train"]
    assert resumed == reference
    final = [load_file(tmp_path / run / "checkpoints/step-0000006/model.safetensors")
             for run in ("reference", "killed")]
    assert all(torch.equal(final[0][name], final[1][name]) for name in final[0])


@pytest.mark.slow
def test_a_hugging_face_base_and_packed_plain_text(base_run: Path, tmp_path: Path):
    """Continued pre-training of a Hugging Face directory (no Luoxia run behind it) on packed text."""
    export_run(base_run, tmp_path / "hf")
    (tmp_path / "more.txt").write_text(TEXT * 4, encoding="utf-8")
    state = finetune(recipe(tmp_path / "hf", tmp_path / "run", tmp_path / "more.txt", "data.format=text",
                            "data.packing=true", "method.name=full", "train.lr=3e-3"))
    assert state.step == 12 and not (tmp_path / "run" / "base").exists()
    rows = [row for row in read_metrics(tmp_path / "run") if row["kind"] == "train"]
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert luoxia.load(tmp_path / "run", device="cpu").generate(["To be"], GenerationConfig(max_new_tokens=5))[0].text


def test_ia3_adapts_an_arcee_base_like_llama():
    """The `make demo` recipe exports as Arcee, which peft has no IA³ choice for: without Llama's
    modules it fails with "Please specify `target_modules`"."""
    import peft
    from transformers import ArceeConfig, ArceeForCausalLM

    base = ArceeForCausalLM(ArceeConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2))
    config = peft_config(MethodConfig(name="ia3"), "finetune", 10, base.config.model_type)
    adapted = peft.get_peft_model(base, config)
    names = {name.split(".ia3_l")[0].rsplit(".", 1)[-1] for name, _ in adapted.named_parameters() if "ia3_l" in name}
    assert names == {"k_proj", "v_proj", "down_proj"}
