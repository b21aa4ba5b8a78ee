"""The FastAPI application: an app factory and the models loaded in its lifespan.

    uvicorn --factory luoxia.serve.app:app_from_env      # or: luoxia serve --model RUN

The parts live by concern: `errors` (exception types → OpenAI-shaped HTTP errors), `deps` (what
routes receive: settings, models, store, the caller), `streams` (batcher → event loop), `routes`
(one module per resource, with response models).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from luoxia.serve.deps import Offload
from luoxia.serve.errors import APIError, install_error_handlers
from luoxia.serve.metrics import Metrics
from luoxia.serve.models import Models, load_models
from luoxia.serve.ratelimit import RateLimiter
from luoxia.serve.routes import ROUTERS
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import Store

STUDIO_DIR = Path(__file__).with_name("studio")


def create_app(settings: ServeSettings, models: Models | None = None) -> FastAPI:
    """The application; ``models`` (already loaded) replaces loading them from ``settings``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Requests' blocking work runs in at most `worker_threads` threads (not anyio's default cap).
        app.state.offload = Offload(CapacityLimiter(settings.worker_threads))
        app.state.models = models or await anyio.to_thread.run_sync(load_models, settings)
        app.state.store = Store(settings.data_dir, settings.store_raw_prompts, settings.retention_days)
        yield
        app.state.models.close()
        app.state.store.close()

    app = FastAPI(title="Luoxia", version="0.1.0", lifespan=lifespan,
                  description="OpenAI-compatible API over Luoxia's models, with moderation, PII redaction, "
                              "watermarks and an audit trail.")
    app.state.settings = settings
    app.state.metrics = Metrics(lambda: app.state.models.queue_depth(), lambda: app.state.models.active_sequences())
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    install_error_handlers(app)
    _install_limits(app, settings)
    for router in ROUTERS:
        app.include_router(router)
    if STUDIO_DIR.is_dir():
        app.mount("/studio", StaticFiles(directory=STUDIO_DIR, html=True), name="studio")
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory``: settings from ``LUOXIA_SERVE_*`` variables."""
    return create_app(ServeSettings())


def _install_limits(app: FastAPI, settings: ServeSettings) -> None:
    @app.middleware("http")
    async def body_limit_and_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                                     ) -> Response:
        started = time.perf_counter()
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            response: Response = APIError(413, f"request body larger than {settings.max_body_bytes} bytes").response()
        else:
            response = await call_next(request)
        app.state.metrics.observe_request(request.url.path, response.status_code, time.perf_counter() - started)
        return response
