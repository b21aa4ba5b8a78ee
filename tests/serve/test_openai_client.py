"""The live server driven by the official `openai` package, as any OpenAI client would."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def test_models_lists_text_and_image_models(client):
    assert {m.id for m in client.models.list().data} == {"tiny-chat", "tiny-vae"}


def test_chat_completion(client):
    reply = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "To be?"}],
                                           max_tokens=20, temperature=0, seed=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 20 and reply.usage.prompt_tokens > 0
    assert choice.model_extra["safety"]["watermark"]["key_id"]


def test_streamed_chat_equals_the_same_request_unstreamed(client):
    request = dict(model="tiny-chat", messages=[{"role": "user", "content": "To be?"}], max_tokens=30,
                   temperature=0.8, seed=3)
    whole = client.chat.completions.create(**request).choices[0].message.content
    chunks = list(client.chat.completions.create(**request, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_completions_with_n_seeds_and_logprobs(client):
    reply = client.completions.create(model="tiny-chat", prompt="To be", max_tokens=12, n=2, seed=5, logprobs=1)
    assert [c.index for c in reply.choices] == [0, 1]
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.token_logprobs) == len(logprobs.tokens) and all(p <= 0 for p in logprobs.token_logprobs)
    again = client.completions.create(model="tiny-chat", prompt="To be", max_tokens=12, n=2, seed=5)
    assert [c.text for c in again.choices] == [c.text for c in reply.choices]


def test_images_come_back_watermarked_with_valid_provenance(client):
    from luoxia.safety.image_mark import detect_image_watermark
    from luoxia.safety.provenance import verify_provenance
    from luoxia.safety.watermark import resolve_key

    reply = client.images.generate(model="tiny-vae", prompt="seven", n=2)
    assert len(reply.data) == 2
    image = Image.open(io.BytesIO(base64.b64decode(reply.data[0].b64_json)))
    key = resolve_key().secret
    assert verify_provenance(image, key).status == "valid"
    assert detect_image_watermark(image, key).watermarked


def test_moderations(client):
    reply = client.moderations.create(input=["I will kill you", "how do I kill a Python process"])
    assert [r.flagged for r in reply.results] == [True, False]
    assert reply.results[0].categories.violence and reply.results[0].category_scores.violence > 0.5


def test_embeddings(client):
    reply = client.embeddings.create(model="minilm", input=["a cat sat on the mat", "a kitten sits on a rug",
                                                            "quarterly bond yields rose"])
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
