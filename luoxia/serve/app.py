"""The FastAPI application: an app factory and the models loaded in its lifespan.

    uvicorn --factory luoxia.serve.app:app_from_env      # or: luoxia serve --model RUN

The parts live by concern: `errors` (exception types → OpenAI-shaped HTTP errors), `middleware`
(security headers, metrics and unexpected errors, and the gate: Host, body limit, keys and rate
limits before a body is read), `deps` (what routes receive: settings, models, store, the caller),
`streams` (batcher → event loop), `routes` (one module per resource, with response models).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from luoxia.errors import ConfigError
from luoxia.safety.watermark import KEY_ENV, KEY_FILE_ENV, resolve_key
from luoxia.serve.deps import Offload
from luoxia.serve.errors import install_error_handlers
from luoxia.serve.metrics import Metrics
from luoxia.serve.middleware import Gate, Observed, SecurityHeaders
from luoxia.serve.models import Models, load_models
from luoxia.serve.ratelimit import RateLimiter
from luoxia.serve.routes import ROUTERS
from luoxia.serve.settings import ServeSettings, is_loopback
from luoxia.serve.store import Store

STUDIO_DIR = Path(__file__).with_name("studio")
log = logging.getLogger("luoxia.serve")


def create_app(settings: ServeSettings, models: Models | None = None) -> FastAPI:
    """The application; ``models`` (already loaded) replaces loading them from ``settings``."""
    _check_signing_key(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Requests' blocking work runs in at most `worker_threads` threads (not anyio's default cap).
        app.state.offload = Offload(CapacityLimiter(settings.worker_threads))
        app.state.models = models or await anyio.to_thread.run_sync(load_models, settings)
        app.state.store = Store(settings.data_dir, settings.store_raw_prompts, settings.retention_days)
        yield
        app.state.models.close()
        app.state.store.close()

    docs = settings.docs  # off by default: FastAPI's pages load their scripts from a CDN, on the studio's origin
    app = FastAPI(title="Luoxia", version="0.1.0", lifespan=lifespan, docs_url="/docs" if docs else None,
                  redoc_url="/redoc" if docs else None,
                  description="OpenAI-compatible API over Luoxia's models, with moderation, PII redaction, "
                              "watermarks and an audit trail.")
    app.state.settings = settings
    app.state.metrics = Metrics(lambda: app.state.models.queue_depth(), lambda: app.state.models.active_sequences())
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    app.state.budget = RateLimiter(settings.rate_limit_bytes_per_minute)
    install_error_handlers(app)
    app.add_middleware(Gate, state=app.state)  # the last added is the outermost
    app.add_middleware(Observed, metrics=app.state.metrics)
    app.add_middleware(SecurityHeaders, docs=docs)
    install_access_log_filter()
    for router in ROUTERS:
        app.include_router(router)
    if STUDIO_DIR.is_dir():
        app.mount("/studio", StaticFiles(directory=STUDIO_DIR, html=True), name="studio")
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory``: settings from ``LUOXIA_SERVE_*`` variables."""
    return create_app(ServeSettings())


def _check_signing_key(settings: ServeSettings) -> None:
    """Signing with the public demo key is refused on a non-loopback host (anyone could forge the
    server's watermarks and image provenance), and said on loopback."""
    if not resolve_key().is_demo:
        return
    if not is_loopback(settings.host):
        raise ConfigError(f"refusing to serve on {settings.host} with the public demo watermark key (anyone could "
                          f"forge this server's watermarks and image provenance); set {KEY_ENV} (or {KEY_FILE_ENV}) "
                          "to a secret key: `python -c 'import secrets; print(secrets.token_hex(32))'`")
    log.warning("watermarks and image provenance are signed with the public demo key; set %s for real use", KEY_ENV)


class QueryRedaction(logging.Filter):
    """Drops query strings from access-log lines: a key sent as ``?api_key=...`` never reaches the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_without_query(a) for a in record.args)
        return True


def _without_query(value: object) -> object:
    if isinstance(value, str) and value.startswith("/") and "?" in value:
        return value.split("?", 1)[0] + "?[redacted]"
    return value


def install_access_log_filter() -> None:
    """Install `QueryRedaction` on uvicorn's access logger (once per process)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryRedaction) for f in access.filters):
        access.addFilter(QueryRedaction())
