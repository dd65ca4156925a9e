"""Async HTTP client for a remote dfspeer peer (its public ``/v1`` API).

``Client(base_url)`` wraps one :class:`aiohttp.ClientSession`. Uploads stream from bytes, a
file path or an async iterable without reading a file whole; downloads stream into a file.
Every error the server renders as ``{"error": {"code", "message", "request_id"}}`` comes back
as a :class:`dfspeer.errors.DfsError` (the matching subclass when the code is known, e.g.
:class:`~dfspeer.errors.NoSuchKey`) carrying the server's ``code``, ``status`` and message.
A peer that cannot be reached raises :class:`PeerUnreachable`.

Byte ranges are ``(start, end)`` half-open, like Python slices: ``(0, 10)`` is the first ten
bytes, ``(100, None)`` everything from byte 100, and ``(-n, None)`` the last ``n`` bytes.

Buckets and versions come back as the server's JSON, typed: :class:`BucketJson`,
:class:`BucketUsageJson`, :class:`VersionJson`, :class:`VersionPageJson`; resumable upload
sessions as :class:`UploadJson` and :class:`ChunkJson`. :meth:`Client.upload_file` uploads a
file through a session and resumes it after a crash (state in :mod:`dfspeer.resume_state`).
An error answer's extra fields (e.g. ``missing`` of ``incomplete_upload``) are in the
raised error's ``details``.

Retries: a request answered ``503`` with a ``Retry-After`` header (a peer not ready,
stopping or ``overloaded``, too few replicas reachable: transient by the server's own word)
or ``429 slow_down`` with ``Retry-After`` (over the principal's rate limit) is sent again,
up to ``max_attempts`` times in all, if it is idempotent and its body can be sent again:
``GET``, ``HEAD``, ``DELETE``, and ``PUT`` of bytes, a file path or JSON (never an async
iterable, never ``POST``). Before attempt ``k + 1`` it waits ``max(Retry-After,
retry_backoff_s * 2**(k-1))`` seconds plus up to 25 % jitter, at most ``retry_max_delay_s``.
:attr:`Client.retries` counts the retries; an error finally raised carries the last
``Retry-After`` (seconds) in ``retry_after_s``. A peer that cannot be reached is not retried.

The code lives in single-purpose modules, all re-exported here: :mod:`~dfspeer.client.wire`
(ranges, headers, bodies, credentials), :mod:`~dfspeer.client.errors`,
:mod:`~dfspeer.client.transport` (session, TLS, retries), and one mixin per area of the API:
:mod:`~dfspeer.client.objects`, :mod:`~dfspeer.client.buckets`,
:mod:`~dfspeer.client.sessions` (upload sessions), :mod:`~dfspeer.client.uploads`
(:meth:`Client.upload_file`), :mod:`~dfspeer.client.admin` (cluster and access).
"""

from __future__ import annotations

from dfspeer.client.admin import AdminMixin
from dfspeer.client.buckets import BucketJson, BucketsMixin, BucketUsageJson
from dfspeer.client.errors import TRANSPORT_ERRORS, PeerUnreachable, error_from_response
from dfspeer.client.objects import ObjectsMixin, VersionJson, VersionPageJson
from dfspeer.client.sessions import OPEN_UPLOAD_STATES, ChunkJson, UploadJson
from dfspeer.client.transport import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_RETRY_BACKOFF_S,
    DEFAULT_RETRY_MAX_DELAY_S,
    RETRY_METHODS,
    RETRY_STATUSES,
    parse_retry_after,
)
from dfspeer.client.uploads import (
    CHUNK_RETRIES,
    CHUNK_RETRY_DELAY_S,
    DEFAULT_SESSION_CHUNK_BYTES,
    MAX_SESSION_CHUNKS,
    UploadProgress,
    UploadsMixin,
    UploadStats,
)
from dfspeer.client.wire import (
    META_HEADER_PREFIX,
    READ_PIECE_BYTES,
    SHA256_HEADER,
    VERSION_HEADER,
    ByteRange,
    Progress,
    auth_headers,
    meta_from_headers,
    range_header,
    sha256_file,
)

__all__ = [
    "CHUNK_RETRIES",
    "CHUNK_RETRY_DELAY_S",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_RETRY_BACKOFF_S",
    "DEFAULT_RETRY_MAX_DELAY_S",
    "DEFAULT_SESSION_CHUNK_BYTES",
    "MAX_SESSION_CHUNKS",
    "META_HEADER_PREFIX",
    "OPEN_UPLOAD_STATES",
    "READ_PIECE_BYTES",
    "RETRY_METHODS",
    "RETRY_STATUSES",
    "SHA256_HEADER",
    "TRANSPORT_ERRORS",
    "VERSION_HEADER",
    "BucketJson",
    "BucketUsageJson",
    "ByteRange",
    "ChunkJson",
    "Client",
    "PeerUnreachable",
    "Progress",
    "UploadJson",
    "UploadProgress",
    "UploadStats",
    "VersionJson",
    "VersionPageJson",
    "auth_headers",
    "error_from_response",
    "meta_from_headers",
    "parse_retry_after",
    "range_header",
    "sha256_file",
]


class Client(ObjectsMixin, BucketsMixin, UploadsMixin, AdminMixin):
    """Async client of one peer's public HTTP API; use as ``async with Client(url) as c``.

    ``timeout_s`` bounds connecting and every wait for data on the socket (not the whole
    transfer, so a multi-GiB upload is not cut off).

    Credentials (sent as ``Authorization: Bearer ...`` on every request): ``credentials``
    (an access key, ``"ID.SECRET"``) or ``token`` (the admin token, or a JWT acting as the
    access key of its ``sub`` on a peer configured for JWTs); with neither, the
    ``DFSPEER_KEY`` or else ``DFSPEER_ADMIN_TOKEN`` environment variable, else none.
    Raises ValueError for both at once or a malformed value.

    TLS: an ``https://`` URL is verified (chain and host name) against the PEM CA
    certificates of ``ca_file``, else of ``$DFSPEER_CA_FILE``, else the system's CAs;
    raises :class:`~dfspeer.config.ConfigError` (a ValueError) when that file cannot be
    loaded. A server that is not trusted raises :class:`PeerUnreachable` saying so.

    Retries (see the module docstring): ``max_attempts`` (>= 1; 1: never retry),
    ``retry_backoff_s`` and ``retry_max_delay_s`` (seconds) shape the retries of a 503 or 429
    with ``Retry-After``; ``rng`` draws their jitter. :attr:`retries` counts the requests sent
    again so far.
    """

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
