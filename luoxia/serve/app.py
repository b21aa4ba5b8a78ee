"""The FastAPI application: an app factory, models loaded in the lifespan, OpenAI's request,
response and error shapes.

    uvicorn --factory luoxia.serve.app:app_from_env      # or: luoxia serve --model RUN

Every error a client can cause is a 4xx with OpenAI's error body ``{"error": {"message", "type",
"param", "code"}}``; anything else is logged here and answered with a bare 500, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from luoxia.errors import ConfigError, LuoxiaError
from luoxia.generate.batching import QueueFull, RequestTimeout
from luoxia.generate.interface import GenerationResult
from luoxia.serve.metrics import Metrics
from luoxia.serve.models import Models, load_models
from luoxia.serve.ratelimit import RateLimiter
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import Store

log = logging.getLogger("luoxia.serve")
STUDIO_DIR = Path(__file__).with_name("studio")


class APIError(Exception):
    """An error answered with OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass
class Caller:
    key_id: int | None  # None: open mode


def create_app(settings: ServeSettings, models: Models | None = None) -> FastAPI:
    """The application; ``models`` (already loaded) replaces loading them from ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.models = models or await run_in_threadpool(load_models, settings)
        app.state.store = Store(settings.data_dir)
        # One waiting thread per stream that can be in flight: anyio's default pool (a few threads
        # per core) would cap how many requests reach the batcher at once.
        app.state.executor = ThreadPoolExecutor(settings.max_batch + settings.max_queue, "luoxia-stream")
        yield
        app.state.executor.shutdown(wait=False, cancel_futures=True)
        app.state.models.close()
        app.state.store.close()

    app = FastAPI(title="Luoxia", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API over Luoxia's models, with moderation, PII redaction, "
                              "watermarks and an audit trail.")
    app.state.settings = settings
    app.state.metrics = Metrics(lambda: app.state.models.queue_depth(), lambda: app.state.models.active_sequences())
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    _install_errors(app)
    _install_limits(app, settings)
    from luoxia.serve import routes

    app.include_router(routes.router)
    if STUDIO_DIR.is_dir():
        app.mount("/studio", StaticFiles(directory=STUDIO_DIR, html=True), name="studio")
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory``: settings from ``LUOXIA_SERVE_*`` variables."""
    return create_app(ServeSettings())


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError):
        return error.response()

    @app.exception_handler(LuoxiaError)
    async def luoxia_error(request: Request, error: LuoxiaError):
        return error_for(error).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid request")
        return APIError(400, message, param=where or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return APIError(error.status_code, str(error.detail), kind).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, "internal server error", "server_error").response()


def _install_limits(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def body_limit_and_metrics(request: Request, call_next):
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response = APIError(413, f"request body larger than {settings.max_body_bytes} bytes").response()
        else:
            response = await call_next(request)
        app.state.metrics.observe_request(request.url.path, response.status_code, time.perf_counter() - started)
        return response


def error_for(error: Exception) -> APIError:
    """The HTTP answer to an error raised while serving a request."""
    if isinstance(error, QueueFull):
        return APIError(503, f"server busy: {error}", "server_busy", headers={"Retry-After": "1"})
    if isinstance(error, RequestTimeout):
        return APIError(504, str(error), "timeout")
    if isinstance(error, ConfigError) and str(error).startswith("unknown model"):
        return APIError(404, str(error), "not_found_error", param="model", code="model_not_found")
    if isinstance(error, LuoxiaError):
        return APIError(400, str(error))
    return APIError(500, "internal server error", "server_error")


# Authentication and rate limits, as a dependency of every /v1 route.

async def caller(request: Request) -> Caller:
    settings: ServeSettings = request.app.state.settings
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token:
        key = await run_in_threadpool(request.app.state.store.authenticate, token)
        if key is None:
            raise APIError(401, "invalid or revoked API key", "authentication_error", code="invalid_api_key")
        who = Caller(key.id)
    elif settings.open_access:
        who = Caller(None)
    else:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                            "`luoxia keys create`)", "authentication_error", code="invalid_api_key")
    wait = request.app.state.limiter.acquire(who.key_id if who.key_id is not None else request.client.host)
    if wait > 0:
        raise APIError(429, "rate limit reached; retry later", "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(max(1, round(wait)))})
    return who


Authenticated = Depends(caller)


# Running generations in worker threads and collecting their events.

async def run_streams(start: Callable[[int], Any], count: int, executor: Executor
                      ) -> AsyncIterator[list[tuple[int, str, Any]]]:
    """Run ``count`` generator streams (``start(i)`` makes the i-th) in worker threads; yield their
    (index, "text" | "done" | "error", payload) events as they come, in lists of all that are
    waiting (under load, one write carries many). Leaving early (the client disconnected) closes
    every stream, which cancels its request."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()

    def produce(index: int) -> None:
        put = lambda kind, payload: loop.call_soon_threadsafe(events.put_nowait, (index, kind, payload))  # noqa: E731
        try:
            stream = start(index)
            while True:
                if stop.is_set():
                    stream.close()
                    return
                try:
                    piece = next(stream)
                except StopIteration as end:
                    put("done", end.value)
                    return
                if piece:
                    put("text", piece)
        except Exception as error:  # handed to the request's coroutine, which answers it
            put("error", error)

    for index in range(count):
        loop.run_in_executor(executor, produce, index)
    remaining = count
    try:
        while remaining:
            batch = [await events.get()]
            while not events.empty():
                batch.append(events.get_nowait())
            remaining -= sum(kind in ("done", "error") for _, kind, _ in batch)
            yield batch
    finally:
        stop.set()


async def collect(start: Callable[[int], Any], count: int, executor: Executor) -> list[GenerationResult]:
    results: list[GenerationResult | None] = [None] * count
    async for batch in run_streams(start, count, executor):
        for index, kind, payload in batch:
            if kind == "error":
                raise error_for(payload)
            if kind == "done":
                results[index] = payload
    return results  # type: ignore[return-value]
