"""Errors as HTTP answers: OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``,
with the status chosen by the exception's type (never by its message).

Every error a client can cause is a 4xx; anything else is logged once and answered with a bare
500 (by `luoxia.serve.middleware`), never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from luoxia.errors import LuoxiaError, ModelNotFound, NotFound, RemoteError
from luoxia.generate.batching import QueueFull, RequestTimeout
from luoxia.safety.guard import PromptBlocked

log = logging.getLogger("luoxia.serve")


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


# Exception type → its answer; `error_for` takes the first type of the error's MRO found here.
ANSWERS: dict[type[Exception], Callable[[Exception], APIError]] = {
    QueueFull: lambda e: APIError(503, f"server busy: {e}", "server_busy", headers={"Retry-After": "1"}),
    RequestTimeout: lambda e: APIError(504, str(e), "timeout"),
    ModelNotFound: lambda e: APIError(404, str(e), "not_found_error", param="model", code="model_not_found"),
    NotFound: lambda e: APIError(404, str(e), "not_found_error"),
    PromptBlocked: lambda e: APIError(400, str(e), code="content_policy_violation"),
    RemoteError: lambda e: APIError(502, str(e), "upstream_error"),  # an application's remote writer failed
    LuoxiaError: lambda e: APIError(400, str(e)),
}


class RefusedWhileReading(StarletteHTTPException):
    """An `APIError` raised while a request's body is read (too large, over its budget): FastAPI
    lets HTTP exceptions out of its body parsing, where others would become a 400."""

    def __init__(self, error: APIError):
        super().__init__(error.status, error.message, error.headers)
        self.error = error


def internal_error(method: str, path: str) -> APIError:
    """Log the error being handled, once, with its traceback; answer a bare 500."""
    log.exception("unhandled error on %s %s", method, path)
    return APIError(500, "internal server error", "server_error")


def error_for(error: Exception) -> APIError:
    """The HTTP answer to an error raised while serving a request (500 for a type not in `ANSWERS`)."""
    if isinstance(error, APIError):
        return error
    for kind in type(error).__mro__:
        if kind in ANSWERS:
            return ANSWERS[kind](error)
    return APIError(500, "internal server error", "server_error")


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error with OpenAI's body: ours, request validation, routing, and the unexpected."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(LuoxiaError)
    async def luoxia_error(request: Request, error: LuoxiaError) -> JSONResponse:
        return error_for(error).response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        first = _most_specific(error.errors())
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body" and not _branch(part))
        what = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return APIError(400, f"{where}: {what}" if where else what, param=where or None).response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if isinstance(error, RefusedWhileReading):
            return error.error.response()
        kind = "not_found_error" if error.status_code == 404 else "invalid_request_error"
        return APIError(error.status_code, str(error.detail), kind, headers=dict(error.headers or {})).response()
    # Unexpected errors: `luoxia.serve.middleware.Observed` answers them (logged once, counted in /metrics).


def _most_specific(errors: Sequence[Any]) -> dict:
    """The error to report: our own validators' (a value error) first, then the deepest (a union's
    list branch says which item is wrong, its string branch only that a list is not a string)."""
    if not errors:
        return {}
    return max(errors, key=lambda e: (e.get("type") == "value_error", len(e.get("loc", ()))))


def _branch(part: object) -> bool:
    """A union branch's name in an error's location (``list[str]``), not a field."""
    return isinstance(part, str) and "[" in part
