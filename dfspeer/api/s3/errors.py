"""S3 errors and the one mapping from :class:`~dfspeer.errors.DfsError` to S3's XML error.

Handlers raise :class:`DfsError` s: the objects layer's own (``no_such_key``, ...) or the
S3-only ones below (:class:`S3Error`, which carry their S3 code). :func:`s3_code` is the one
place that turns either into S3's ``(Code, HTTP status)``; :func:`render` builds the body::

    <Error><Code>NoSuchKey</Code><Message>...</Message><Resource>/b/k</Resource>
           <RequestId>...</RequestId></Error>

Codes and statuses follow the Amazon S3 API reference ("Error responses").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

from dfspeer.api.s3 import xml
from dfspeer.errors import DfsError, RpcError

log = logging.getLogger("dfspeer.api.s3")

REQUEST_ID_HEADER = "x-amz-request-id"


class S3Error(DfsError):
    """An error only S3 has: ``s3code`` is its S3 ``Code`` (``SignatureDoesNotMatch``),
    ``status`` its HTTP status; ``code`` (the native form) is ``s3:<s3code>``."""

    def __init__(self, s3code: str, status: int, message: str) -> None:
        super().__init__(message, code=f"s3:{s3code}", status=status)
        self.s3code = s3code


def access_denied(message: str = "Access Denied") -> S3Error:
    return S3Error("AccessDenied", 403, message)


def not_implemented(what: str) -> S3Error:
    return S3Error("NotImplemented", 501, f"{what} is not implemented by this server")


def invalid_argument(message: str) -> S3Error:
    return S3Error("InvalidArgument", 400, message)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", 400, message)


def malformed_xml(message: str = "The XML you provided was not well-formed") -> S3Error:
    return S3Error("MalformedXML", 400, message)


# native DfsError.code -> (S3 Code, HTTP status)
_BY_CODE: Mapping[str, tuple[str, int]] = {
    "invalid_argument": ("InvalidArgument", 400),
    "invalid_bucket_name": ("InvalidBucketName", 400),
    "invalid_key": ("KeyTooLongError", 400),
    "bad_digest": ("BadDigest", 400),
    "incomplete_body": ("IncompleteBody", 400),
    "entity_too_large": ("EntityTooLarge", 400),
    "no_such_key": ("NoSuchKey", 404),
    "no_such_version": ("NoSuchVersion", 404),
    "no_such_bucket": ("NoSuchBucket", 404),
    "bucket_not_empty": ("BucketNotEmpty", 409),
    "invalid_range": ("InvalidRange", 416),
    "no_such_upload": ("NoSuchUpload", 404),
    "upload_not_open": ("NoSuchUpload", 404),
    "incomplete_upload": ("InvalidPart", 400),
    "invalid_chunk_size": ("EntityTooSmall", 400),
    "invalid_part": ("InvalidPart", 400),
    "invalid_part_order": ("InvalidPartOrder", 400),
    "entity_too_small": ("EntityTooSmall", 400),
    "too_many_uploads": ("SlowDown", 503),
    "slow_down": ("SlowDown", 503),  # a rate limit (dfspeer.access.limits)
    "overloaded": ("SlowDown", 503),  # max_inflight_requests
    "unauthenticated": ("AccessDenied", 403),
    "access_denied": ("AccessDenied", 403),
    "not_ready": ("ServiceUnavailable", 503),
    "insufficient_replicas": ("ServiceUnavailable", 503),
    "data_unavailable": ("ServiceUnavailable", 503),
    "insufficient_storage": ("ServiceUnavailable", 503),
}


def s3_code(exc: DfsError) -> tuple[str, int]:
    """``(S3 Code, HTTP status)`` of ``exc``: an :class:`S3Error`'s own, a mapped native
    code, else ``InternalError`` 500 (an :class:`RpcError` is never relayed)."""
    if isinstance(exc, S3Error):
        return exc.s3code, exc.status
    if isinstance(exc, RpcError):
        return "InternalError", 500
    return _BY_CODE.get(exc.code, ("InternalError", 500))


def render(
    request: web.BaseRequest,
    exc: DfsError,
    request_id: str,
    *,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """The S3 XML error answer of ``exc`` (with ``x-amz-request-id``); a HEAD answer has
    no body. 5xx are logged at warning, 4xx at debug; an internal error's detail is logged,
    never shown."""
    code, status = s3_code(exc)
    message = exc.message if status < 500 or code != "InternalError" else "internal error"
    level = logging.WARNING if status >= 500 else logging.DEBUG
    log.log(
        level,
        "s3 request failed id=%s method=%s path=%s status=%d code=%s: %s",
        request_id,
        request.method,
        request.path,
        status,
        code,
        exc.message,
    )
    out = dict(headers or {})
    out[REQUEST_ID_HEADER] = request_id
    if status == 503:
        out.setdefault("Retry-After", str(int(exc.retry_after_s or 1)))
    if request.method == "HEAD":
        return web.Response(status=status, headers=out)
    if code == "SlowDown":
        message = f"Please reduce your request rate. {message}"
    body = xml.error_document(code, message, request.path, request_id)
    return web.Response(status=status, body=body, content_type="application/xml", headers=out)
