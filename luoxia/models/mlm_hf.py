"""Luoxia's `MaskedLM` → Hugging Face BERT: config, weight names, tokenizer and whole model.

A post-norm run computes exactly what ``transformers``' BERT computes (``gelu_pytorch_tanh`` for
the tanh-approximate GELU), so ``BertForMaskedLM.from_pretrained(out)`` gives Luoxia's logits, and
``AutoModelForSequenceClassification`` / ``AutoModelForTokenClassification`` start from the
pretrained encoder. A run with ``nsp`` is saved as ``BertForPreTraining`` (pooler and
``cls.seq_relationship`` too), which the masked-LM, next-sentence and classification classes all
load. Pre-norm runs are refused: BERT is post-LN and no ``transformers`` class computes them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from luoxia.checkpoint import atomic_directory
from luoxia.errors import ConfigError
from luoxia.models.mlm import MaskedLM, MLMConfig

if TYPE_CHECKING:  # transformers is imported where it is used: it is heavy
    from transformers import BertConfig, PreTrainedModel, PreTrainedTokenizerFast

_LAYER = r"^h\.(\d+)\."
_RENAMES = [
    (r"^wte\.", "bert.embeddings.word_embeddings."),
    (r"^wpe\.", "bert.embeddings.position_embeddings."),
    (r"^wtt\.", "bert.embeddings.token_type_embeddings."),
    (r"^ln_e\.", "bert.embeddings.LayerNorm."),
    (rf"{_LAYER}attn\.c_proj\.", r"bert.encoder.layer.\1.attention.output.dense."),
    (rf"{_LAYER}ln_1\.", r"bert.encoder.layer.\1.attention.output.LayerNorm."),
    (rf"{_LAYER}mlp\.c_fc\.", r"bert.encoder.layer.\1.intermediate.dense."),
    (rf"{_LAYER}mlp\.c_proj\.", r"bert.encoder.layer.\1.output.dense."),
    (rf"{_LAYER}ln_2\.", r"bert.encoder.layer.\1.output.LayerNorm."),
    (r"^head_dense\.", "cls.predictions.transform.dense."),
    (r"^head_ln\.", "cls.predictions.transform.LayerNorm."),
    (r"^head_bias$", "cls.predictions.bias"),
    (r"^pooler\.", "bert.pooler.dense."),
    (r"^nsp_head\.", "cls.seq_relationship."),
]
_FUSED_QKV = re.compile(rf"{_LAYER}attn\.c_attn\.(weight|bias)$")
PRE_NORM_REFUSAL = ("BertForMaskedLM is post-LN; this run is pre-norm (model.norm_position=pre), which no "
                    "transformers class computes: train with model.norm_position=post to export it")


def check_exportable(config: MLMConfig) -> None:
    """A one-line refusal for what BERT cannot compute."""
    if config.norm_position != "post":
        raise ConfigError(PRE_NORM_REFUSAL)


def bert_config(config: MLMConfig, pad_id: int | None) -> BertConfig:
    """The `transformers` BERT config computing what ``config`` computes."""
    from transformers import BertConfig

    check_exportable(config)
    if config.vocab_size is None:
        raise ValueError("MLMConfig.vocab_size must be set (it comes from the tokenizer)")
    return BertConfig(
        vocab_size=config.vocab_size, hidden_size=config.n_embd, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, intermediate_size=config.mlp_hidden or 4 * config.n_embd,
        hidden_act="gelu_pytorch_tanh", hidden_dropout_prob=config.dropout,
        attention_probs_dropout_prob=config.dropout, max_position_embeddings=config.block_size,
        type_vocab_size=config.type_vocab_size, layer_norm_eps=config.norm_eps, pad_token_id=pad_id,
        tie_word_embeddings=True,
        architectures=["BertForPreTraining" if config.nsp else "BertForMaskedLM"])


def bert_names(name: str) -> list[str]:
    """The `transformers` BERT name(s) of Luoxia's parameter ``name`` (three for a fused qkv)."""
    fused = _FUSED_QKV.match(name)
    if fused:
        layer, kind = fused.groups()
        return [f"bert.encoder.layer.{layer}.attention.self.{p}.{kind}" for p in ("query", "key", "value")]
    for pattern, replacement in _RENAMES:
        if re.match(pattern, name):
            return [re.sub(pattern, replacement, name)]
    raise AssertionError(f"export mapping out of date: no BERT name for {name}")


def to_bert_state(model: MaskedLM) -> dict[str, torch.Tensor]:
    """``model``'s weights under BERT's names; the decoder is the word embedding (tied)."""
    check_exportable(model.config)
    state: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        pieces = tensor.chunk(3, dim=0) if _FUSED_QKV.match(name) else (tensor,)
        state.update(zip(bert_names(name), (p.contiguous() for p in pieces), strict=True))
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"]
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"]
    return state


class FastTokenizer(Protocol):
    """What the export needs of a tokenizer (`luoxia.data.tokenizer.TextTokenizer` has it)."""

    backend: Any  # a `tokenizers.Tokenizer`

    def token_to_id(self, token: str) -> int | None: ...


def unknown_as_mask(tokenizer_json: str) -> str:
    """A character tokenizer trained without ``<unk>`` fails on an unseen character; exported, it
    reads one as ``[MASK]`` instead — the token a masked LM fills from context — so fine-tuning and
    tagging data may hold characters the pre-training corpus lacked."""
    data = json.loads(tokenizer_json)
    model = data["model"]
    if model.get("type") == "WordLevel" and model.get("unk_token") not in model.get("vocab", {}):
        model["unk_token"] = "[MASK]"
    return json.dumps(data, ensure_ascii=False)


def bert_tokenizer(tokenizer: FastTokenizer, context: int) -> PreTrainedTokenizerFast:
    """The masked LM's tokenizer as a `transformers` fast tokenizer that frames inputs as BERT does:
    ``[CLS] a [SEP]`` and ``[CLS] a [SEP] b [SEP]`` with segment ids 0 then 1."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    names = {"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    missing = [token for token in names.values() if tokenizer.token_to_id(token) is None]
    if missing:
        raise ConfigError(f"the tokenizer has no {' '.join(missing)}: it is not a masked-LM tokenizer")
    backend = Tokenizer.from_str(unknown_as_mask(tokenizer.backend.to_str()))  # a copy: the run's own stays as is
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    unk = {"unk_token": "<unk>"} if tokenizer.token_to_id("<unk>") is not None else {}
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=context, **names, **unk,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def mlm_to_hf(model: MaskedLM, tokenizer: FastTokenizer) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A `transformers` BERT holding exactly ``model``'s weights (``BertForPreTraining`` with NSP,
    else ``BertForMaskedLM``), and its tokenizer."""
    from transformers import BertForMaskedLM, BertForPreTraining

    config = bert_config(model.config, tokenizer.token_to_id("[PAD]"))
    hf_class = BertForPreTraining if model.config.nsp else BertForMaskedLM
    hf_model: Any = hf_class(config)  # transformers is untyped: eval() and friends
    missing, unexpected = hf_model.load_state_dict(to_bert_state(model), strict=False)
    if unexpected or missing:
        raise AssertionError(f"export mapping out of date: missing {missing}, unexpected {unexpected}")
    hf_model.tie_weights()
    return hf_model.eval(), bert_tokenizer(tokenizer, model.config.block_size)


def save_bert(model: MaskedLM, tokenizer: FastTokenizer, out_dir: str | Path) -> str:
    """Write ``model`` and its tokenizer as a standard Hugging Face directory (atomically); returns
    the class it became."""
    hf_model, hf_tok = mlm_to_hf(model, tokenizer)
    with atomic_directory(Path(out_dir)) as tmp:
        hf_model.save_pretrained(tmp)
        hf_tok.save_pretrained(tmp)
    return type(hf_model).__name__
