"""Text generation: batched sampling, streaming and beam search over a KV cache.

`CausalLMGenerator` runs sampling and streaming through the one decode engine of
`luoxia.generate.decode` (the same one the continuous batcher drives), and beam search over a
`StepDecoder` with the same logit adjustment. A `StepDecoder` is all it needs of a model (Luoxia's
GPT here, an LSTM/GRU in `luoxia.generate.rnn`, a Hugging Face model in `luoxia.generate.hf`), and
a `TokenizerLike` all it needs of a tokenizer.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence

import torch
import torch.nn.functional as F

from luoxia.data.tokenizer import TextTokenizer
from luoxia.generate.decode import (
    BatchDecoder,
    Completion,
    DecodeEngine,
    DecoderFactory,
    GPTBatchDecoder,
    Row,
    SingleDecoder,
    StepDecoder,
    StepModel,
    TokenizerLike,
    adjust_logits,
    append_tokens,
    left_pad,
    row_generator,
    row_seed,
)
from luoxia.generate.interface import FinishReason, GenerationConfig, GenerationResult, LogitsProcessor
from luoxia.generate.postprocess import trim_at_stop
from luoxia.generate.templates import render_chat
from luoxia.models.gpt import GPT

__all__ = ["CausalLMGenerator", "Completion", "DecoderFactory", "GPTDecoder", "GPTGenerator", "StepDecoder",
           "TokenizerLike", "compile_step", "left_pad"]


class GPTDecoder:
    """Feeds tokens to a GPT one step at a time and returns next-token logits (B, V).

    With the cache, each step costs one token's forward pass; when the cache is full it is refilled
    from the last half-context. Without it, every step re-reads the last ``block_size`` tokens
    (what the model sees is the same while the text fits the context). ``step_model`` — the same
    model compiled, or the model itself — runs the one-token steps; prompts go through ``model``.
    """

    def __init__(self, model: GPT, histories: Sequence[Sequence[int]], use_cache: bool = True,
                 step_model: StepModel | None = None):
        self.model = model
        self.step_model = step_model if step_model is not None else model
        self.block_size = model.config.block_size
        self.use_cache = use_cache
        self.histories = [list(h) for h in histories]
        self.device = model.lm_head.weight.device
        self.logits = self._refill(self.block_size)

    @torch.no_grad()
    def _refill(self, keep: int) -> torch.Tensor:
        ids, mask = left_pad([h[-keep:] for h in self.histories], self.device)
        self.cache = self.model.new_cache(len(self.histories)) if self.use_cache else None
        logits: torch.Tensor  # (B, 1, V)
        logits, _ = self.model(ids, cache=self.cache, padding_mask=mask, last_only=True)
        return logits[:, -1].float()

    @torch.no_grad()
    def push(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Append one token per sequence; return the logits for the token after it."""
        append_tokens(self.histories, next_ids)
        if not self.use_cache:
            self.logits = self._refill(self.block_size)
        elif self.cache is not None and self.cache.length >= self.cache.max_len:  # use_cache: there is one
            self.logits = self._refill(self.block_size // 2)
        else:
            logits, _ = self.step_model(next_ids[:, None].to(self.device), cache=self.cache, last_only=True)
            self.logits = logits[:, -1].float()
        return self.logits

    def reorder(self, index: torch.Tensor) -> None:
        self.histories = [list(self.histories[i]) for i in index.tolist()]
        self.logits = self.logits[index]
        if self.cache is not None:
            self.cache.reorder(index.to(self.device))


class CausalLMGenerator:
    """`TextGenerator` over any causal LM that a `DecoderFactory` can step through."""

    def __init__(self, start_decoder: DecoderFactory, tokenizer: TokenizerLike, name: str,
                 context_length: int, device: torch.device):
        self.start_decoder = start_decoder
        self.tokenizer = tokenizer
        self.name = name
        self.context_length = context_length
        self.device = device

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text))

    def sequence_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) at every position of ``ids`` (B, T ≤ context): for scoring text."""
        raise NotImplementedError

    def prompt_ids(self, prompt: str) -> list[int]:
        """Token ids of a prompt; an empty prompt starts after an end-of-text (or a blank line)."""
        ids = self.tokenizer.encode(prompt) if prompt else []
        if not ids:
            ids = [self.tokenizer.eos_id] if self.tokenizer.eos_id is not None else self.tokenizer.encode("\n")
        return ids

    # What the decode engine needs of a model: a decoder that rows join, and how many rows it takes.
    max_rows: int | None = 1  # None: any number (GPT, RNN); Hugging Face models decode one row at a time

    def batch_decoder(self, use_cache: bool = True) -> BatchDecoder:
        return SingleDecoder(self.start_decoder, use_cache)

    def new_row(self, prompt: str | list[int], config: GenerationConfig, processors: Sequence[LogitsProcessor],
                seed: int | None) -> Row:
        """A prompt (text or ids) ready to join the decode engine, drawing from its own generator."""
        ids = self.prompt_ids(prompt) if isinstance(prompt, str) else list(prompt)
        return Row(ids, config, list(processors), row_generator(seed, self.device))

    def _decode_steps(self, prompts: Sequence[str], config: GenerationConfig,
                      processors: Sequence[LogitsProcessor]) -> Iterator[list[Completion]]:
        """Run every prompt through the decode engine (row i seeded ``seed + i``); yield the
        completions after every step."""
        rows = [self.new_row(p, config, processors, row_seed(config.seed, i)) for i, p in enumerate(prompts)]
        engine = DecodeEngine(self.batch_decoder(config.use_cache), self.tokenizer, self.max_rows or len(rows))
        waiting = list(rows)
        while waiting or engine.rows:
            while waiting and engine.has_room:
                engine.add(waiting.pop(0))
            engine.step()
            yield [row.completion for row in rows]

    def generate(self, prompts: str | Sequence[str], config: GenerationConfig | None = None,
                 logits_processors: Sequence[LogitsProcessor] = ()) -> list[GenerationResult]:
        """Complete every prompt (batched); beam search when ``config.num_beams > 1``."""
        config = config or GenerationConfig()
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if config.num_beams > 1:
            return [self._beam_search(p, config, logits_processors) for p in prompts]
        sequences: list[Completion] = []
        for step in self._decode_steps(prompts, config, logits_processors):
            sequences = step  # every step yields the sequences so far: the last one holds the results
        return [seq.result(self.tokenizer, config) for seq in sequences]

    def stream(self, prompt: str, config: GenerationConfig | None = None,
               logits_processors: Sequence[LogitsProcessor] = ()) -> Generator[str, None, GenerationResult]:
        """Yield the completion of one prompt piece by piece, as soon as each piece is certain:
        an incomplete UTF-8 character or the start of a stop string is held back. Returns (as the
        generator's value) the `GenerationResult`."""
        config = config or GenerationConfig()
        emitted = 0
        for (seq,) in self._decode_steps([prompt], config.model_copy(update={"num_beams": 1}), logits_processors):
            text = seq.settled_text(self.tokenizer, config)
            if len(text) > emitted:
                yield text[emitted:]
                emitted = len(text)
            if seq.finished:
                break
        return seq.result(self.tokenizer, config)

    def render_chat(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return render_chat(self.tokenizer, messages)

    @torch.no_grad()
    def _beam_search(self, prompt: str, config: GenerationConfig,
                     processors: Sequence[LogitsProcessor]) -> GenerationResult:
        """Keep the ``num_beams`` best partial sequences by total log-probability; a beam that ends
        (end-of-text or a stop string) is scored with ``log p / length**length_penalty``."""
        width = config.num_beams
        prompt_ids = self.prompt_ids(prompt)
        decoder = self.start_decoder([prompt_ids] * width, config.use_cache)
        scores = torch.full((width,), float("-inf"), device=self.device)
        scores[0] = 0.0  # all beams start identical: expand only the first
        beams: list[list[int]] = [[] for _ in range(width)]
        finished: list[tuple[float, list[int], FinishReason]] = []
        logits = decoder.logits
        for step in range(config.max_new_tokens):
            adjusted = adjust_logits(logits, decoder.histories, [config.repetition_penalty] * width,
                                     [processors] * width)
            logprobs = F.log_softmax(adjusted, dim=-1)
            candidates = (scores[:, None] + logprobs).view(-1)  # (width * V,)
            top_scores, top_index = candidates.topk(min(2 * width, candidates.numel()))
            kept: list[tuple[float, int, int]] = []  # (score, origin beam, token) of open beams
            for score, index in zip(top_scores.tolist(), top_index.tolist(), strict=True):
                origin, token = divmod(index, logprobs.size(-1))
                ids = beams[origin] + [token]
                if token == self.tokenizer.eos_id:
                    finished.append((score / max(1, len(ids) - 1) ** config.length_penalty, ids[:-1], "stop"))
                elif config.stop and trim_at_stop(self.tokenizer.decode(ids), config.stop)[1]:
                    finished.append((score / len(ids) ** config.length_penalty, ids, "stop"))
                elif len(kept) < width and score > float("-inf"):
                    kept.append((score, origin, token))
            beams = [beams[origin] + [token] for _, origin, token in kept]
            scores = torch.tensor([score for score, _, _ in kept], device=self.device)
            best_done = max((f[0] for f in finished), default=float("-inf"))
            # Log-probs only fall as beams grow; with no reward for length, a finished beam that
            # beats every open one can no longer be overtaken.
            if not kept or (config.length_penalty <= 0 and best_done >= kept[0][0]):
                beams = []
                break
            if step + 1 < config.max_new_tokens:
                decoder.reorder(torch.tensor([origin for _, origin, _ in kept]))
                logits = decoder.push(torch.tensor([token for _, _, token in kept]))
        # not strict: an early stop empties ``beams`` but leaves the last ``scores``, and then adds nothing
        for score, ids in zip(scores.tolist(), beams, strict=False):
            finished.append((score / max(1, len(ids)) ** config.length_penalty, ids, "length"))
        _, ids, reason = max(finished, key=lambda f: f[0])
        return Completion(len(prompt_ids), list(ids), [], reason).result(self.tokenizer, config)


def compile_step(model: GPT) -> StepModel:
    """The model's one-token decode step compiled by TorchInductor.

    A small model's step is a few dozen tiny kernels, so eager PyTorch spends most of it in
    per-operator dispatch; Inductor fuses them into one generated C++ function (``cpp_wrapper``
    also takes the Python out of calling it). Shapes are dynamic, so the growing cache length does
    not recompile. The first call compiles (seconds); prompts still run eagerly, since their length
    varies and they happen once per request.
    """
    return torch.compile(model, dynamic=None, options={"cpp_wrapper": model.lm_head.weight.device.type == "cpu"})


class GPTGenerator(CausalLMGenerator):
    """`TextGenerator` over a Luoxia GPT and its tokenizer; ``compile`` compiles the decode step."""

    max_rows = None

    def __init__(self, model: GPT, tokenizer: TextTokenizer, name: str = "luoxia-gpt", compile: bool = False):
        self.model = model.eval()
        self.step_model = compile_step(self.model) if compile else self.model
        super().__init__(lambda histories, use_cache: GPTDecoder(self.model, histories, use_cache, self.step_model),
                         tokenizer, name, model.config.block_size, model.lm_head.weight.device)

    def batch_decoder(self, use_cache: bool = True) -> BatchDecoder:
        return GPTBatchDecoder(self.model, self.step_model, use_cache)

    @torch.no_grad()
    def sequence_logits(self, ids: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(ids.to(self.device))[0]  # (B, T, V)
        return logits
