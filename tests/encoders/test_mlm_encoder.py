"""A masked-LM run as a sentence encoder (issue 15): unit rows, each text read alone whatever its
batch, and served by ``luoxia serve --embedding-model RUN`` at /v1/embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from luoxia.checkpoint import save_weights
from luoxia.config import dump_config
from luoxia.data.mlm import MLM_SPECIALS
from luoxia.data.tokenizer import train_char_tokenizer
from luoxia.encoders import Encoder, MLMEncoder, load_encoder
from luoxia.models.mlm import MaskedLM, MLMConfig
from luoxia.runs import CONFIG_FILE, WEIGHTS_FILE
from luoxia.serve.app import create_app
from luoxia.train.mlm import MLMRecipe
from tests.echo import echo_models, echo_settings
from tests.helpers import TEXT

LOOPBACK = {"base_url": "http://127.0.0.1", "client": ("127.0.0.1", 50000)}
# The same float32 encoder over differently padded batches: padding is masked out of attention and
# of the mean, so rows agree to a few ulps (the matmuls' reduction order may differ with the width).
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def mlm_run(tmp_path_factory) -> Path:
    """A run directory holding a tiny random post-norm masked LM and its char tokenizer."""
    run = tmp_path_factory.mktemp("mlm") / "mlm-run"
    run.mkdir()
    tokenizer = train_char_tokenizer([TEXT], special_tokens=MLM_SPECIALS)
    torch.manual_seed(0)
    config = MLMConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16, dropout=0.0)
    tokenizer.save(run)
    save_weights(MaskedLM(config), run / WEIGHTS_FILE)
    dump_config(MLMRecipe(out_dir=str(run), model=config), run / CONFIG_FILE)
    return run


def test_unit_rows_of_the_model_width(mlm_run: Path):
    encoder = load_encoder(mlm_run, device="cpu")
    assert isinstance(encoder, MLMEncoder) and isinstance(encoder, Encoder)
    vectors = encoder.encode(["To be", "or not to be", "To be, or not to be, that is the question:" * 3])
    assert vectors.shape == (3, 16) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)  # float32 normalisation
    assert encoder.encode([]).shape == (0, 16)
    assert encoder.count_tokens("To be") == 7 and encoder.count_tokens("To be" * 20) == 32
    assert encoder.name == "mlm-run"


def test_a_row_does_not_depend_on_its_batch_or_padding(mlm_run: Path):
    one_by_one = MLMEncoder(mlm_run, device="cpu", batch_size=1)
    together = MLMEncoder(mlm_run, device="cpu", batch_size=8)
    texts = ["To be", "Whether 'tis nobler in the mind to suffer", "No more"]
    alone = one_by_one.encode(texts)
    torch.testing.assert_close(torch.from_numpy(together.encode(texts)), torch.from_numpy(alone), **TOLERANCE)
    padded = together.encode(["To be", "The slings and arrows of outrageous fortune,"])[0]
    torch.testing.assert_close(torch.from_numpy(padded), torch.from_numpy(alone[0]), **TOLERANCE)


def test_the_server_serves_it_as_the_embedding_model(mlm_run: Path, tmp_path: Path):
    settings = echo_settings(tmp_path, open_access=True, embedding_model=str(mlm_run))
    with TestClient(create_app(settings, models=echo_models(settings)), **LOOPBACK) as client:
        reply = client.post("/v1/embeddings", json={"input": ["To be", "No more"]})
    assert reply.status_code == 200, reply.text
    rows = np.array([row["embedding"] for row in reply.json()["data"]])
    expected = load_encoder(mlm_run, device="cpu").encode(["To be", "No more"])
    np.testing.assert_allclose(rows, expected, atol=1e-6)  # the same encoder, floats through JSON
    assert reply.json()["usage"]["prompt_tokens"] == 7 + 9
