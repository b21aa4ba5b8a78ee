"""``POST /v1/embeddings``: sentence vectors, as floats or base64 (OpenAI's shape)."""

from __future__ import annotations

import base64

from fastapi import APIRouter

from luoxia.encoders import Encoder
from luoxia.serve import schemas
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep, SettingsDep
from luoxia.serve.responses import EmbeddingData, Embeddings, EmbeddingUsage
from luoxia.serve.routes.moderation import inputs

router = APIRouter()


@router.post("/v1/embeddings", response_model=Embeddings)
async def embeddings(body: schemas.EmbeddingRequest, who: CallerDep, models: ModelsDep, settings: SettingsDep,
                     offload: OffloadDep) -> Embeddings:
    texts = inputs(body.input, settings)
    encoder = await offload(models.encoder, body.model)  # loaded on first use
    return await offload(_embed, encoder, texts, body.encoding_format)  # encoding, counting: off the event loop


def _embed(encoder: Encoder, texts: list[str], encoding_format: str) -> Embeddings:
    vectors = encoder.encode(texts)
    tokens = sum(encoder.count_tokens(t) for t in texts)
    if encoding_format == "base64":  # little-endian float32, as OpenAI's clients decode it
        encoded: list = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        encoded = [v.tolist() for v in vectors]
    return Embeddings(model=encoder.name, data=[EmbeddingData(index=i, embedding=e) for i, e in enumerate(encoded)],
                      usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens))
