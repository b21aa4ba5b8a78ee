"""``POST /v1/chat/completions``: the model's chat template around the messages, streamed or not;
or, when ``model`` names an application (`luoxia.apps`), its reply with the sources, hand-off and
the rest in a top-level ``app`` object."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from luoxia.apps.interface import AppReply, ChatApp
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
    sse,
    start_recording,
    stream_events,
    stream_response,
    token_entries,
    usage,
)
from luoxia.serve.models import ServedText
from luoxia.serve.responses import AssistantMessage, ChatChoice, ChatCompletion, ChatLogprobs, TokenLogprob

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: schemas.ChatCompletionRequest, request: Request, who: CallerDep,
                           settings: SettingsDep, models: ModelsDep, store: StoreDep, metrics: MetricsDep,
                           offload: OffloadDep) -> ChatCompletion | StreamingResponse:
    app = models.app(body.model)
    if app is not None:
        return await _app_completion(app, body, request, who, settings, store, metrics, offload)
    served = models.text_model(body.model)
    if body.n > settings.max_n:
        raise APIError(400, f"n is {body.n}; this server allows at most {settings.max_n}", param="n")
    messages = [m.model_dump() for m in body.messages]
    prompt, stops = await offload(served.generator.render_chat, messages)  # CPU work on request data
    max_tokens = body.max_completion_tokens or body.max_tokens or min(256, settings.max_tokens_limit)
    jobs = [(prompt, generation_config(max_tokens, body, settings, stops, seed_offset=i)) for i in range(body.n)]
    prompt_tokens = await offload(check_context, served, [prompt], max_tokens)
    recording = await start_recording(store, metrics, offload, who, served.name, "chat.completions", messages,
                                      body.model_dump(exclude={"messages"}), request.headers.get("x-conversation-id"))
    created, response_id = int(time.time()), new_id("chatcmpl")
    if body.stream:
        opened: set[int] = set()

        def chunk(index: int, text: str, finish_reason: str | None) -> dict:
            delta = {"content": text} if text else {}
            if index not in opened:
                opened.add(index)
                delta = {"role": "assistant", **delta}
            return {"id": response_id, "object": "chat.completion.chunk", "created": created, "model": served.name,
                    "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]}

        return stream_response(stream_events(served, jobs, offload, settings.request_timeout_s, recording, chunk))
    results = await collect_recorded(served, jobs, offload, settings.request_timeout_s, recording,
                                     request.receive)
    logprobs = [await offload(_logprobs, served, r) if body.logprobs else None for r in results]
    choices = [ChatChoice(index=i, message=AssistantMessage(content=r.text), finish_reason=r.finish_reason,
                          logprobs=logprobs[i], safety=public_safety(r.safety)) for i, r in enumerate(results)]
    return ChatCompletion(id=response_id, created=created, model=served.name, choices=choices,
                          usage=usage(results, prompt_tokens))


def _logprobs(served: ServedText, result: GenerationResult) -> ChatLogprobs:
    """One entry per released token that has a log-probability (a model may give none; tokens
    merged around an edit of the guard are one entry)."""
    return ChatLogprobs(content=[TokenLogprob(token=t, logprob=p, bytes=list(t.encode("utf-8")), top_logprobs=[])
                                 for t, p in token_entries(served, result)])


async def _app_completion(app: ChatApp, body: schemas.ChatCompletionRequest, request: Request, who: CallerDep,
                          settings: SettingsDep, store: StoreDep, metrics: MetricsDep, offload: OffloadDep
                          ) -> ChatCompletion | StreamingResponse:
    """One application turn: recorded like a generation, answered whole (streamed as one piece)."""
    if body.n != 1:
        raise APIError(400, f"n is {body.n}; an application gives one answer per turn", param="n")
    messages = [m.model_dump() for m in body.messages]
    if not any(m["role"] == "user" for m in messages):
        raise APIError(400, "the conversation has no user message to answer", param="messages")
    conversation = request.headers.get("x-conversation-id")
    recording = await start_recording(store, metrics, offload, who, app.name, "chat.completions", messages,
                                      body.model_dump(exclude={"messages"}), conversation)
    try:
        reply: AppReply = await asyncio.wait_for(offload(app.reply, messages, conversation),
                                                 settings.request_timeout_s)
    except BaseException:
        await asyncio.shield(recording.finish("error", []))
        raise
    finish = "content_filter" if reply.safety.get("blocked") else "stop"
    result = GenerationResult(reply.answer, [], finish, 0, safety=reply.safety)
    await recording.finish("complete", [result])
    details = {**reply.to_json(), "safety": public_safety(reply.safety)}
    response_id, created = new_id("chatcmpl"), int(time.time())
    if body.stream:
        head = {"id": response_id, "object": "chat.completion.chunk", "created": created, "model": app.name}
        pieces = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": reply.answer},
                                        "finish_reason": None, "logprobs": None}]},
                  {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None}],
                   "app": details}]

        async def events():
            for piece in pieces:
                yield sse(piece)
            yield sse("[DONE]")

        return stream_response(events())
    choice = ChatChoice(index=0, message=AssistantMessage(content=reply.answer), finish_reason=finish,
                        safety=public_safety(reply.safety))
    return ChatCompletion(id=response_id, created=created, model=app.name, choices=[choice],
                          usage=usage([result], 0), app=details)
