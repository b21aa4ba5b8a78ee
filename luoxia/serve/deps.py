"""The routes' dependencies (FastAPI ``Depends``): settings, the served models, the store, the
metrics, the thread limiter and the authenticated caller. Everything a route uses comes through
here, so a test swaps any of it with ``app.dependency_overrides[get_models] = ...``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request

from luoxia.serve.errors import APIError
from luoxia.serve.metrics import Metrics
from luoxia.serve.models import Models
from luoxia.serve.ratelimit import RateLimiter
from luoxia.serve.settings import ServeSettings
from luoxia.serve.store import Store

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Caller:
    key_id: int | None  # None: open mode


@dataclass
class Offload:
    """Runs blocking work (guard checks, database writes, image generation) in worker threads,
    at most ``limiter.total_tokens`` at once (`ServeSettings.worker_threads`), never on the event loop."""

    limiter: CapacityLimiter

    async def __call__(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(partial(work, *args, **kwargs), limiter=self.limiter)


def get_settings(request: Request) -> ServeSettings:
    return request.app.state.settings


def get_models(request: Request) -> Models:
    return request.app.state.models


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter


def get_offload(request: Request) -> Offload:
    return request.app.state.offload


SettingsDep = Annotated[ServeSettings, Depends(get_settings)]
ModelsDep = Annotated[Models, Depends(get_models)]
StoreDep = Annotated[Store, Depends(get_store)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
OffloadDep = Annotated[Offload, Depends(get_offload)]


async def authenticated(request: Request, settings: SettingsDep, store: StoreDep, offload: OffloadDep,
                        limiter: Annotated[RateLimiter, Depends(get_limiter)]) -> Caller:
    """The caller of a /v1 route: its API key (or open mode), within its rate limit."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token:
        key = await offload(store.authenticate, token)
        if key is None:
            raise APIError(401, "invalid or revoked API key", "authentication_error", code="invalid_api_key")
        who = Caller(key.id)
    elif settings.open_access:
        who = Caller(None)
    else:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                            "`luoxia keys create`)", "authentication_error", code="invalid_api_key")
    client = request.client.host if request.client else "unknown"
    wait = limiter.acquire(who.key_id if who.key_id is not None else client)
    if wait > 0:
        raise APIError(429, "rate limit reached; retry later", "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(max(1, round(wait)))})
    return who


CallerDep = Annotated[Caller, Depends(authenticated)]
