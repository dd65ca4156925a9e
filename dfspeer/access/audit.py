"""The audit log: one JSON line for every mutating request and every refusal of the native
API and of the S3 port.

Recorded: every ``PUT``, ``POST``, ``DELETE`` and ``PATCH`` (whatever its outcome), and any
other request refused by access control — ``401``, ``403``, ``429``, and a ``503`` whose
error code is ``overloaded`` or ``slow_down`` (S3: ``SlowDown``). Peer RPC (``/internal/``)
is not a client request and is never recorded. One line::

    {"time": "2026-12-07T06:07:57.123Z", "api": "native", "request_id": "…",
     "principal": "DK…", "remote": "10.0.0.7", "action": "write",
     "operation": "PUT /v1/objects/{bucket}/{key}", "method": "PUT",
     "path": "/v1/objects/photos/cat.jpg", "query": {}, "bucket": "photos",
     "key": "cat.jpg", "status": 201, "result": "ok", "code": null, "bytes": 4096}

- ``time``: RFC 3339, UTC, milliseconds; ``request_id``: the ``X-Request-Id`` /
  ``x-amz-request-id`` the client got;
- ``principal``: an access key id, ``admin``, ``open`` (an ``--insecure`` peer, or the S3
  port in open mode) or ``anonymous`` (no valid credential) — never a secret;
- ``action``: what access control asked for (``read``, ``write``, ``delete``, ``owner``,
  ``create_bucket``, ``admin``, ...); ``operation``: the native route
  (``METHOD pattern``) or the S3 operation (``put_object``);
- ``query``: only the parameters in :data:`QUERY_KEPT` (versions, upload ids, part
  numbers): the query string may carry credentials (presigned URLs' ``X-Amz-Signature``,
  share links), so nothing else of it is written; no header is written either;
- ``status``: the HTTP status sent (499: the client went away first); ``result``: ``ok``
  (< 400), ``refused`` (the refusals above) or ``error``; ``code``: the error code of the
  answer (``access_denied``, ``AccessDenied``, ...), null for a success;
- ``bytes``: the size of the request body: its ``Content-Length``, else (a chunked body)
  the bytes received.

Writing: lines go through a :class:`logging.handlers.QueueHandler` to a listener thread
that writes them with a :class:`logging.handlers.RotatingFileHandler` (``FILE`` renamed
``FILE.1`` ... at ``audit_log_max_bytes``, ``audit_log_backups`` kept), so the event loop
never waits for the disk. Hooked into an app by :meth:`AuditLog.install`: a middleware
outside the error renderer (it sees the status sent) plus an ``on_response_prepare`` hook
for answers given before any middleware runs (a refused ``Expect: 100-continue``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import logging.handlers
import queue
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from dfspeer.access.middleware import INTERNAL_PREFIX, PRINCIPAL_KEY
from dfspeer.access.routes import rule_for
from dfspeer.api.middleware import request_id
from dfspeer.config import ConfigError, PeerConfig

MUTATING_METHODS = frozenset({"PUT", "POST", "DELETE", "PATCH"})
REFUSAL_STATUSES = frozenset({401, 403, 429})
REFUSAL_503_CODES = frozenset({"overloaded", "slow_down", "SlowDown"})
QUERY_KEPT = ("version", "versionId", "uploadId", "upload_id", "partNumber")
"""Query parameters an audit line keeps (none of them a credential)."""
ANONYMOUS = "anonymous"
CLIENT_CLOSED = 499
"""The status written for a request whose client went away before the answer (nginx's)."""
_S3_CODE = re.compile(rb"<Code>([^<]{1,64})</Code>")
_SEEN_KEY = web.RequestKey("dfspeer.audit_seen", bool)


@dataclass(frozen=True)
class Target:
    """What a request asks for: its access ``action``, its ``operation`` (route or S3
    operation), and the ``bucket`` and ``key`` it names (None where it names none)."""

    action: str
    operation: str
    bucket: str | None = None
    key: str | None = None


Describe = Callable[[web.Request], Target]
"""How an API names a request's target (never raises: unknown parts are None / "")."""


def native_target(*, metrics_public: bool) -> Describe:
    """The :data:`Describe` of the native API: its route table's action
    (:func:`dfspeer.access.routes.rule_for`), ``METHOD pattern``, and the route's
    ``{bucket}`` and ``{key}`` (or ``?bucket=``)."""

    def describe(request: web.Request) -> Target:
        info = request.match_info
        pattern: str | None = None
        if info.http_exception is None and info.route is not None:
            resource = info.route.resource
            pattern = resource.canonical if resource is not None else None
        rule = rule_for(request.method, pattern, metrics_public=metrics_public)
        bucket = info.get("bucket") or (request.query.get("bucket") or None)
        operation = f"{request.method} {pattern}" if pattern else "unmatched"
        return Target(rule.action.value, operation, bucket, info.get("key"))

    return describe


def rfc3339(ts: float) -> str:
    """Unix seconds -> ``2026-12-07T06:07:57.123Z`` (UTC, milliseconds)."""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def error_code(response: web.StreamResponse) -> str | None:
    """The error code of an error answer built whole (native JSON ``error.code`` or S3 XML
    ``<Code>``); None for a success, a streamed answer or another body."""
    if response.status < 400 or not isinstance(response, web.Response):
        return None
    body = response.body
    if not isinstance(body, bytes | bytearray) or len(body) > 64 * 1024:
        return None
    if body[:1] == b"{":
        try:
            code = json.loads(body)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None
        return code if isinstance(code, str) else None
    match = _S3_CODE.search(body)
    return match.group(1).decode("utf-8", "replace") if match else None


def is_refusal(status: int, code: str | None) -> bool:
    """True for a refusal by access control: 401, 403, 429, or 503 ``overloaded`` /
    ``slow_down`` / ``SlowDown``."""
    return status in REFUSAL_STATUSES or (status == 503 and code in REFUSAL_503_CODES)


def should_record(method: str, status: int, code: str | None) -> bool:
    """True when a request goes to the audit log: mutating, or refused."""
    return method.upper() in MUTATING_METHODS or is_refusal(status, code)


def audit_entry(
    request: web.BaseRequest,
    *,
    api: str,
    status: int,
    code: str | None,
    target: Target,
    now: float,
) -> dict[str, Any]:
    """The audit line of ``request`` answered ``status`` (module docstring). Pure but
    for the request id, which is assigned on first use."""
    principal = request.get(PRINCIPAL_KEY)
    query = {name: request.query[name] for name in QUERY_KEPT if name in request.query}
    result = "ok" if status < 400 else ("refused" if is_refusal(status, code) else "error")
    return {
        "time": rfc3339(now),
        "api": api,
        "request_id": request_id(request),
        "principal": principal.name if principal is not None else ANONYMOUS,
        "remote": request.remote,
        "action": target.action,
        "operation": target.operation,
        "method": request.method,
        "path": request.path,
        "query": query,
        "bucket": target.bucket,
        "key": target.key,
        "status": status,
        "result": result,
        "code": code,
        "bytes": _body_bytes(request),
    }


def _body_bytes(request: web.BaseRequest) -> int:
    """``Content-Length``, else the body bytes received so far (a chunked body)."""
    declared = request.content_length
    if declared is not None:
        return declared
    return int(getattr(request.content, "total_bytes", 0) or 0)


class AuditLog:
    """The audit log file of one peer (module docstring). ``path``: the file (its
    directory must exist); ``max_bytes``: rotate at this size, bytes; ``backups``:
    rotated files kept. Raises ConfigError when the file cannot be opened. Call
    :meth:`close` when done (it writes what is queued)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        backups: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self._file = logging.handlers.RotatingFileHandler(
                path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
            )
        except OSError as exc:
            raise ConfigError(f"audit_log_file: cannot open {path}: {exc.strerror}") from None
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self.path = Path(path)
        self.clock = clock
        self.written = 0
        """Lines handed to the writer so far."""
        lines: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._listener = logging.handlers.QueueListener(lines, self._file)
        self._logger = logging.Logger("dfspeer.audit")  # outside the logging tree
        self._logger.propagate = False
        self._logger.addHandler(logging.handlers.QueueHandler(lines))
        self._listener.start()
        self._closed = False

    @classmethod
    def from_config(cls, config: PeerConfig) -> AuditLog | None:
        """The audit log ``config`` asks for (None without ``audit_log_file``)."""
        if config.audit_log_file is None:
            return None
        return cls(
            config.audit_log_file,
            max_bytes=config.audit_log_max_bytes,
            backups=config.audit_log_backups,
        )

    def write(self, entry: Mapping[str, Any]) -> None:
        """Queue one line (``entry`` as compact JSON); dropped once closed."""
        if self._closed:
            return
        self._logger.info("%s", json.dumps(entry, separators=(",", ":"), ensure_ascii=False))
        self.written += 1

    def record(
        self,
        request: web.Request,
        api: str,
        describe: Describe,
        status: int,
        code: str | None,
    ) -> None:
        """Write ``request``'s line if :func:`should_record` says so (never raises for a
        request it cannot describe: those parts are left empty)."""
        if request.path.startswith(INTERNAL_PREFIX) or not should_record(
            request.method, status, code
        ):
            return
        try:
            target = describe(request)
        except Exception:  # a describe bug must not cost the line
            target = Target("", "")
        self.write(
            audit_entry(request, api=api, status=status, code=code, target=target, now=self.clock())
        )

    def middleware(self, api: str, describe: Describe) -> Middleware:
        """The aiohttp middleware recording ``api``'s requests; put it outside the error
        renderer, so it sees the status that is sent."""

        @web.middleware
        async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
            request[_SEEN_KEY] = True
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # a redirect, or an error nobody rendered
                self.record(request, api, describe, exc.status, None)
                raise
            except asyncio.CancelledError:  # the client went away (or the peer stops)
                self.record(request, api, describe, CLIENT_CLOSED, "client_closed")
                raise
            self.record(request, api, describe, response.status, error_code(response))
            return response

        return audit

    def install(self, app: web.Application, api: str, describe: Describe) -> None:
        """Record the answers ``app`` gives before its middlewares run (a refused
        ``Expect: 100-continue``); with :meth:`middleware` in its stack, every request."""

        async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
            if _SEEN_KEY not in request:
                self.record(request, api, describe, response.status, error_code(response))

        app.on_response_prepare.append(on_prepare)

    async def aclose(self) -> None:
        """:meth:`close` off the event loop (it joins the writer thread)."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Write every queued line and close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._file.close()
