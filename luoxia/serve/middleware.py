"""Pure ASGI middleware: what every request passes before the app reads a byte of its body, and
what every answer carries. Outermost first:

- `SecurityHeaders`: a strict Content-Security-Policy (no script from another origin, no inline
  script), ``X-Frame-Options: DENY``, ``nosniff`` and ``Referrer-Policy: no-referrer`` on every
  response (the studio keeps the API key in this origin's storage).
- `Observed`: every request counted in /metrics, an unexpected error answered with a bare 500 and
  logged once (not re-raised for the ASGI server to log again).
- `Gate`: the Host check, the body limit enforced while the body streams in (whatever
  Content-Length says), and, for /v1, the API key, the request rate and the body's byte budget,
  all before the route reads the body.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers, State
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luoxia.serve.deps import CALLER, Caller, admit
from luoxia.serve.errors import APIError, RefusedWhileReading, internal_error
from luoxia.serve.metrics import Metrics
from luoxia.serve.settings import ServeSettings

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# FastAPI's /docs and /redoc (only with `docs` on) load their scripts from a CDN and start them inline.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
            "font-src https://fonts.gstatic.com; img-src 'self' data: https://fastapi.tiangolo.com "
            "https://cdn.redoc.ly; worker-src blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "frame-ancestors 'none'")
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})


def security_headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-security-policy", csp.encode()), (b"x-frame-options", b"DENY"),
            (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """Adds the security headers to every HTTP response (a header the app set itself is kept)."""

    def __init__(self, app: ASGIApp, docs: bool = False):
        self.app, self.docs = app, docs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        added = security_headers(DOCS_CSP if self.docs and scope["path"] in DOCS_PATHS else CSP)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                message = {**message, "headers": headers + [(n, v) for n, v in added if n not in present]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Observed:
    """Counts every request in the metrics, and answers an unexpected error itself: one log line with
    the traceback, a bare 500, and the 500 counted."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, responded = time.perf_counter(), 500, False

        async def observe(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observe)
        except Exception:
            error, status = internal_error(scope["method"], scope["path"]), 500
            if not responded:  # once a response has started, the connection just ends
                await error.response()(scope, receive, send)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - started)


class Gate:
    """Refuses what it can before the body is read: a Host not allowed (400), a declared body too
    large (413), and on /v1 a missing, unknown or revoked key (401), open access off loopback (403),
    the request rate (429). Then
    reads the body through a meter: past `max_body_bytes` it stops with a 413, past the caller's byte
    budget with a 429, whatever Content-Length said."""

    def __init__(self, app: ASGIApp, state: State):
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            who = await self._admit(scope)
        except APIError as refusal:
            return await refusal.response()(scope, receive, send)
        await self.app(scope, self._metered(receive, who), send)

    async def _admit(self, scope: Scope) -> Caller | None:
        settings: ServeSettings = self.state.settings
        headers = Headers(scope=scope)
        allowed = {name.lower() for name in settings.allowed_hosts}
        if allowed and _hostname(headers.get("host", "")).lower() not in allowed:
            raise APIError(400, "this server does not answer for that Host", param="host")
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body_bytes):
            raise _too_large(settings)
        if not (scope["path"] == "/v1" or scope["path"].startswith("/v1/")):
            return None
        scope[CALLER] = who = await admit(scope, self.state)
        return who

    def _metered(self, receive: Receive, who: Caller | None) -> Receive:
        settings: ServeSettings = self.state.settings
        received = 0

        async def metered() -> Message:
            nonlocal received
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            received += size
            if received > settings.max_body_bytes:
                raise RefusedWhileReading(_too_large(settings))
            if who is not None and size and (wait := self.state.budget.acquire(who.bucket, size)) > 0:
                raise RefusedWhileReading(APIError(
                    429, f"byte budget reached ({settings.rate_limit_bytes_per_minute} request bytes a minute); "
                         "retry later", "rate_limit_error", code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, round(wait)))}))
            return message

        return metered


def _too_large(settings: ServeSettings) -> APIError:
    return APIError(413, f"request body larger than {settings.max_body_bytes} bytes")


def _hostname(host: str) -> str:
    """The name of a Host header, without its port (``[::1]:8000`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
