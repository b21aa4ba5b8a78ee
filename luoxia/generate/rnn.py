"""Generation with a Luoxia LSTM/GRU language model: its recurrent state is its KV cache.

An `RNNLM`'s state is a fixed-size summary of everything a row has read, so one more token costs the
same at any length, and rows join (`cat_states`) and leave (`select_state`) a running batch at any
step with no padding and no refill. That makes continuous batching natural: `RNNGenerator` takes any
number of rows (``max_rows = None``, as Luoxia's GPT), and the server's batcher decodes RNN requests
side by side. Sampling, streaming and beam search are `CausalLMGenerator`'s, through the same decode
engine and sampler as the GPT's. A run's `context_length` (what the server admits, the width of
`luoxia eval`'s windows) is its training window, or `STATEFUL_CONTEXT` when stateful truncated BPTT
trained it to carry its state further.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from luoxia.data.tokenizer import TextTokenizer
from luoxia.generate.decode import BatchDecoder, append_tokens, kept_rows
from luoxia.generate.text import CausalLMGenerator
from luoxia.models.rnn import RNNLM, RNNConfig, RNNState, cat_states, select_state
from luoxia.runs import load_run_module
from luoxia.runtime import resolve_device


class RNNBatchDecoder:
    """LSTM/GRU rows over one joined state (a `BatchDecoder`): rows join and leave between steps.

    A row reads its whole prompt alone from the zero state — no padding ever enters the recurrence —
    and its last state joins the batch's as a new column. A step feeds one token per row. Without the
    cache (``use_cache=False``) every step re-reads each row's whole history alone from the zero
    state: slow, but the reference the carried state must equal.
    """

    def __init__(self, model: RNNLM, use_cache: bool = True):
        self.model = model
        self.use_cache = use_cache
        self.device = model.lm_head.weight.device
        self.state: RNNState = model.new_state(0)  # (n_layer, B, H) (LSTM: h and c): column b is row b
        self.histories: list[list[int]] = []
        self.logits = torch.empty(0, model.lm_head.weight.size(0), device=self.device)  # (B, V)

    @torch.no_grad()
    def _read(self, ids: Sequence[int]) -> tuple[torch.Tensor, RNNState]:
        """Logits (1, V) after reading ``ids`` alone from the zero state, and the state there."""
        logits, _, state = self.model(torch.tensor([list(ids)], device=self.device), last_only=True)
        return logits[:, -1].float(), state

    def add(self, ids: list[int]) -> None:
        """Read a prompt (all of it) and join the batch as its last row."""
        logits, state = self._read(ids)
        if self.use_cache:
            self.state = cat_states([self.state, state])
        self.histories.append(list(ids))
        self.logits = torch.cat([self.logits, logits])

    def remove(self, rows: Sequence[int]) -> None:
        self.reorder(torch.tensor(kept_rows(len(self.histories), rows), dtype=torch.long))

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the rows ``index`` (B',) in that order: beams reordered (a row may repeat), rows dropped."""
        index = index.to(self.device)
        self.histories = [list(self.histories[i]) for i in index.tolist()]
        self.logits = self.logits[index]
        if self.use_cache:
            self.state = select_state(self.state, index)

    @torch.no_grad()
    def push(self, next_ids: torch.Tensor) -> None:
        """Append one token per row (B,) and compute every row's next logits."""
        append_tokens(self.histories, next_ids)
        if not self.use_cache:
            self.logits = torch.cat([self._read(h)[0] for h in self.histories])
            return
        logits, _, self.state = self.model(next_ids[:, None].to(self.device), state=self.state, last_only=True)
        self.logits = logits[:, -1].float()  # (B, V)


class RNNDecoder:
    """A `StepDecoder` over an RNN (what beam search steps): the histories, each read alone from the
    zero state and their states joined, in an `RNNBatchDecoder`. A history given several times (beam
    search's identical first beams) is read once and its state copied."""

    def __init__(self, model: RNNLM, histories: Sequence[Sequence[int]], use_cache: bool = True):
        self.rows = RNNBatchDecoder(model, use_cache)
        distinct = list(dict.fromkeys(tuple(h) for h in histories))
        for history in distinct:
            self.rows.add(list(history))
        self.rows.reorder(torch.tensor([distinct.index(tuple(h)) for h in histories], dtype=torch.long))
        self.histories, self.logits = self.rows.histories, self.rows.logits

    def push(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Append one token per sequence; return the logits (B, V) for the token after it."""
        self.rows.push(next_ids)
        self.histories, self.logits = self.rows.histories, self.rows.logits
        return self.logits

    def reorder(self, index: torch.Tensor) -> None:
        self.rows.reorder(index)
        self.histories, self.logits = self.rows.histories, self.rows.logits


class RNNGenerator(CausalLMGenerator):
    """`TextGenerator` over a Luoxia LSTM/GRU language model and its tokenizer.

    ``max_rows = None``: a row's state is the same size whatever it has read, so any number of rows
    decode together and join or leave between steps (continuous batching in the server).
    """

    max_rows = None

    def __init__(self, model: RNNLM, tokenizer: TextTokenizer, name: str = "luoxia-rnn",
                 context_length: int | None = None):
        self.model = model.eval()
        # Decoding has no context limit (library generation runs past this one); ``context_length`` is
        # what the server checks prompt + max_tokens against and the width of `luoxia eval`'s windows.
        # By default the training window (block_size): all that a model trained from the zero state
        # has read at once. `load_rnn_run` gives a statefully trained run more (`rnn_context_length`).
        super().__init__(lambda histories, use_cache: RNNDecoder(self.model, histories, use_cache), tokenizer,
                         name, context_length or model.config.block_size, model.lm_head.weight.device)

    def batch_decoder(self, use_cache: bool = True) -> BatchDecoder:
        return RNNBatchDecoder(self.model, use_cache)

    @torch.no_grad()
    def sequence_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) at every position of ``ids`` (B, T), each row from the zero state."""
        logits: torch.Tensor = self.model(ids.to(self.device))[0]
        return logits


# What a statefully trained run serves and is measured with: not a limit of the model (it has
# carried its state through streams far longer), but a bound on one request and on `luoxia eval`'s
# (16, width, V) logits; four times the longest GPT context of configs/lm/.
STATEFUL_CONTEXT = 1024


def rnn_context_length(config: RNNConfig, recipe: dict[str, Any]) -> int:
    """A run's context: ``STATEFUL_CONTEXT`` when it was trained with stateful truncated BPTT
    (``train.stateful``, the default), else its training window, ``block_size``."""
    stateful = bool(recipe.get("train", {}).get("stateful", True))
    return max(STATEFUL_CONTEXT, config.block_size) if stateful else config.block_size


def load_rnn(run_dir: str | Path, device: str = "auto") -> tuple[RNNLM, TextTokenizer]:
    """The trained RNN of a run directory (in eval mode) and its tokenizer."""
    model = load_run_module(run_dir, RNNLM, RNNConfig)
    model.to(resolve_device(device)).eval()
    return model, TextTokenizer.load(run_dir)


def load_rnn_run(run_dir: Path, recipe: dict[str, Any], device: str = "auto", compile: bool = False) -> RNNGenerator:
    """An LSTM/GRU run as a `TextGenerator`. ``compile`` is ignored: each recurrent layer already runs
    as one fused kernel (cuDNN on a GPU), so there are no small operators for Inductor to fuse."""
    model, tokenizer = load_rnn(run_dir, device)
    return RNNGenerator(model, tokenizer, Path(run_dir).name, rnn_context_length(model.config, recipe))
