"""Errors of :class:`dfspeer.client.Client`: an error answer's :class:`DfsError`, and what
network trouble becomes (:class:`PeerUnreachable`, ``incomplete_transfer``)."""

from __future__ import annotations

import errno
import json
from typing import Any

import aiohttp

from dfspeer import errors, tls
from dfspeer.errors import DfsError

_CODE_FOR_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "access_denied",
    404: "no_such_key",
    413: "entity_too_large",
    416: "invalid_range",
    429: "slow_down",
    503: "unavailable",
}


class PeerUnreachable(DfsError):
    """The peer could not be reached (connection refused, DNS failure, timeout).

    ``url`` is the peer's base URL and ``reason`` a short phrase such as
    ``"connection refused"``.
    """

    code, status = "peer_unreachable", 503

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


def _error_classes() -> dict[str, type[DfsError]]:
    found: dict[str, type[DfsError]] = {}
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, DfsError) and obj is not DfsError:
            found[obj.code] = obj
    return found


_ERROR_CLASSES = _error_classes()


def error_from_response(status: int, body: bytes, reason: str = "") -> DfsError:
    """Build the :class:`DfsError` for a non-2xx answer.

    ``body`` is the raw response body; when it is the API's JSON error shape its code and
    message are used, otherwise (e.g. an answer to ``HEAD``) the code is derived from the
    HTTP status (404 -> ``no_such_key``, 503 -> ``unavailable``, ...).
    """
    code = _CODE_FOR_STATUS.get(status, "internal_error" if status >= 500 else "http_error")
    message = reason or f"HTTP {status}"
    try:
        doc = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        doc = None
        text = body[:200].decode("utf-8", "replace").strip()
        message = text or message
    details: dict[str, Any] = {}
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
        details = {k: v for k, v in err.items() if k not in ("code", "message", "request_id")}
    cls = _ERROR_CLASSES.get(code, DfsError)
    exc = cls(message, code=code, status=status)
    if details:
        exc.details = details
    return exc


# What aiohttp raises for network trouble (connection errors are ClientOSError, so a
# local file's OSError, e.g. a broken stdout pipe, is not mistaken for one).
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def _transport_error(url: str, exc: BaseException) -> DfsError:
    """A body that broke off -> ``incomplete_transfer`` (502); else :class:`PeerUnreachable`."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return DfsError(
            f"transfer from {url} broke off: {exc}", code="incomplete_transfer", status=502
        )
    text = str(exc).lower()
    os_error = getattr(exc, "os_error", exc)
    refused = getattr(os_error, "errno", None) == errno.ECONNREFUSED
    if refused or isinstance(os_error, ConnectionRefusedError) or "refused" in text:
        reason = "connection refused"
    elif isinstance(exc, TimeoutError):
        reason = "timed out"
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        reason = (
            f"its TLS certificate is not trusted ({exc.certificate_error}); give the CA "
            f"certificate with ca_file, --ca-file or ${tls.CA_FILE_ENV}"
        )
    elif isinstance(exc, aiohttp.ClientSSLError):
        reason = f"TLS handshake failed ({os_error}); does the peer serve HTTPS on this port?"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "server disconnected"
        if url.startswith("http://"):
            reason += " (if the peer serves HTTPS, use an https:// URL)"
    else:
        reason = str(exc) or type(exc).__name__
    return PeerUnreachable(url, reason)
