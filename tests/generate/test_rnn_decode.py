"""Generation with an LSTM/GRU language model: the carried state is the KV cache, and every path of
the GPT's decode engine (sampling, beam search, streaming, stop strings, the batcher, the guard, the
CLI) runs on it unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import luoxia
from luoxia.data.tokenizer import EOS_TOKEN, TextTokenizer, train_char_tokenizer
from luoxia.generate.batching import BatchedGenerator, ContinuousBatcher
from luoxia.generate.interface import GenerationConfig
from luoxia.generate.rnn import STATEFUL_CONTEXT, RNNBatchDecoder, RNNDecoder, RNNGenerator
from luoxia.models.rnn import RNNLM
from luoxia.runs import CONFIG_FILE
from luoxia.safety.audit import AuditStore
from luoxia.safety.guard import REFUSAL, Guard, GuardedGenerator, GuardPolicy
from luoxia.safety.moderation import Moderator
from luoxia.safety.watermark import WatermarkDetector, parse_key
from tests.helpers import TEXT, save_rnn_run, tiny_rnn
from tests.test_cli import assert_one_line_error, run_main

CELLS = ["lstm", "gru"]
PROMPTS = ["To be", "Whether 'tis"]
# The whole-prefix read runs the fused recurrent kernel over T steps (every input projection in one
# matmul), the carried state one step per call: float32 sums in another order differ by ~1e-7, and
# the recurrence carries such differences along. 1e-5 is ~20x what we see, far below any logit gap.
TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return train_char_tokenizer([TEXT], special_tokens=[EOS_TOKEN])


@pytest.fixture(scope="module", params=CELLS)
def model(request, tokenizer: TextTokenizer) -> RNNLM:
    return tiny_rnn(request.param, tokenizer.vocab_size, tie_embeddings=request.param == "gru", n_embd=24,
                    block_size=32)


@pytest.fixture(scope="module")
def generator(model: RNNLM, tokenizer: TextTokenizer) -> RNNGenerator:
    return RNNGenerator(model, tokenizer)


@torch.no_grad()
def reread(model: RNNLM, history: list[int]) -> torch.Tensor:
    """The next-token logits (V,) of a history read whole from the zero state."""
    return model(torch.tensor([history]), last_only=True)[0][0, -1]


def test_the_carried_state_equals_rereading_the_whole_prefix(model: RNNLM, tokenizer: TextTokenizer):
    """Past block_size too: an RNN has no context to run out of."""
    prompts = [tokenizer.encode(p) for p in PROMPTS]
    cached, uncached = RNNDecoder(model, prompts), RNNDecoder(model, prompts, use_cache=False)
    tokens = torch.Generator().manual_seed(0)
    for _ in range(model.config.block_size + 8):
        torch.testing.assert_close(cached.logits, uncached.logits, **TOLERANCE)
        next_ids = torch.randint(0, tokenizer.vocab_size, (len(prompts),), generator=tokens)
        cached.push(next_ids)
        uncached.push(next_ids)
    assert cached.histories == uncached.histories
    torch.testing.assert_close(cached.logits[1], reread(model, cached.histories[1]), **TOLERANCE)


def test_rows_that_join_and_leave_keep_their_own_state(model: RNNLM, tokenizer: TextTokenizer):
    """The batcher's decoder: each row's logits are those of its own history alone, whoever shares
    the batch, with no padding in the recurrence (rows of different lengths join at any step)."""
    decoder = RNNBatchDecoder(model)
    script = [("add", "To be"), ("push", None), ("add", "Or to take arms"), ("push", None), ("push", None),
              ("remove", [0]), ("add", "N"), ("add", "And"), ("push", None), ("remove", [0, 2]), ("push", None)]
    for step, (action, argument) in enumerate(script):
        if action == "add":
            decoder.add(tokenizer.encode(str(argument)))
        elif action == "remove":
            decoder.remove(list(argument or []))
        else:
            decoder.push(torch.arange(len(decoder.histories)) + step)
        assert decoder.logits.shape == (len(decoder.histories), tokenizer.vocab_size)
        for row, history in enumerate(decoder.histories):
            torch.testing.assert_close(decoder.logits[row], reread(model, history), **TOLERANCE)
    assert len(decoder.histories) == 1


def test_the_same_seed_gives_the_same_text_batched_alone_or_through_the_batcher(generator: RNNGenerator):
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, top_p=0.95, seed=7)  # fits block_size
    together = [r.text for r in generator.generate(PROMPTS, config)]
    assert len(set(together)) > 1 and all(together)
    alone = [generator.generate([p], config.model_copy(update={"seed": 7 + i}))[0].text for i, p in enumerate(PROMPTS)]
    assert alone == together
    assert [r.text for r in generator.generate(PROMPTS, config.model_copy(update={"use_cache": False}))] == together
    for max_batch in (1, 4):
        batcher = ContinuousBatcher(generator, max_batch=max_batch)
        try:
            assert [r.text for r in BatchedGenerator(batcher, timeout=60).generate(PROMPTS, config)] == together
        finally:
            batcher.close()
    assert generator.max_rows is None  # continuous batching: any number of rows share the steps


def ban(token: int | None):
    """A logits processor that never lets ``token`` be chosen."""
    def processor(ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        logits[:, token] = float("-inf")
        return logits

    return processor


@pytest.mark.parametrize("options", [
    dict(temperature=0), dict(temperature=0.7), dict(top_k=3), dict(top_p=0.5), dict(repetition_penalty=5.0),
    dict(collapse_repeats=2), dict(num_beams=3), dict(temperature=0, use_cache=False),
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_every_strategy_runs(generator: RNNGenerator, tokenizer: TextTokenizer, options: dict):
    config = GenerationConfig(max_new_tokens=16, seed=3, **options)
    first, second = generator.generate(PROMPTS, config)
    assert 0 < first.completion_tokens <= 16 and first.prompt_tokens == len(tokenizer.encode(PROMPTS[0]))
    assert [r.text for r in generator.generate(PROMPTS, config)] == [first.text, second.text]  # seeded
    (banned,) = generator.generate(PROMPTS[:1], config, logits_processors=[ban(tokenizer.encode("e")[0])])
    assert "e" not in banned.text


def test_beam_search_finds_the_best_continuation(generator: RNNGenerator, tokenizer: TextTokenizer):
    """Width 1 is greedy; a width of the whole vocabulary over two tokens searches every pair, so
    its answer is the pair with the highest log-probability, found here by brute force (end-of-text
    banned in both, so that every candidate has two tokens)."""
    greedy = GenerationConfig(max_new_tokens=12, temperature=0)
    (beam,) = generator.generate(PROMPTS[:1], greedy.model_copy(update={"num_beams": 1}))
    assert beam.token_ids == generator.generate(PROMPTS[:1], greedy)[0].token_ids
    vocab = [i for i in range(tokenizer.vocab_size) if i != tokenizer.eos_id]
    exhaustive = GenerationConfig(max_new_tokens=2, num_beams=tokenizer.vocab_size, length_penalty=0)
    (best,) = generator.generate(PROMPTS[:1], exhaustive, logits_processors=[ban(tokenizer.eos_id)])
    prompt = tokenizer.encode(PROMPTS[0])
    first = ban(tokenizer.eos_id)(None, generator.sequence_logits(torch.tensor([prompt]))[:, -1])
    first = first[0].log_softmax(-1)  # (V,)
    pairs = torch.tensor([prompt + [a] for a in vocab])  # (V-1, T+1)
    second = ban(tokenizer.eos_id)(None, generator.sequence_logits(pairs)[:, -1]).log_softmax(-1)  # (V-1, V)
    scores = {(a, b): first[a].item() + second[i, b].item() for i, a in enumerate(vocab) for b in vocab}
    assert tuple(best.token_ids) == max(scores, key=scores.__getitem__)


def test_stop_strings_and_stream_pieces_make_the_text(generator: RNNGenerator):
    config = GenerationConfig(max_new_tokens=30, temperature=0.8, seed=11)
    (full,) = generator.generate(PROMPTS[:1], config)
    stop = next(full.text[i:i + 2] for i in range(4, 20) if full.text.index(full.text[i:i + 2]) == i)
    (stopped,) = generator.generate(PROMPTS[:1], config.model_copy(update={"stop": [stop]}))
    assert stopped.finish_reason == "stop" and stopped.text == full.text[: full.text.index(stop)]
    stream = generator.stream(PROMPTS[0], config.model_copy(update={"stop": [stop]}))
    pieces = list(stream)
    assert len(pieces) > 1 and "".join(pieces) == stopped.text


def test_the_default_context_is_the_training_window_and_generation_runs_past_it(generator: RNNGenerator,
                                                                           model: RNNLM):
    assert generator.context_length == model.config.block_size
    config = GenerationConfig(max_new_tokens=3 * model.config.block_size, temperature=1.0, seed=0)
    (long,) = generator.generate(PROMPTS[:1], config, logits_processors=[ban(generator.tokenizer.eos_id)])
    assert long.completion_tokens == 3 * model.config.block_size


def test_the_guard_wraps_an_rnn(tokenizer: TextTokenizer, tmp_path: Path):
    """Watermarked output (a near-uniform model samples with enough entropy to carry the mark) and a
    refused harmful prompt, generated or streamed."""
    key = parse_key("00112233445566778899aabbccddeeff", "test")
    inner = RNNGenerator(tiny_rnn("gru", tokenizer.vocab_size, spread=0.0), tokenizer)
    guard = Guard(GuardPolicy(pii="allow", moderate_output=False), Moderator(classifier=None),
                  AuditStore(tmp_path), key)
    guarded = GuardedGenerator(inner, guard)
    config, no_eos = GenerationConfig(max_new_tokens=200, seed=0), [ban(tokenizer.eos_id)]
    (result,) = guarded.generate(["To be"], config, logits_processors=no_eos)
    assert result.safety["watermark"]["key_id"] == key.key_id
    assert WatermarkDetector(tokenizer, key).detect(result.text).watermarked
    assert guarded.generate(["I will kill you"])[0].text == REFUSAL
    assert "".join(guarded.stream("To be", config, logits_processors=no_eos)) == result.text


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory, tokenizer: TextTokenizer) -> Path:
    return save_rnn_run(tmp_path_factory.mktemp("rnn") / "tiny-lstm", tiny_rnn("lstm", tokenizer.vocab_size),
                        tokenizer)


def test_a_run_s_context_is_its_window_or_longer_when_trained_statefully(rnn_run: Path, tmp_path: Path,
                                                                        tokenizer: TextTokenizer):
    stateful = luoxia.load(rnn_run, device="cpu")
    assert isinstance(stateful, RNNGenerator) and stateful.context_length == STATEFUL_CONTEXT
    stateless = save_rnn_run(tmp_path / "stateless", tiny_rnn("gru", tokenizer.vocab_size), tokenizer, stateful=False)
    assert luoxia.load(stateless, device="cpu").context_length == 16  # tiny_rnn's block_size


def test_luoxia_load_and_the_generate_cli_on_an_rnn_run(rnn_run: Path, monkeypatch, capsys):
    generator = luoxia.load(rnn_run, device="cpu", compile=True)  # compile: ignored for an RNN
    assert isinstance(generator, RNNGenerator) and generator.name == "tiny-lstm"
    config = GenerationConfig(max_new_tokens=16, temperature=1.0, seed=5)
    expected = [r.text for r in generator.generate(PROMPTS, config)]
    code, out, err = run_main(monkeypatch, capsys, "generate", "--model", str(rnn_run), "--prompt", PROMPTS[0],
                              "--prompt", PROMPTS[1], "--json", "--device", "cpu", "--max-new-tokens", "16",
                              "--seed", "5")
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == expected


def test_the_eval_cli_measures_an_rnn_run(rnn_run: Path, tmp_path: Path, monkeypatch, capsys):
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "report.json"
    code, _, err = run_main(monkeypatch, capsys, "eval", "--model", str(rnn_run), "--data", str(held_out),
                            "--device", "cpu", "--json-out", str(out))
    assert code == 0, err
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["tokens"] > 0 and report["perplexity"] > 1


def test_export_refuses_an_rnn_run_in_one_line(rnn_run: Path, tmp_path: Path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "export", str(rnn_run), "--out", str(tmp_path / "hf"))
    assert_one_line_error(code, err, "no Hugging Face model family matches an LSTM/GRU language model")
    assert out == "" and not (tmp_path / "hf").exists()


def test_a_broken_rnn_run_is_a_one_line_error(rnn_run: Path, tmp_path: Path, monkeypatch, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(rnn_run, broken)
    recipe = (broken / CONFIG_FILE).read_text(encoding="utf-8")
    (broken / CONFIG_FILE).write_text(recipe.replace("cell: lstm", "cell: transformer"), encoding="utf-8")
    code, _, err = run_main(monkeypatch, capsys, "generate", "--model", str(broken), "--prompt", "To be")
    assert_one_line_error(code, err, "cell")
