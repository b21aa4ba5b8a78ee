"""``POST /v1/completions``: text completions of one prompt or several, streamed or not."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from luoxia.generate.interface import GenerationResult
from luoxia.serve import schemas
from luoxia.serve.deps import CallerDep, MetricsDep, ModelsDep, OffloadDep, SettingsDep, StoreDep
from luoxia.serve.errors import APIError
from luoxia.serve.generation import (
    check_context,
    collect_recorded,
    generation_config,
    new_id,
    public_safety,
    start_recording,
    stream_events,
    stream_response,
    token_entries,
    usage,
)
from luoxia.serve.models import ServedText
from luoxia.serve.responses import Completion, CompletionChoice, CompletionLogprobs

router = APIRouter()


@router.post("/v1/completions", response_model=Completion)
async def completions(body: schemas.CompletionRequest, request: Request, who: CallerDep, settings: SettingsDep,
                      models: ModelsDep, store: StoreDep, metrics: MetricsDep, offload: OffloadDep
                      ) -> Completion | StreamingResponse:
    served = models.text_model(body.model)  # an unknown name is a 404 (`ModelNotFound`)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts or len(prompts) * body.n > settings.max_n:
        raise APIError(400, f"between 1 and {settings.max_n} completions per request (prompts × n)", param="n")
    # choice k = prompt index × n + choice of that prompt (prompt-major, as OpenAI's index) draws with seed + k
    jobs = [(p, generation_config(body.max_tokens, body, settings, seed_offset=j * body.n + i))
            for j, p in enumerate(prompts) for i in range(body.n)]
    prompt_tokens = await offload(check_context, served, prompts, body.max_tokens)  # tokenizing is CPU work
    recording = await start_recording(store, metrics, offload, who, served.name, "completions", body.prompt,
                                      body.model_dump(exclude={"prompt"}), request.headers.get("x-conversation-id"))
    created, response_id = int(time.time()), new_id("cmpl")
    if body.stream:
        def chunk(index: int, text: str, finish_reason: str | None) -> dict:
            return {"id": response_id, "object": "text_completion", "created": created, "model": served.name,
                    "choices": [{"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}]}

        return stream_response(stream_events(served, jobs, offload, settings.request_timeout_s, recording, chunk))
    results = await collect_recorded(served, jobs, offload, settings.request_timeout_s, recording,
                                     request.receive)
    logprobs = [await offload(_logprobs, served, r) if body.logprobs is not None else None for r in results]
    choices = [CompletionChoice(index=i, text=r.text, finish_reason=r.finish_reason, safety=public_safety(r.safety),
                                logprobs=logprobs[i]) for i, r in enumerate(results)]
    return Completion(id=response_id, created=created, model=served.name, choices=choices,
                      usage=usage(results, prompt_tokens))


def _logprobs(served: ServedText, result: GenerationResult) -> CompletionLogprobs:
    """The released tokens (see `token_entries`) with their offsets in the released text."""
    entries = token_entries(served, result)
    offsets, position = [], 0
    for token, _ in entries:
        offsets.append(position)
        position += len(token)
    return CompletionLogprobs(tokens=[t for t, _ in entries], token_logprobs=[p for _, p in entries],
                              text_offset=offsets)
