"""The routes' dependencies (FastAPI ``Depends``): settings, the served models, the store, the
metrics, the thread limiter and the authenticated caller. Everything a route uses comes through
here, so a test swaps any of it with ``app.dependency_overrides[get_models] = ...``."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, ParamSpec, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, Request
from starlette.datastructures import Headers, State
from starlette.types import Scope

from luoxia.serve.errors import APIError
from luoxia.serve.metrics import Metrics
from luoxia.serve.models import Models
from luoxia.serve.ratelimit import RateLimiter
from luoxia.serve.settings import ServeSettings, is_loopback_address
from luoxia.serve.store import Store

P = ParamSpec("P")
T = TypeVar("T")


CALLER = "luoxia.caller"  # the ASGI scope key where the gate leaves the admitted `Caller`


@dataclass
class Caller:
    key_id: int | None  # None: open mode

    @property
    def bucket(self) -> Hashable:
        """Whose rate limits it uses: its key's, or the one open-mode caller's (never a client address,
        which a forwarded header could rotate)."""
        return self.key_id if self.key_id is not None else "open"


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


async def admit(scope: Scope, state: State) -> Caller:
    """The caller of a /v1 route (its API key, or open mode on loopback), within its request rate:
    else a 401, 403 or 429. Reads only headers and addresses, so it runs before any body is read."""
    settings: ServeSettings = state.settings
    headers = Headers(scope=scope)
    header = headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if token:
        key = await state.offload(state.store.authenticate, token)  # a hash and a lookup: off the event loop
        if key is None:
            raise APIError(401, "invalid or revoked API key", "authentication_error", code="invalid_api_key")
        who = Caller(key.id)
    elif settings.open_access:
        _check_loopback(scope, headers, settings)
        who = Caller(None)
    else:
        raise APIError(401, "missing API key: send 'Authorization: Bearer <key>' (create one with "
                            "`luoxia keys create`)", "authentication_error", code="invalid_api_key")
    wait = state.limiter.acquire(who.bucket)
    if wait > 0:
        raise APIError(429, "rate limit reached; retry later", "rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(max(1, round(wait)))})
    return who


def _check_loopback(scope: Scope, headers: Headers, settings: ServeSettings) -> None:
    """Open access is for this machine only: both ends of the connection loopback, and no proxy in
    between (unless proxies are configured, whose forwarded client address is then checked)."""
    server, client = (scope.get("server") or (None,))[0], (scope.get("client") or (None,))[0]
    proxied = not settings.trusted_proxies and ("x-forwarded-for" in headers or "forwarded" in headers)
    if proxied or not (is_loopback_address(server) and is_loopback_address(client)):
        raise APIError(403, "open access (no API key) is loopback-only: this request did not come from and to a "
                            "loopback address; send 'Authorization: Bearer <key>' (create one with "
                            "`luoxia keys create`)", "permission_error", code="open_access_loopback_only")


async def authenticated(request: Request) -> Caller:
    """The caller the gate (`luoxia.serve.middleware.Gate`) admitted before the body was read."""
    who = request.scope.get(CALLER)
    return who if isinstance(who, Caller) else await admit(request.scope, request.app.state)


CallerDep = Annotated[Caller, Depends(authenticated)]
