"""Errors that cross rooms and leave the HTTP API as one JSON shape.

Every :class:`DfsError` carries a stable machine ``code`` (a contract: clients match on
it), the HTTP ``status`` it maps to, and a human message. The API renders it as
``{"error": {"code": ..., "message": ..., "request_id": ...}}``.
"""

from __future__ import annotations


class DfsError(Exception):
    """Base of every error a client can see. ``code`` and ``status`` are class defaults."""

    code: str = "internal_error"
    status: int = 500

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status


class InvalidArgument(DfsError):
    """A malformed request parameter (400)."""

    code, status = "invalid_argument", 400


class InvalidBucketName(DfsError):
    """The bucket name breaks S3's naming rules (400)."""

    code, status = "invalid_bucket_name", 400


class InvalidKey(DfsError):
    """The object key is empty, longer than 1024 bytes of UTF-8, or not valid text (400)."""

    code, status = "invalid_key", 400


class BadDigest(DfsError):
    """The body does not hash to the client's ``X-Content-SHA256`` (400)."""

    code, status = "bad_digest", 400


class IncompleteBody(DfsError):
    """The body ended before its ``Content-Length`` (400)."""

    code, status = "incomplete_body", 400


class EntityTooLarge(DfsError):
    """The object is larger than ``max_object_size_bytes`` (413)."""

    code, status = "entity_too_large", 413


class NoSuchKey(DfsError):
    """No live version of the object exists (404)."""

    code, status = "no_such_key", 404


class InvalidRange(DfsError):
    """The ``Range`` cannot be satisfied for the object's size (416)."""

    code, status = "invalid_range", 416


class Unauthorized(DfsError):
    """A peer RPC without a valid cluster-key proof (401)."""

    code, status = "unauthorized", 401


class InsufficientReplicas(DfsError):
    """Fewer than W (writes) or R (reads) replicas could be reached (503)."""

    code, status = "insufficient_replicas", 503


class NotReady(DfsError):
    """The peer has not joined the cluster yet (503)."""

    code, status = "not_ready", 503


class DataUnavailable(DfsError):
    """No replica could return a verified copy of a chunk (503)."""

    code, status = "data_unavailable", 503
