"""Request ids and the one error shape.

Every response carries ``X-Request-Id`` (the client's own id when it sent a sane one:
1..128 characters of ``[A-Za-z0-9._:-]``, else a fresh uuid4 hex). Every error leaves as
``{"error": {"code", "message", "request_id"}}`` with its HTTP status:

- :class:`~dfspeer.errors.DfsError` -> its ``status`` and ``code``, except an
  :class:`~dfspeer.errors.RpcError` (a peer call that failed and was not folded into a
  quorum outcome): its status and code are another peer's, so it leaves as 500
  ``internal_error`` like any unexpected error (logged with its detail, never shown);
- aiohttp HTTP errors (unknown route, wrong method, body over ``client_max_size``) ->
  their status with ``not_found``, ``method_not_allowed``, ``entity_too_large``, ...;
- anything else -> 500 ``internal_error``, logged with its traceback, never shown.

Every 503 also carries ``Retry-After: 1`` (see :func:`error_response`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler

from dfspeer.api.context import REQUEST_ID_KEY
from dfspeer.errors import DfsError, RpcError

log = logging.getLogger("dfspeer.api")
access_log = logging.getLogger("dfspeer.api.access")

REQUEST_ID_HEADER = "X-Request-Id"
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_S = 1  # what every 503 asks a client to wait before retrying, seconds
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "entity_too_large",
    415: "unsupported_media_type",
    431: "headers_too_large",
}


def request_id(request: web.BaseRequest) -> str:
    """The id of ``request``, assigned on first use (incoming ``X-Request-Id`` if sane)."""
    rid = request.get(REQUEST_ID_KEY)
    if rid is None:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        rid = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        request[REQUEST_ID_KEY] = rid
    return rid


def error_response(
    request: web.BaseRequest,
    status: int,
    code: str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> web.Response:
    """A JSON error response in the one shape, with ``X-Request-Id`` set; ``details`` adds
    fields to the error object (never overriding code, message, request_id). Every 503
    (``not_ready``, ``insufficient_replicas``, ``data_unavailable``, ...) carries
    ``Retry-After: 1`` (seconds) unless ``headers`` already has one: the condition is
    transient and ``dfspeer.Client`` retries idempotent requests that get it."""
    rid = request_id(request)
    if status == 503 and not any(k.lower() == "retry-after" for k in headers or {}):
        headers = {**(headers or {}), RETRY_AFTER_HEADER: str(RETRY_AFTER_S)}
    error: dict[str, Any] = dict(details or {})
    error.update(code=code, message=message, request_id=rid)
    body = {"error": error}
    response = web.json_response(body, status=status, headers=headers)
    response.headers[REQUEST_ID_HEADER] = rid
    return response


def render_dfs_error(
    request: web.BaseRequest, exc: DfsError, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Render a :class:`DfsError`; 5xx are logged at warning, 4xx at debug. An
    :class:`RpcError` is not relayed: 500 ``internal_error``, logged with its traceback."""
    if isinstance(exc, RpcError):
        log.error(
            "peer call failed id=%s method=%s path=%s remote status=%d code=%s: %s",
            request_id(request),
            request.method,
            request.path,
            exc.status,
            exc.code,
            exc.message,
            exc_info=exc,
        )
        return error_response(request, 500, "internal_error", "internal error", headers=headers)
    level = logging.WARNING if exc.status >= 500 else logging.DEBUG
    log.log(
        level,
        "request failed id=%s method=%s path=%s status=%d code=%s: %s",
        request_id(request),
        request.method,
        request.path,
        exc.status,
        exc.code,
        exc.message,
    )
    return error_response(
        request, exc.status, exc.code, exc.message, headers=headers, details=exc.details
    )


def _render_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    code = _HTTP_CODES.get(exc.status)
    if code is None:
        try:
            code = HTTPStatus(exc.status).name.lower()
        except ValueError:
            code = "internal_error" if exc.status >= 500 else "bad_request"
    message = exc.reason or code
    if exc.status == 405 and isinstance(exc, web.HTTPMethodNotAllowed):
        message = (
            f"method {exc.method} not allowed; allowed: {', '.join(sorted(exc.allowed_methods))}"
        )
    elif exc.status == 404:
        message = f"no route for {request.method} {request.path}"
    keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return error_response(request, exc.status, code, message, headers=keep)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Assign the request id and turn every exception into the error shape (see module)."""
    request_id(request)
    try:
        return await handler(request)
    except DfsError as exc:
        return render_dfs_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # 3xx raised by a handler: not an error
        return _render_http_exception(request, exc)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "unexpected error id=%s method=%s path=%s",
            request_id(request),
            request.method,
            request.path,
        )
        return error_response(request, 500, "internal_error", "internal error")


async def add_request_id_header(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: every response (streamed ones too) gets ``X-Request-Id``."""
    response.headers[REQUEST_ID_HEADER] = request_id(request)


class AccessLogger(AbstractAccessLogger):
    """One DEBUG line per request on ``dfspeer.api.access`` (id, method, path, status, time)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.debug(
            "id=%s remote=%s method=%s path=%s status=%d bytes=%d duration_s=%.6f",
            request.get(REQUEST_ID_KEY, "-"),
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.DEBUG)
