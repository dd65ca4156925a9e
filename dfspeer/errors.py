"""Errors that cross rooms and leave the HTTP API as one JSON shape.

Every :class:`DfsError` carries a stable machine ``code`` (a contract: clients match on
it), the HTTP ``status`` it maps to, and a human message. The API renders it as
``{"error": {"code": ..., "message": ..., "request_id": ...}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DfsError(Exception):
    """Base of every error a client can see. ``code`` and ``status`` are class defaults."""

    code: str = "internal_error"
    status: int = 500

    details: Mapping[str, Any] = {}
    """Extra fields of the JSON error object (e.g. ``missing`` chunk indices)."""

    retry_after_s: float | None = None
    """Seconds the server asked the client to wait before retrying (its ``Retry-After``
    header, set by :class:`dfspeer.Client` on errors it read from an answer), else None."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if details is not None:
            self.details = dict(details)
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


class NoSuchVersion(DfsError):
    """The object has no such version (404)."""

    code, status = "no_such_version", 404


class NoSuchBucket(DfsError):
    """The bucket does not exist (404)."""

    code, status = "no_such_bucket", 404


class BucketNotEmpty(DfsError):
    """The bucket still holds object versions or delete markers (409)."""

    code, status = "bucket_not_empty", 409


class InvalidRange(DfsError):
    """The ``Range`` cannot be satisfied for the object's size (416)."""

    code, status = "invalid_range", 416


class Unauthorized(DfsError):
    """A peer RPC without a valid cluster-key proof (401)."""

    code, status = "unauthorized", 401


class Unauthenticated(DfsError):
    """A public API request without a valid credential: none, malformed, unknown, wrong
    secret or a disabled access key (401). See :mod:`dfspeer.access`."""

    code, status = "unauthenticated", 401


class AccessDenied(DfsError):
    """A valid principal that may not do this (403): a key without the bucket permission,
    or an admin-only route. See :mod:`dfspeer.access`."""

    code, status = "access_denied", 403


class NoSuchAccessKey(DfsError):
    """No live access key has this id (404)."""

    code, status = "no_such_access_key", 404


class NoSuchMember(DfsError):
    """No cluster member has this id in the answering peer's view (404)."""

    code, status = "no_such_member", 404


class MemberAlive(DfsError):
    """The member is alive or suspect, so it cannot be removed; stop it first (409)."""

    code, status = "member_alive", 409


class InsufficientReplicas(DfsError):
    """Fewer than W (writes) or R (reads) replicas could be reached (503)."""

    code, status = "insufficient_replicas", 503


class NotReady(DfsError):
    """The peer has not joined the cluster yet (503)."""

    code, status = "not_ready", 503


class DataUnavailable(DfsError):
    """No replica could return a verified copy of a chunk (503)."""

    code, status = "data_unavailable", 503


class InsufficientStorage(DfsError):
    """A write failed because replicas have no space left (507): a block store's LMDB map
    (``map_size_bytes``) or the disk under it is full. Nothing was written; reads and
    deletes keep working. Raised by the replicator when full stores alone made the write
    quorum impossible (see :meth:`dfspeer.cluster.replication.Replicator._insufficient`);
    a local :class:`dfspeer.blockstore.StoreFull` is one too."""

    code, status = "insufficient_storage", 507


class RpcError(DfsError):
    """A call to another peer's ``/internal/`` API failed (:mod:`dfspeer.cluster.rpc`).

    When the peer answered an error, ``status`` and ``code`` are its answer's (e.g. 401
    ``unauthorized``, 404 ``no_such_table``, 500 ``corrupt_block``, 507 ``store_full``);
    otherwise (an unsigned, malformed or oversized answer) they are 502 ``peer_error``.
    Internal: a coordinator folds peer failures into a quorum outcome, and the public API
    never relays one as is (one that escapes is rendered 500 ``internal_error``, see
    :func:`dfspeer.api.middleware.render_dfs_error`).
    """

    code, status = "peer_error", 502

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message, code=code, status=status)


class PeerUnreachable(RpcError):
    """No answer from a peer (503 ``peer_unreachable``): connection refused or reset, DNS,
    timeout, or no address known for it. Internal like every :class:`RpcError`: the public
    API never sends this code (``dfspeer.Client`` raises its own when it cannot reach a
    peer)."""

    code, status = "peer_unreachable", 503


class NoSuchUpload(DfsError):
    """No resumable upload session has this id (404)."""

    code, status = "no_such_upload", 404


class UploadNotOpen(DfsError):
    """The upload session is completed, aborted or expired (409)."""

    code, status = "upload_not_open", 409


class IncompleteUpload(DfsError):
    """Chunks are missing; ``details["missing"]`` lists their indices (409)."""

    code, status = "incomplete_upload", 409


class InvalidChunkSize(DfsError):
    """A chunk is not the session's chunk size (only the last may be shorter) (400)."""

    code, status = "invalid_chunk_size", 400


class IdempotencyConflict(DfsError):
    """An ``Idempotency-Key`` reused with a different request body (409)."""

    code, status = "idempotency_conflict", 409


class TooManyUploads(DfsError):
    """The bucket already has ``max_open_uploads`` open upload sessions (409)."""

    code, status = "too_many_uploads", 409


class SlowDown(DfsError):
    """The principal is over its request or upload byte rate (``rate_limit_requests_per_s``,
    ``rate_limit_bytes_per_s``) (429); ``Retry-After`` says when a token is available. Sent
    before the body is read: nothing changed. See :mod:`dfspeer.access.limits`."""

    code, status = "slow_down", 429


class Overloaded(DfsError):
    """The peer already handles ``max_inflight_requests`` requests (503, ``Retry-After``).
    Sent before the body is read: nothing changed. See :mod:`dfspeer.access.limits`."""

    code, status = "overloaded", 503
