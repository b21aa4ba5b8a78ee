"""The MaskedLM → Hugging Face BERT bridge (issue 15): the exported model gives Luoxia's masked-LM
and next-sentence logits on padded pairs; pre-norm runs are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertForMaskedLM, BertForNextSentencePrediction

from luoxia.checkpoint import save_weights
from luoxia.config import dump_config
from luoxia.data.mlm import MLM_SPECIALS
from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.errors import ConfigError
from luoxia.export import export_run
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.models.mlm_hf import save_bert
from luoxia.runs import CONFIG_FILE, WEIGHTS_FILE
from luoxia.train.mlm import MLMRecipe
from tests.helpers import TEXT

# Different kernels (HF's embedding sum order, its SDPA call with an additive mask vs ours with a
# boolean one) over the same float32 weights: a few ulps on logits of order 1–10.
TOLERANCE = dict(atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def tokenizer():
    return train_char_tokenizer([TEXT], special_tokens=MLM_SPECIALS)


def distinct_mlm(vocab_size: int, **options) -> MaskedLM:
    """A tiny MaskedLM with weights far from initialisation, so a wrong mapping cannot hide."""
    torch.manual_seed(0)
    model = MaskedLM(MLMConfig(vocab_size=vocab_size, block_size=24, n_layer=2, n_head=2, n_embd=16,
                               dropout=0.0, **options))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return model.eval()


def padded_pairs(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random ids (3, 20) with segments 0/1 and right padding on two rows."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, vocab_size, (3, 20), generator=generator)
    segments = (torch.arange(20) >= 9).long().expand(3, 20).clone()
    real = torch.ones(3, 20, dtype=torch.bool)
    real[1, 14:] = False
    real[2, 6:] = False
    return ids.masked_fill(~real, 0), segments * real, real


def test_exported_bert_gives_the_same_logits(tokenizer, tmp_path: Path):
    model = distinct_mlm(tokenizer.vocab_size, nsp=True)
    assert save_bert(model, tokenizer, tmp_path / "hf") == "BertForPreTraining"
    ids, segments, real = padded_pairs(tokenizer.vocab_size)
    with torch.no_grad():
        hidden = model.encode(ids, segments, real)
        ours, our_nsp = model.mlm_logits(hidden), model.nsp_logits(hidden)
        mlm = BertForMaskedLM.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
        theirs = mlm(input_ids=ids, token_type_ids=segments, attention_mask=real.long()).logits
        nsp = BertForNextSentencePrediction.from_pretrained(tmp_path / "hf", local_files_only=True).eval()
        their_nsp = nsp(input_ids=ids, token_type_ids=segments, attention_mask=real.long()).logits
    torch.testing.assert_close(theirs[real], ours[real], **TOLERANCE)  # padded positions are nobody's output
    torch.testing.assert_close(their_nsp, our_nsp, **TOLERANCE)


def test_exported_tokenizer_frames_like_bert(tokenizer, tmp_path: Path):
    save_bert(distinct_mlm(tokenizer.vocab_size), tokenizer, tmp_path / "hf")
    hf_tok = AutoTokenizer.from_pretrained(tmp_path / "hf", local_files_only=True)
    encoded = hf_tok("To be", "or not")
    ids = tokenizer.encode
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    assert encoded["input_ids"] == [cls, *ids("To be"), sep, *ids("or not"), sep]
    assert encoded["token_type_ids"] == [0] * 7 + [1] * 7
    assert (hf_tok.mask_token, hf_tok.pad_token_id) == ("[MASK]", tokenizer.token_to_id("[PAD]"))
    assert BertForMaskedLM.from_pretrained(tmp_path / "hf", local_files_only=True).config.hidden_act == \
        "gelu_pytorch_tanh"
    # what token classification relies on: character offsets, and words mapped to their characters
    offsets = hf_tok("To be", return_offsets_mapping=True)["offset_mapping"]
    assert offsets == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 0)]
    assert hf_tok(["To", "be"], is_split_into_words=True).word_ids() == [None, 0, 0, 1, 1, None]
    mask = tokenizer.token_to_id("[MASK]")
    assert hf_tok("T€", add_special_tokens=False)["input_ids"] == [tokenizer.token_to_id("T"), mask]  # unseen


def test_pre_norm_is_refused_in_one_line(tokenizer, tmp_path: Path):
    model = distinct_mlm(tokenizer.vocab_size, norm_position="pre")
    with pytest.raises(ConfigError, match="BertForMaskedLM is post-LN; this run is pre-norm"):
        save_bert(model, tokenizer, tmp_path / "hf")
    run = tmp_path / "run"
    run.mkdir()
    tokenizer.save(run)
    save_weights(model, run / WEIGHTS_FILE)
    dump_config(MLMRecipe(out_dir=str(run), model=model.config), run / CONFIG_FILE)
    with pytest.raises(ConfigError, match="this run is pre-norm") as refusal:
        export_run(run, tmp_path / "hf")  # what `luoxia export RUN --out DIR` runs
    assert "\n" not in str(refusal.value)
    assert not (tmp_path / "hf").exists()
