"""Luoxia's GPT ↔ Hugging Face `transformers` GPT-2, Llama, Qwen3 and Arcee: configs, weight names
and whole models, both ways (`luoxia export` / `luoxia import` and fine-tuning use it).

Each Luoxia architecture maps onto the one `transformers` family that computes exactly the same
function, so ``AutoModelForCausalLM.from_pretrained(out)`` — and vLLM, which serves these families —
gives the logits Luoxia gives:

=========================================  ==========  ======================================
Luoxia options                             family      notes
=========================================  ==========  ======================================
learned positions, LayerNorm, GELU/ReLU²    ``gpt2``    GPT-2's Conv1D stores weights transposed
rotary, RMSNorm, SwiGLU                     ``llama``
rotary, RMSNorm, SwiGLU, QK-norm, no bias   ``qwen3``   Qwen3 normalises q and k per head
rotary, RMSNorm, ReLU²/GELU (not gated)     ``arcee``   Arcee is Llama with an ungated MLP
=========================================  ==========  ======================================

Anything else (rotary with LayerNorm, learned positions with RMSNorm, QK-norm outside Qwen3's
recipe) is refused with the options that cannot be mapped. Weight names are translated by a short
list of renames per family; Llama-style families split Luoxia's fused ``c_attn`` into q, k and v.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Protocol

import torch

from luoxia.checkpoint import atomic_directory
from luoxia.errors import ConfigError
from luoxia.models.gpt import GPT, GPTConfig

_LAYER = r"transformer\.h\.(\d+)\."
_LLAMA_RENAMES = [
    (r"^transformer\.wte\.", "model.embed_tokens."),
    (r"^transformer\.ln_f\.", "model.norm."),
    (rf"^{_LAYER}ln_1\.", r"model.layers.\1.input_layernorm."),
    (rf"^{_LAYER}ln_2\.", r"model.layers.\1.post_attention_layernorm."),
    (rf"^{_LAYER}attn\.c_proj\.", r"model.layers.\1.self_attn.o_proj."),
    (rf"^{_LAYER}attn\.(q|k)_norm\.", r"model.layers.\1.self_attn.\2_norm."),
    (rf"^{_LAYER}mlp\.c_gate\.", r"model.layers.\1.mlp.gate_proj."),
    (rf"^{_LAYER}mlp\.c_fc\.", r"model.layers.\1.mlp.up_proj."),
    (rf"^{_LAYER}mlp\.c_proj\.", r"model.layers.\1.mlp.down_proj."),
]
_FUSED_QKV = re.compile(rf"^{_LAYER}attn\.c_attn\.(weight|bias)$")
# GPT-2 keeps Luoxia's names (both follow the original GPT-2 code) but its Conv1D stores (in, out).
_GPT2_TRANSPOSED = re.compile(r"\.(c_attn|c_proj|c_fc)\.weight$")
_GPT2_ACTIVATIONS = {"gelu": "gelu_new", "relu2": "relu2"}
_ARCEE_ACTIVATIONS = {"gelu": "gelu_pytorch_tanh", "relu2": "relu2"}


# Which family ---------------------------------------------------------------------------------
def hf_family(config: GPTConfig) -> str:
    """The `transformers` model type computing exactly what ``config`` computes."""
    if config.position == "learned" and config.norm == "layernorm" and config.mlp != "swiglu" and not config.qk_norm:
        return "gpt2"
    if config.position == "rope" and config.norm == "rmsnorm":
        if config.mlp == "swiglu" and not config.qk_norm:
            return "llama"
        if config.mlp == "swiglu" and not config.bias:
            return "qwen3"
        if config.mlp != "swiglu" and not config.qk_norm:
            return "arcee"
    raise ConfigError(
        f"no transformers architecture computes this model (position={config.position}, norm={config.norm}, "
        f"mlp={config.mlp}, qk_norm={config.qk_norm}, bias={config.bias}); exportable: learned+layernorm+"
        "gelu|relu2 (GPT-2), rope+rmsnorm+swiglu (Llama; with qk_norm and bias=false: Qwen3), "
        "rope+rmsnorm+relu2|gelu (Arcee)")


def hf_config(config: GPTConfig, tokens: dict[str, int | None]):
    """The `transformers` config of ``config``'s family, with the special-token ids in ``tokens``."""
    import transformers

    family = hf_family(config)
    if family == "gpt2":
        return transformers.GPT2Config(
            vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
            n_layer=config.n_layer, n_head=config.n_head, n_inner=config.hidden_size,
            activation_function=_GPT2_ACTIVATIONS[config.mlp], layer_norm_epsilon=config.norm_eps,
            resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
            tie_word_embeddings=config.tie_embeddings, **tokens)
    common = dict(
        vocab_size=config.vocab_size, hidden_size=config.n_embd, intermediate_size=config.hidden_size,
        num_hidden_layers=config.n_layer, num_attention_heads=config.n_head, num_key_value_heads=config.n_head,
        head_dim=config.head_size, max_position_embeddings=config.block_size, rms_norm_eps=config.norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta}, attention_bias=config.bias,
        attention_dropout=config.dropout, tie_word_embeddings=config.tie_embeddings, **tokens)
    if family == "llama":
        return transformers.LlamaConfig(hidden_act="silu", mlp_bias=config.bias, **common)
    if family == "qwen3":
        return transformers.Qwen3Config(hidden_act="silu", **common)
    return transformers.ArceeConfig(hidden_act=_ARCEE_ACTIVATIONS[config.mlp], mlp_bias=config.bias, **common)


# Weight names ---------------------------------------------------------------------------------
def hf_names(name: str, family: str) -> list[str]:
    """The `transformers` parameter name(s) of Luoxia's parameter ``name`` (three for a fused qkv)."""
    if family == "gpt2":
        return [name]
    fused = _FUSED_QKV.match(name)
    if fused:
        layer, kind = fused.groups()
        return [f"model.layers.{layer}.self_attn.{p}_proj.{kind}" for p in "qkv"]
    for pattern, replacement in _LLAMA_RENAMES:
        if re.match(pattern, name):
            return [re.sub(pattern, replacement, name)]
    return [name]  # lm_head.weight


def split_for_hf(name: str, tensor: torch.Tensor, family: str) -> list[torch.Tensor]:
    if family == "gpt2":
        return [tensor.t().contiguous() if _GPT2_TRANSPOSED.search(name) else tensor]
    if _FUSED_QKV.match(name):
        return [piece.contiguous() for piece in tensor.chunk(3, dim=0)]
    return [tensor]


def join_from_hf(name: str, pieces: list[torch.Tensor], family: str) -> torch.Tensor:
    if family == "gpt2" and _GPT2_TRANSPOSED.search(name):
        return pieces[0].t().contiguous()
    return torch.cat(pieces, dim=0) if len(pieces) > 1 else pieces[0]


def own_parameters(model: GPT) -> dict[str, torch.Tensor]:
    """The model's weights, with a tied head stored once (as the embedding)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        state.pop("lm_head.weight")
    return state


def to_hf_state(model: GPT) -> dict[str, torch.Tensor]:
    family = hf_family(model.config)
    state = {}
    for name, tensor in own_parameters(model).items():
        state.update(zip(hf_names(name, family), split_for_hf(name, tensor, family), strict=True))
    return state


# Whole models --------------------------------------------------------------------------------
class FastTokenizer(Protocol):
    """What the export needs of a tokenizer (`luoxia.data.tokenizer.TextTokenizer` has it)."""

    backend: Any  # a `tokenizers.Tokenizer`
    eos_id: int | None


def hf_tokenizer(tokenizer: FastTokenizer, context: int):
    """Luoxia's tokenizer as a `transformers` fast tokenizer (the same tokenizer.json inside)."""
    from transformers import PreTrainedTokenizerFast

    eos = tokenizer.backend.id_to_token(tokenizer.eos_id) if tokenizer.eos_id is not None else None
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer.backend, eos_token=eos, pad_token=eos,
                                   model_max_length=context)


def gpt_to_hf(model: GPT, tokenizer: FastTokenizer):
    """A `transformers` causal LM holding exactly ``model``'s weights, and its tokenizer."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    eos = tokenizer.eos_id
    config = hf_config(model.config, {"bos_token_id": eos, "eos_token_id": eos, "pad_token_id": eos})
    hf_model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = hf_model.load_state_dict(to_hf_state(model), strict=False)
    if unexpected or any(not key.endswith(".bias") for key in missing if key != "lm_head.weight"):
        raise AssertionError(f"export mapping out of date: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():  # GPT-2 always has biases: a bias-free Luoxia model exports zeros there
        for key in missing:
            if key.endswith(".bias"):
                hf_model.get_parameter(key).zero_()
    hf_model.tie_weights()
    hf_model.generation_config = GenerationConfig(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    return hf_model.eval(), hf_tokenizer(tokenizer, model.config.block_size)


def save_hf(model: GPT, tokenizer: FastTokenizer, out_dir: str | Path) -> str:
    """Write ``model`` and its tokenizer as a standard Hugging Face directory (atomically); returns
    the `transformers` family it became."""
    hf_model, hf_tok = gpt_to_hf(model, tokenizer)
    with atomic_directory(Path(out_dir)) as tmp:
        hf_model.save_pretrained(tmp)
        hf_tok.save_pretrained(tmp)
    return str(hf_model.config.model_type)

def gpt_config_from_hf(config) -> GPTConfig:
    """Luoxia's `GPTConfig` for a GPT-2, Llama, Qwen3 or Arcee config, or why it cannot be one."""
    family = config.model_type
    if family == "gpt2":
        activations = {v: k for k, v in _GPT2_ACTIVATIONS.items()} | {"gelu_pytorch_tanh": "gelu"}
        if config.activation_function not in activations or config.scale_attn_by_inverse_layer_idx:
            raise ConfigError(f"GPT-2 with activation {config.activation_function!r} or scaled attention "
                              f"cannot be imported (activations: {', '.join(activations)})")
        return GPTConfig(vocab_size=config.vocab_size, block_size=config.n_positions, n_layer=config.n_layer,
                         n_head=config.n_head, n_embd=config.n_embd, mlp=activations[config.activation_function],
                         mlp_hidden=config.n_inner, norm_eps=config.layer_norm_epsilon,
                         tie_embeddings=config.tie_word_embeddings)
    if family not in ("llama", "qwen3", "arcee"):
        raise ConfigError(f"cannot import model type {family!r}; importable: gpt2, llama, qwen3, arcee")
    rope = dict(getattr(config, "rope_parameters", None) or {})
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    mlp_bias = getattr(config, "mlp_bias", False)
    problems = [text for bad, text in [
        (config.num_key_value_heads != config.num_attention_heads, "grouped-query attention"),
        (rope.get("rope_type", "default") != "default", f"rope scaling {rope.get('rope_type')!r}"),
        (head_dim * config.num_attention_heads != config.hidden_size, "head_dim × heads ≠ hidden size"),
        (config.attention_bias != mlp_bias and family != "qwen3", "bias on attention but not MLP (or back)"),
        (family == "qwen3" and config.attention_bias, "Qwen3 attention bias"),
        (getattr(config, "use_sliding_window", False), "sliding-window attention"),
    ] if bad]
    if problems:
        raise ConfigError(f"this {family} checkpoint uses what Luoxia's GPT does not have: {', '.join(problems)}")
    mlp = "swiglu" if family != "arcee" else {v: k for k, v in _ARCEE_ACTIVATIONS.items()}.get(config.hidden_act)
    if mlp is None or (family != "arcee" and config.hidden_act != "silu"):
        raise ConfigError(f"{family} activation {config.hidden_act!r} cannot be imported")
    return GPTConfig(vocab_size=config.vocab_size, block_size=config.max_position_embeddings,
                     n_layer=config.num_hidden_layers, n_head=config.num_attention_heads, n_embd=config.hidden_size,
                     bias=config.attention_bias, norm="rmsnorm", norm_eps=config.rms_norm_eps, position="rope",
                     rope_theta=rope.get("rope_theta", 10000.0), qk_norm=family == "qwen3", mlp=mlp,
                     mlp_hidden=config.intermediate_size, tie_embeddings=config.tie_word_embeddings)


def gpt_from_hf(hf_model) -> GPT:
    """Luoxia's GPT holding exactly ``hf_model``'s weights."""
    config = gpt_config_from_hf(hf_model.config)
    family = hf_family(config)
    theirs = hf_model.state_dict()
    model = GPT(config)
    ours = {name: join_from_hf(name, [theirs[key] for key in hf_names(name, family)], family)
            for name in own_parameters(model)}
    if config.tie_embeddings:
        ours["lm_head.weight"] = ours["transformer.wte.weight"]
    model.load_state_dict(ours)
    return model.eval()


