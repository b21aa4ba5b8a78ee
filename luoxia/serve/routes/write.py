"""``POST /v1/write``: the writing assistant (`luoxia.apps.write`) on a served text model, under the
server's guard: sampled candidates come from the model's batched, guarded generator, beam search
runs on the model itself and its output passes the same guard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field

from luoxia.apps.write import Writer, WriteRequest, generation_config, genre_of, write
from luoxia.generate.text import CausalLMGenerator
from luoxia.serve.deps import CallerDep, ModelsDep, OffloadDep, SettingsDep
from luoxia.serve.errors import APIError
from luoxia.serve.models import ServedText
from luoxia.serve.routes.moderation import check_length

router = APIRouter()


class WriteBody(WriteRequest):
    """A `WriteRequest` and the served text model to write with."""

    model: str | None = Field(None, description="a served text model (none: the only one)")


def served_writer(served: ServedText) -> Writer:
    """A `Writer` over a served model: its guarded generator samples; beam search steps through the
    model under the batcher (or the model itself) and is released through the same guard."""
    base: Any = served.batcher.generator if served.batcher is not None else \
        (served.guarded.inner if served.guarded is not None else served.generator)
    beam_base = base if isinstance(base, CausalLMGenerator) else None
    guard = served.guarded.guard if served.guarded is not None else None
    return Writer(served.generator, served.tokenizer, beam_base, guard)  # type: ignore[arg-type]


@router.post("/v1/write")
async def write_text(body: WriteBody, who: CallerDep, models: ModelsDep, settings: SettingsDep,
                     offload: OffloadDep) -> dict:
    """Candidates best first, each with its text, keyword and form checks, score parts, a diff
    against the draft (rewrite, polish) and the guard's record."""
    check_length([body.draft, body.title, *body.keywords], settings, "draft")
    asked = generation_config(body, genre_of(body.genre)).max_new_tokens
    if asked > settings.max_tokens_limit:
        raise APIError(400, f"max_new_tokens: {asked} is over this server's limit of {settings.max_tokens_limit}",
                       param="max_new_tokens")
    served = models.text_model(body.model)
    request = WriteRequest(**body.model_dump(exclude={"model"}))
    result = await offload(write, served_writer(served), request)
    return {"object": "write", "model": served.name, **result.to_json()}
