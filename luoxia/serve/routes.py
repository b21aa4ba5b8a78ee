"""The endpoints: OpenAI's (models, completions, chat completions, images, moderations,
embeddings) and Luoxia's own (watermark detection, history, health, metrics)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from luoxia.generate.interface import GenerationConfig, GenerationResult
from luoxia.serve import schemas
from luoxia.serve.metrics import Metrics
from luoxia.serve.settings import ServeSettings
from luoxia.serve.app import APIError, Authenticated, Caller, collect, error_for, run_streams

router = APIRouter()
MAX_INPUTS = 256  # texts per moderation or embedding request


def _models(request: Request):
    return request.app.state.models


def _text_model(request: Request, name: str | None):
    return _models(request).text_model(name)  # an unknown name is a 404 through the app's LuoxiaError handler


@router.get("/", include_in_schema=False)
async def studio() -> RedirectResponse:
    return RedirectResponse("/studio/")


@router.get("/health")
async def health(request: Request) -> dict:
    models = _models(request)
    return {"status": "ok", "models": list(models.text), "image_models": list(models.images),
            "queue_depth": models.queue_depth(), "active_sequences": models.active_sequences(),
            "max_tokens_limit": request.app.state.settings.max_tokens_limit}


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request):
    return metrics_response(request.app.state.metrics)


@router.get("/v1/models")
async def list_models(request: Request, who: Caller = Authenticated) -> dict:
    models = _models(request)
    names = [*models.text, *models.images]
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "luoxia"} for n in names]}


# Helpers of the endpoints below.

def png_b64(image, **provenance) -> str:
    from luoxia.safety.provenance import png_with_provenance

    return base64.b64encode(png_with_provenance(image, **provenance)).decode("ascii")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def generation_config(max_tokens: int, body, settings: ServeSettings, extra_stops: list[str] = (),
                      seed_offset: int = 0) -> GenerationConfig:
    if max_tokens > settings.max_tokens_limit:
        raise APIError(400, f"max_tokens is {max_tokens}; this server allows at most {settings.max_tokens_limit}",
                       param="max_tokens")
    stops = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if any(not s for s in stops) or len(stops) > 4:
        raise APIError(400, "stop: up to 4 non-empty strings", param="stop")
    seed = body.seed + seed_offset if body.seed is not None else None
    return GenerationConfig(max_new_tokens=max_tokens, temperature=body.temperature,
                            top_p=body.top_p if body.top_p < 1 else None, stop=[*extra_stops, *stops], seed=seed)


def sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


def stream_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def metrics_response(metrics: Metrics) -> Response:
    body, content_type = metrics.render()
    return PlainTextResponse(body, media_type=content_type)


# Text generation.

def _check_context(served, prompts: list[str], max_tokens: int) -> None:
    for prompt in prompts:
        used = served.generator.count_tokens(prompt)
        if used + max_tokens > served.generator.context_length:
            raise APIError(400, f"this model's maximum context length is {served.generator.context_length} tokens; "
                                f"the prompt has {used} and max_tokens asks for {max_tokens}", param="max_tokens",
                           code="context_length_exceeded")


async def _start(request: Request, who: Caller, served, endpoint: str, prompt: object, parameters: dict) -> str:
    conversation = request.headers.get("x-conversation-id")
    return await run_in_threadpool(request.app.state.store.start_generation, who.key_id, endpoint, served.name,
                                   prompt, parameters, conversation)


async def _finish(request: Request, generation_id: str, status: str, results: list[GenerationResult | None],
                  started: float, model: str) -> None:
    done = [r for r in results if r is not None]
    tokens = sum(r.completion_tokens for r in done)
    request.app.state.metrics.tokens.labels(model).inc(tokens)
    await run_in_threadpool(
        request.app.state.store.finish_generation, generation_id, status,
        _json([r.text for r in done]), done[0].finish_reason if done else None,
        {"choices": [r.safety for r in done]}, sum(r.prompt_tokens for r in done[:1]), tokens,
        (time.perf_counter() - started) * 1000)


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _usage(results: list[GenerationResult], prompt_tokens: int) -> dict:
    completion = sum(r.completion_tokens for r in results)
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion, "total_tokens": prompt_tokens + completion}


def _completion_logprobs(served, result: GenerationResult) -> dict:
    tokenizer = served.tokenizer
    tokens = [tokenizer.decode([i]) for i in result.token_ids]
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token)
    return {"tokens": tokens, "token_logprobs": result.token_logprobs, "top_logprobs": None, "text_offset": offsets}


def _chat_logprobs(served, result: GenerationResult) -> dict:
    content = []
    for token_id, logprob in zip(result.token_ids, result.token_logprobs):
        token = served.tokenizer.decode([token_id])
        content.append({"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": []})
    return {"content": content}


@router.post("/v1/completions")
async def completions(body: schemas.CompletionRequest, request: Request, who: Caller = Authenticated):
    settings = request.app.state.settings
    served = _text_model(request, body.model)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts or len(prompts) * body.n > settings.max_n:
        raise APIError(400, f"between 1 and {settings.max_n} completions per request (prompts × n)", param="n")
    # choice k = prompt index × n + choice of that prompt (prompt-major, as OpenAI's index) draws with seed + k
    jobs = [(p, generation_config(body.max_tokens, body, settings, seed_offset=j * body.n + i))
            for j, p in enumerate(prompts) for i in range(body.n)]
    _check_context(served, prompts, body.max_tokens)
    start = lambda i: served.generator.stream(jobs[i][0], jobs[i][1])  # noqa: E731
    generation_id = await _start(request, who, served, "completions", body.prompt, body.model_dump(exclude={"prompt"}))
    created, started, response_id = int(time.time()), time.perf_counter(), new_id("cmpl")
    if body.stream:
        return stream_response(_stream_completion(request, served, start, len(jobs), response_id, created,
                                                  generation_id, started))
    results = await _collect_recorded(request, generation_id, start, len(jobs), started, served.name)
    choices = [{"index": i, "text": r.text, "finish_reason": r.finish_reason,
                "logprobs": _completion_logprobs(served, r) if body.logprobs is not None else None,
                "safety": r.safety} for i, r in enumerate(results)]
    prompt_tokens = sum(served.generator.count_tokens(p) for p in prompts)
    return {"id": response_id, "object": "text_completion", "created": created, "model": served.name,
            "choices": choices, "usage": _usage(results, prompt_tokens)}


async def _collect_recorded(request: Request, generation_id: str, start, count: int, started: float,
                            model: str) -> list[GenerationResult]:
    try:
        results = await collect(start, count, request.app.state.executor)
    except BaseException:
        await _finish(request, generation_id, "error", [], started, model)
        raise
    await _finish(request, generation_id, "complete", results, started, model)
    return results


async def _stream_events(request: Request, served, start, count: int, generation_id: str, started: float,
                         chunk) -> AsyncIterator[str]:
    """Server-sent events: ``chunk(index, text, finish_reason)`` per piece, then ``[DONE]``."""
    results: list[GenerationResult | None] = [None] * count
    status, first = "cancelled", True
    try:
        async for batch in run_streams(start, count, request.app.state.executor):
            events = []
            for index, kind, payload in _merge_text(batch):
                if kind == "error":
                    error = error_for(payload)
                    yield "".join(events) + sse({"error": {"message": error.message, "type": error.type}})
                    status = "error"
                    return
                if kind == "text":
                    if first:
                        request.app.state.metrics.first_token.observe(time.perf_counter() - started)
                        first = False
                    events.append(sse(chunk(index, payload, None)))
                else:
                    results[index] = payload
                    events.append(sse(chunk(index, "", payload.finish_reason)))
            yield "".join(events)
        yield sse("[DONE]")
        status = "complete"
    finally:
        await asyncio.shield(_finish(request, generation_id, status, results, started, served.name))


def _merge_text(batch: list[tuple[int, str, object]]) -> list[tuple[int, str, object]]:
    """Consecutive text events of the same choice as one."""
    merged: list[tuple[int, str, object]] = []
    for index, kind, payload in batch:
        if merged and kind == "text" and merged[-1][:2] == (index, "text"):
            merged[-1] = (index, "text", merged[-1][2] + payload)
        else:
            merged.append((index, kind, payload))
    return merged


def _stream_completion(request, served, start, count, response_id, created, generation_id, started):
    def chunk(index: int, text: str, finish_reason: str | None) -> dict:
        return {"id": response_id, "object": "text_completion", "created": created, "model": served.name,
                "choices": [{"index": index, "text": text, "finish_reason": finish_reason, "logprobs": None}]}

    return _stream_events(request, served, start, count, generation_id, started, chunk)


@router.post("/v1/chat/completions")
async def chat_completions(body: schemas.ChatCompletionRequest, request: Request, who: Caller = Authenticated):
    settings = request.app.state.settings
    served = _text_model(request, body.model)
    if body.n > settings.max_n:
        raise APIError(400, f"n is {body.n}; this server allows at most {settings.max_n}", param="n")
    messages = [m.model_dump() for m in body.messages]
    prompt, stops = served.generator.render_chat(messages)
    max_tokens = body.max_completion_tokens or body.max_tokens or min(256, settings.max_tokens_limit)
    configs = [generation_config(max_tokens, body, settings, stops, seed_offset=i) for i in range(body.n)]
    _check_context(served, [prompt], max_tokens)
    start = lambda i: served.generator.stream(prompt, configs[i])  # noqa: E731
    generation_id = await _start(request, who, served, "chat.completions", messages,
                                 body.model_dump(exclude={"messages"}))
    created, started, response_id = int(time.time()), time.perf_counter(), new_id("chatcmpl")
    if body.stream:
        return stream_response(_stream_chat(request, served, start, body.n, response_id, created, generation_id,
                                            started))
    results = await _collect_recorded(request, generation_id, start, body.n, started, served.name)
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason,
                "logprobs": _chat_logprobs(served, r) if body.logprobs else None, "safety": r.safety}
               for i, r in enumerate(results)]
    return {"id": response_id, "object": "chat.completion", "created": created, "model": served.name,
            "choices": choices, "usage": _usage(results, served.generator.count_tokens(prompt))}


def _stream_chat(request, served, start, count, response_id, created, generation_id, started):
    opened: set[int] = set()

    def chunk(index: int, text: str, finish_reason: str | None) -> dict:
        delta = {"content": text} if text else {}
        if index not in opened:
            opened.add(index)
            delta = {"role": "assistant", **delta}
        return {"id": response_id, "object": "chat.completion.chunk", "created": created, "model": served.name,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

    return _stream_events(request, served, start, count, generation_id, started, chunk)


# Images, moderation, embeddings, watermark detection, history.

@router.post("/v1/images/generations")
async def images(body: schemas.ImageRequest, request: Request, who: Caller = Authenticated):
    from luoxia.safety.guard import GuardedImageGenerator, PromptBlocked

    settings = request.app.state.settings
    generator = _models(request).image_model(body.model)
    if body.n > settings.max_images:
        raise APIError(400, f"n is {body.n}; this server draws at most {settings.max_images} images", param="n")
    try:
        pictures = await run_in_threadpool(generator.generate, body.prompt, body.n, body.seed)
    except PromptBlocked as blocked:
        raise APIError(400, str(blocked), code="content_policy_violation") from None
    guarded = isinstance(generator, GuardedImageGenerator)
    safety = generator.last_safety if guarded else {}
    key = generator.guard.key.secret if guarded else _models(request).guard.key.secret
    data = [{"b64_json": await run_in_threadpool(png_b64, image, model=generator.name, run=generator.name,
                                                 seed=body.seed, parameters={"prompt": body.prompt, "index": i},
                                                 key=key)} for i, image in enumerate(pictures)]
    return {"created": int(time.time()), "data": data, "safety": safety}


def _inputs(value: str | list[str]) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts or len(texts) > MAX_INPUTS:
        raise APIError(400, f"input: between 1 and {MAX_INPUTS} texts", param="input")
    return texts


@router.post("/v1/moderations")
async def moderations(body: schemas.ModerationRequest, request: Request, who: Caller = Authenticated):
    texts = _inputs(body.input)
    moderator = _models(request).guard.moderator
    results = await run_in_threadpool(moderator.moderate, texts)
    return {"id": new_id("modr"), "model": "luoxia-moderation",
            "results": [{"flagged": r.flagged, "categories": r.categories, "category_scores": r.scores}
                        for r in results]}


@router.post("/v1/embeddings")
async def embeddings(body: schemas.EmbeddingRequest, request: Request, who: Caller = Authenticated):
    texts = _inputs(body.input)
    encoder = await run_in_threadpool(lambda: _models(request).encoder)
    vectors = await run_in_threadpool(encoder.encode, texts)
    tokens = sum(encoder.count_tokens(t) for t in texts)
    if body.encoding_format == "base64":  # little-endian float32, as OpenAI's clients decode it
        encoded = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        encoded = [v.tolist() for v in vectors]
    return {"object": "list", "model": encoder.name,
            "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/v1/watermark/detect")
async def watermark_detect(body: schemas.WatermarkDetectRequest, request: Request, who: Caller = Authenticated):
    from luoxia.safety.watermark import WatermarkDetector

    served = _text_model(request, body.model)
    guard = _models(request).guard
    detector = WatermarkDetector(served.tokenizer, guard.key, guard.policy.watermark_config)
    detection = await run_in_threadpool(detector.detect, body.text)
    return {"model": served.name, **detection.to_json()}


@router.get("/v1/history")
async def history(request: Request, limit: int = 50, who: Caller = Authenticated):
    if not 1 <= limit <= 500:
        raise APIError(400, "limit must be between 1 and 500", param="limit")
    records = await run_in_threadpool(request.app.state.store.history, who.key_id, limit)
    return {"object": "list", "data": records}


@router.post("/v1/redact")
async def redact(body: schemas.RedactRequest, who: Caller = Authenticated):
    from luoxia.safety.pii import redact as find_and_mask

    return (await run_in_threadpool(find_and_mask, body.text, body.style)).to_json()


@router.get("/v1/review")
async def review_queue(request: Request, status: str = "pending", limit: int = 100, who: Caller = Authenticated):
    audit = _models(request).guard.audit
    if not 1 <= limit <= 500:
        raise APIError(400, "limit must be between 1 and 500", param="limit")
    events = await run_in_threadpool(audit.list, None if status == "all" else status, limit)
    return {"object": "list", "data": [e.to_json() for e in events]}


@router.post("/v1/review/{event_id}")
async def review_decide(event_id: int, body: schemas.ReviewDecision, request: Request, who: Caller = Authenticated):
    audit = _models(request).guard.audit
    reviewer = f"key {who.key_id}" if who.key_id is not None else "studio (open mode)"
    event = await run_in_threadpool(audit.review, event_id, body.status, reviewer, body.note)
    return event.to_json()


@router.get("/v1/runs")
async def runs(request: Request, who: Caller = Authenticated):
    from luoxia.serve.runs import list_runs

    return {"object": "list", "data": await run_in_threadpool(list_runs, request.app.state.settings.runs_dir)}
