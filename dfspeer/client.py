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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import hashlib
import json
import math
import os
import random
import secrets
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, BinaryIO, TypedDict, cast
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from dfspeer import errors, tls
from dfspeer.errors import DfsError
from dfspeer.resume_state import FileIdentity, ResumeStore, new_state

ByteRange = tuple[int, int | None]
Progress = Callable[[int], None]

READ_PIECE_BYTES = 1024 * 1024
RETRY_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT"})  # idempotent: safe to resend
RETRY_STATUSES = frozenset({429, 503})  # with Retry-After: slow_down, overloaded, not_ready...
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BACKOFF_S = 0.25
DEFAULT_RETRY_MAX_DELAY_S = 5.0
SHA256_HEADER = "X-Content-SHA256"
VERSION_HEADER = "X-Object-Version"
META_HEADER_PREFIX = "X-Meta-"


class BucketJson(TypedDict):
    """A bucket: ``created`` in unix seconds; ``versioning``: ``unversioned`` |
    ``enabled`` | ``suspended``."""

    name: str
    created: float
    versioning: str


class BucketUsageJson(BucketJson):
    """A bucket with ``objects`` (live objects) and ``bytes`` (their logical size)."""

    objects: int
    bytes: int


class VersionJson(TypedDict):
    """One version of a key (a delete marker has size 0 and sha256 ""); ``modified`` in
    unix seconds; ``is_latest`` marks the key's newest version."""

    key: str
    version: str
    size: int
    sha256: str
    modified: float
    is_latest: bool
    delete_marker: bool


class VersionPageJson(TypedDict):
    """One page of a bucket's versions listing, keys in order, each key's versions newest
    first; pass ``next_start_after`` back as ``start_after`` while ``is_truncated``."""

    versions: list[VersionJson]
    is_truncated: bool
    next_start_after: str | None


class UploadJson(TypedDict):
    """A resumable upload session as ``/v1/uploads`` shows it. ``state``: ``initiated`` |
    ``in_progress`` | ``completed`` | ``aborted`` | ``expired``; sizes in bytes
    (``size`` and ``total_chunks`` None when no size was declared); ``created`` and
    ``expires`` in unix seconds; ``received``: received chunk indices as inclusive
    ``[first, last]`` ranges; ``bytes_received``: their total size."""

    upload_id: str
    bucket: str
    key: str
    state: str
    chunk_size: int
    size: int | None
    total_chunks: int | None
    sha256: str | None
    content_type: str
    metadata: dict[str, str]
    created: float
    expires: float
    received: list[list[int]]
    bytes_received: int


class ChunkJson(TypedDict):
    """A stored chunk: its ``index`` (from 0), ``size`` (bytes) and ``sha256`` (hex)."""

    index: int
    size: int
    sha256: str


OPEN_UPLOAD_STATES = ("initiated", "in_progress")
UploadProgress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` of :meth:`Client.upload_file` (bytes)."""

CHUNK_RETRIES = 2
CHUNK_RETRY_DELAY_S = 0.5
MAX_SESSION_CHUNKS = 10_000  # the server's default ``upload_max_chunks``
DEFAULT_SESSION_CHUNK_BYTES = 2 * 1024 * 1024  # the server's default ``chunk_size_bytes``


@dataclass
class UploadStats:
    """What one :meth:`Client.upload_file` call did (sizes in bytes), filled in as it goes:
    ``upload_id`` and ``chunk_size`` of the session used, ``resumed`` when it continued a
    session started earlier, ``stored_bytes`` already on the server when the transfer
    started, ``sent_bytes`` / ``chunks_sent`` the chunk bodies this call sent (retries
    included), ``sessions`` how many sessions it used (2 when a stale one was replaced)."""

    upload_id: str = ""
    chunk_size: int = 0
    total_bytes: int = 0
    resumed: bool = False
    stored_bytes: int = 0
    sent_bytes: int = 0
    chunks_sent: int = 0
    sessions: int = 0


class _StaleSession(Exception):
    """The resumed session cannot finish this file (gone, closed, or its chunks are not
    this file's): start a new one."""


def _upload(doc: Any) -> UploadJson:
    """The :class:`UploadJson` fields of a server answer."""
    if not isinstance(doc, dict):
        doc = {}
    size = doc.get("size")
    total = doc.get("total_chunks")
    sha = doc.get("sha256")
    return {
        "upload_id": str(doc.get("upload_id", "")),
        "bucket": str(doc.get("bucket", "")),
        "key": str(doc.get("key", "")),
        "state": str(doc.get("state", "")),
        "chunk_size": int(doc.get("chunk_size", 0)),
        "size": None if size is None else int(size),
        "total_chunks": None if total is None else int(total),
        "sha256": None if sha is None else str(sha),
        "content_type": str(doc.get("content_type", "application/octet-stream")),
        "metadata": {str(k): str(v) for k, v in (doc.get("metadata") or {}).items()},
        "created": float(doc.get("created", 0.0)),
        "expires": float(doc.get("expires", 0.0)),
        "received": [[int(a), int(b)] for a, b in doc.get("received") or []],
        "bytes_received": int(doc.get("bytes_received", 0)),
    }


def _session_chunk_size(size: int, requested: int | None) -> int | None:
    """``requested``, else None (the server's default) unless the file needs more than
    the default chunk count at the default size: then a whole number of MiB that fits."""
    if requested is not None:
        return requested
    if size <= MAX_SESSION_CHUNKS * DEFAULT_SESSION_CHUNK_BYTES:
        return None
    mib = 1024 * 1024
    return -(-size // (MAX_SESSION_CHUNKS * mib)) * mib


def _read_chunk(
    f: BinaryIO, offset: int, length: int, whole: Any, want_digest: bool
) -> tuple[bytes, str]:
    """Read ``length`` bytes at ``offset``, feed them to ``whole`` (the file's running
    SHA-256) and return them with their own hex SHA-256 (``""`` unless ``want_digest``).
    Runs in a worker thread (hashlib releases the GIL on large buffers)."""
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise DfsError(
            f"{getattr(f, 'name', 'file')} changed during the upload: read {len(data)} of "
            f"{length} bytes at offset {offset}",
            code="file_changed",
            status=400,
        )
    whole.update(data)
    return data, hashlib.sha256(data).hexdigest() if want_digest else ""


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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date,
    RFC 9110 section 10.2.3); None if absent or malformed. Never negative."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _replayable(data: Any) -> bool:
    """True if a request body can be sent again as is (None, bytes, str)."""
    return data is None or isinstance(data, (bytes, bytearray, str))


def range_header(byte_range: ByteRange) -> str:
    """``Range`` header value for a half-open ``(start, end)``; see the module docstring.

    Raises :class:`ValueError` for an empty or malformed range.
    """
    start, end = byte_range
    if start < 0:
        if end is not None:
            raise ValueError("a suffix range (negative start) takes no end")
        return f"bytes={start}"  # "-n": the last n bytes
    if end is None:
        return f"bytes={start}-"
    if end <= start:
        raise ValueError(f"empty range [{start}, {end})")
    return f"bytes={start}-{end - 1}"


def sha256_file(path: Path, piece_bytes: int = READ_PIECE_BYTES) -> str:
    """Hex SHA-256 of a file, read once in ``piece_bytes`` pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(piece_bytes):
            h.update(piece)
    return h.hexdigest()


async def _file_pieces(path: Path, progress: Progress | None) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while piece := f.read(READ_PIECE_BYTES):
            if progress is not None:
                progress(len(piece))
            yield piece


async def _counted(source: AsyncIterable[bytes], progress: Progress) -> AsyncIterator[bytes]:
    async for piece in source:
        progress(len(piece))
        yield piece


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


def _version_params(version: str | None) -> dict[str, str]:
    """Query parameters selecting ``version`` (none for the live version)."""
    return {} if version is None else {"version": version}


def meta_from_headers(headers: CIMultiDict[str]) -> dict[str, str]:
    """User metadata from ``X-Meta-<name>`` response headers: ``{name lower-case: value}``."""
    prefix = META_HEADER_PREFIX.lower()
    return {
        name.lower()[len(prefix) :]: value
        for name, value in headers.items()
        if name.lower().startswith(prefix)
    }


def _bucket(doc: Any) -> BucketJson:
    """The :class:`BucketJson` fields of a server answer."""
    if not isinstance(doc, dict):
        doc = {}
    return {
        "name": str(doc.get("name", "")),
        "created": float(doc.get("created", 0.0)),
        "versioning": str(doc.get("versioning", "unversioned")),
    }


def auth_headers(*, credentials: str | None = None, token: str | None = None) -> dict[str, str]:
    """``{"Authorization": "Bearer ..."}`` for an access key ``"ID.SECRET"`` or a ``token``
    (the admin token, or a JWT naming an access key in its ``sub``); with neither, from
    ``$DFSPEER_KEY`` / ``$DFSPEER_ADMIN_TOKEN``; ``{}`` when there is none. Raises
    ValueError (both given, or a malformed value; the message never repeats it)."""
    from dfspeer.access.credentials import (
        Credential,
        KeyCredential,
        credential_from_env,
        parse_credential,
    )

    if credentials is not None and token is not None:
        raise ValueError("give credentials (an access key) or token (the admin token), not both")
    cred: Credential | None
    if credentials is not None:
        cred = parse_credential(credentials)
        if not isinstance(cred, KeyCredential):
            raise ValueError("credentials must be ID.SECRET")
    elif token is not None:
        cred = parse_credential(token)
        if isinstance(cred, KeyCredential):
            raise ValueError("token must be the admin token or a JWT (not ID.SECRET)")
    else:
        cred = credential_from_env()
    return {} if cred is None else {"Authorization": cred.header_value()}


class Client:
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

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 300.0,
        credentials: str | None = None,
        token: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S,
        retry_max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S,
        rng: random.Random | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.retry_max_delay_s = retry_max_delay_s
        self.retries = 0
        """Requests sent again after a 503 or 429 with ``Retry-After``, all requests so far."""
        self._rng = rng if rng is not None else random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._auth_headers = auth_headers(credentials=credentials, token=token)
        ca = tls.client_ca_file(ca_file)
        self._ssl: ssl.SSLContext | None = tls.client_context(ca) if ca is not None else None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=min(self.timeout_s, 10.0), sock_read=self.timeout_s
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl or True),
                timeout=timeout,
                auto_decompress=False,
                headers=self._auth_headers,
            )
        return self._session

    def object_url(self, bucket: str, key: str | None = None) -> str:
        """Absolute URL of ``/v1/objects/{bucket}[/{key}]`` with the key percent-encoded."""
        url = f"{self.base_url}/v1/objects/{quote(bucket, safe='')}"
        if key is not None:
            url += "/" + quote(key, safe="/")
        return url

    # ------------------------------------------------------------------ plumbing
    def retry_delay(
        self,
        method: str,
        status: int,
        retry_after: str | None,
        attempt: int,
        *,
        replayable: bool = True,
    ) -> float | None:
        """Seconds to wait before sending attempt ``attempt + 1`` of a request whose
        attempt ``attempt`` (from 1) got ``status`` with ``Retry-After: retry_after``;
        None: do not retry (not a 503 or 429 with ``Retry-After``, not idempotent, a body
        that cannot be sent again, or no attempt left)."""
        if status not in RETRY_STATUSES or not replayable or method.upper() not in RETRY_METHODS:
            return None
        after = parse_retry_after(retry_after)
        if after is None or attempt >= self.max_attempts:
            return None
        delay = max(after, self.retry_backoff_s * 2.0 ** (attempt - 1))
        delay += self._rng.uniform(0.0, delay / 4)  # jitter: clients do not retry in step
        return min(delay, self.retry_max_delay_s)

    @contextlib.asynccontextmanager
    async def _respond(
        self,
        method: str,
        url: str,
        *,
        body: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The (2xx/3xx) response to ``method url``, retried on 503/429 + ``Retry-After`` (see
        :meth:`retry_delay`). ``body()`` makes a fresh body for every attempt (a file's
        pieces); a ``data`` keyword is resent as is if it is bytes or text, else the request
        is not retried. An error answer raises its :class:`DfsError` (``retry_after_s``
        set). Transport errors propagate as aiohttp raises them (callers map them)."""
        replayable = _replayable(kwargs.get("data"))
        attempt = 1
        while True:
            if body is not None:
                kwargs["data"] = body()
            async with self._http().request(method, url, **kwargs) as resp:
                if resp.status < 400:
                    yield resp
                    return
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                delay = self.retry_delay(
                    method, resp.status, retry_after, attempt, replayable=replayable
                )
                if delay is None:
                    exc = error_from_response(resp.status, raw, resp.reason or "")
                    exc.retry_after_s = parse_retry_after(retry_after)
                    raise exc
            self.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        expect_json: bool = True,
        body: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> tuple[int, CIMultiDict[str], Any]:
        """One request, retried as :meth:`_respond` says; returns (status, headers, decoded
        JSON or raw bytes). Raises DfsError."""
        try:
            async with self._respond(method, url, body=body, **kwargs) as resp:
                raw = await resp.read()
                headers = CIMultiDict(resp.headers)
                if expect_json and raw:
                    return resp.status, headers, await resp.json(content_type=None)
                return resp.status, headers, raw
        except TRANSPORT_ERRORS as exc:
            raise _transport_error(self.base_url, exc) from exc

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        _, _, doc = await self._request("GET", self.base_url + path, params=params)
        return doc if isinstance(doc, dict) else {}

    def bucket_url(self, bucket: str | None = None) -> str:
        """Absolute URL of ``/v1/buckets[/{bucket}]``."""
        url = f"{self.base_url}/v1/buckets"
        return url if bucket is None else f"{url}/{quote(bucket, safe='')}"

    # ------------------------------------------------------------------ objects
    async def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes | Path | AsyncIterable[bytes],
        *,
        sha256: str | None = None,
        progress: Progress | None = None,
        content_type: str | None = None,
        meta: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Upload ``data`` as ``bucket/key``; returns the server's 201 JSON
        (``bucket, key, version, size, sha256, chunks``).

        A :class:`~pathlib.Path` is streamed in 1 MiB pieces with a ``Content-Length``; an
        async iterable goes out with ``Transfer-Encoding: chunked`` and, being one-shot, is
        never retried (bytes and paths are, on 503/429 + ``Retry-After``). ``sha256`` (hex) is
        sent as ``X-Content-SHA256`` so the server rejects a corrupted body (``bad_digest``).
        ``progress(n)`` is called with each piece's size as it is handed to the socket.
        ``meta``: user metadata, sent as ``X-Meta-<name>`` headers (names are stored
        lower-case; at most 2 KiB in all, else ``invalid_argument``).
        """
        headers = {"Content-Type": content_type or "application/octet-stream"}
        if sha256 is not None:
            headers[SHA256_HEADER] = sha256
        for name, value in (meta or {}).items():
            headers[META_HEADER_PREFIX + name] = value
        url = self.object_url(bucket, key)
        if isinstance(data, (bytes, bytearray, memoryview)):
            payload = bytes(data)
            if progress is not None:
                progress(len(payload))
            _, _, doc = await self._request("PUT", url, data=payload, headers=headers)
        elif isinstance(data, Path):
            path = data
            headers["Content-Length"] = str(os.path.getsize(path))
            _, _, doc = await self._request(
                "PUT", url, body=lambda: _file_pieces(path, progress), headers=headers
            )
        else:  # a one-shot stream: sent once, never retried
            stream = data if progress is None else _counted(data, progress)
            _, _, doc = await self._request("PUT", url, data=stream, headers=headers)
        return doc if isinstance(doc, dict) else {}

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        range: ByteRange | None = None,
        version: str | None = None,
    ) -> bytes:
        """The object's bytes (or the ``range`` slice), read into memory; ``version``: read
        that version instead of the live one (``no_such_version`` if it does not exist)."""
        headers = {"Range": range_header(range)} if range is not None else {}
        _, _, body = await self._request(
            "GET",
            self.object_url(bucket, key),
            headers=headers,
            params=_version_params(version),
            expect_json=False,
        )
        assert isinstance(body, bytes)
        return body

    async def download(
        self,
        bucket: str,
        key: str,
        dest: Path | IO[bytes],
        *,
        range: ByteRange | None = None,
        progress: Progress | None = None,
        total: Callable[[int], None] | None = None,
        version: str | None = None,
    ) -> dict[str, Any]:
        """Stream the object (or ``range``) into ``dest``, a path or a binary file object;
        ``version``: that version instead of the live one.

        A path is written to ``<dest>.part`` and renamed into place only when complete.
        ``total(n)`` is called once with the body length when known, ``progress(n)`` per
        piece. A whole-object download is checked against the ``ETag`` (the SHA-256) and a
        mismatch raises ``DfsError(code="bad_digest")``. Returns ``{"bytes", "sha256",
        "status", "etag", "content_range"}``.
        """
        headers = {"Range": range_header(range)} if range is not None else {}
        if isinstance(dest, Path):
            part = dest.with_name(dest.name + ".part")
            try:
                with open(part, "wb") as f:
                    info = await self._stream_to(bucket, key, f, headers, progress, total, version)
                os.replace(part, dest)
            finally:
                part.unlink(missing_ok=True)
            return info
        return await self._stream_to(bucket, key, dest, headers, progress, total, version)

    async def _stream_to(
        self,
        bucket: str,
        key: str,
        out: IO[bytes],
        headers: dict[str, str],
        progress: Progress | None,
        total: Callable[[int], None] | None,
        version: str | None = None,
    ) -> dict[str, Any]:
        h = hashlib.sha256()
        written = 0
        url = self.object_url(bucket, key)
        try:
            async with self._respond(
                "GET", url, headers=headers, params=_version_params(version)
            ) as resp:
                if total is not None and resp.content_length is not None:
                    total(resp.content_length)
                async for piece in resp.content.iter_chunked(READ_PIECE_BYTES):
                    out.write(piece)
                    h.update(piece)
                    written += len(piece)
                    if progress is not None:
                        progress(len(piece))
                etag = resp.headers.get("ETag", "").strip('"')
                status = resp.status
                content_range = resp.headers.get("Content-Range")
        except TRANSPORT_ERRORS as exc:
            raise _transport_error(self.base_url, exc) from exc
        digest = h.hexdigest()
        if status == 200 and etag and len(etag) == 64 and etag != digest:
            raise DfsError(
                f"downloaded {bucket}/{key} hashes to {digest}, server said {etag}",
                code="bad_digest",
                status=502,
            )
        return {
            "bytes": written,
            "sha256": digest,
            "status": status,
            "etag": etag,
            "content_range": content_range,
        }

    async def stat_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> dict[str, Any]:
        """``HEAD`` the object (or its ``version``): ``{"bucket", "key", "size", "sha256",
        "modified", "content_type", "version", "meta"}`` (``version`` None if the server
        does not send it; ``meta`` the ``X-Meta-*`` headers, names lower-case). Raises
        NoSuchKey, or NoSuchVersion when ``version`` is given and not found."""
        try:
            _, headers, _ = await self._request(
                "HEAD",
                self.object_url(bucket, key),
                params=_version_params(version),
                expect_json=False,
            )
        except errors.NoSuchKey as exc:
            if version is None:
                raise
            # a HEAD answer has no body: its 404 only says "not found"
            raise errors.NoSuchVersion(f"{bucket}/{key} has no version {version}") from exc
        modified: float | None = None
        if "Last-Modified" in headers:
            try:
                modified = parsedate_to_datetime(headers["Last-Modified"]).timestamp()
            except (TypeError, ValueError):
                modified = None
        return {
            "bucket": bucket,
            "key": key,
            "size": int(headers.get("Content-Length", "0")),
            "sha256": headers.get("ETag", "").strip('"'),
            "modified": modified,
            "content_type": headers.get("Content-Type", "application/octet-stream"),
            "version": headers.get(VERSION_HEADER),
            "meta": meta_from_headers(headers),
        }

    async def delete_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> str | None:
        """Without ``version``: delete the object (a delete marker; deleting a missing key
        is not an error) and return the marker's version id (None when none was written).
        With ``version``: remove that version for good and return it; raises
        NoSuchVersion."""
        _, headers, _ = await self._request(
            "DELETE",
            self.object_url(bucket, key),
            params=_version_params(version),
            expect_json=False,
        )
        return headers.get(VERSION_HEADER)

    async def list_object_versions(self, bucket: str, key: str) -> list[VersionJson]:
        """``GET /v1/objects/{bucket}/{key}?versions``: every version of the key, delete
        markers too, newest first. Raises NoSuchKey when it has no version at all."""
        _, _, doc = await self._request(
            "GET", self.object_url(bucket, key), params={"versions": ""}
        )
        versions = doc.get("versions", []) if isinstance(doc, dict) else []
        return cast(list[VersionJson], versions)

    async def list_versions(
        self, bucket: str, prefix: str = "", limit: int = 1000, start_after: str = ""
    ) -> VersionPageJson:
        """One page of ``GET /v1/objects/{bucket}?versions``: the versions of every key
        under ``prefix`` after key ``start_after`` (``limit`` 1..1000; a page never splits
        a key's versions)."""
        params = {"versions": "", "prefix": prefix, "limit": str(limit)}
        if start_after:
            params["start_after"] = start_after
        _, _, doc = await self._request("GET", self.object_url(bucket), params=params)
        if not isinstance(doc, dict):
            return {"versions": [], "is_truncated": False, "next_start_after": None}
        return {
            "versions": cast(list[VersionJson], doc.get("versions", [])),
            "is_truncated": bool(doc.get("is_truncated")),
            "next_start_after": doc.get("next_start_after"),
        }

    # ------------------------------------------------------------------ buckets
    async def create_bucket(
        self, name: str, *, versioning: str | None = None
    ) -> tuple[BucketJson, bool]:
        """``PUT /v1/buckets/{name}``: ``(bucket, created)``; ``created`` False when it
        already existed (a given ``versioning`` is then applied to it). ``versioning``:
        ``unversioned`` | ``enabled`` | ``suspended``. Raises InvalidBucketName,
        InvalidArgument."""
        body = {"versioning": versioning} if versioning is not None else None
        status, _, doc = await self._request("PUT", self.bucket_url(name), json=body)
        return _bucket(doc), status == 201

    async def list_buckets(self) -> list[BucketJson]:
        """``GET /v1/buckets``: every bucket, by name."""
        _, _, doc = await self._request("GET", self.bucket_url())
        listed = doc.get("buckets", []) if isinstance(doc, dict) else []
        return [_bucket(b) for b in listed]

    async def get_bucket(self, name: str) -> BucketUsageJson:
        """``GET /v1/buckets/{name}``: the bucket with its live ``objects`` and their
        ``bytes``. Raises NoSuchBucket."""
        _, _, doc = await self._request("GET", self.bucket_url(name))
        bucket = _bucket(doc)
        return {
            **bucket,
            "objects": int(doc.get("objects", 0)),
            "bytes": int(doc.get("bytes", 0)),
        }

    async def set_bucket_versioning(self, name: str, status: str) -> BucketJson:
        """``PUT /v1/buckets/{name}/versioning``; ``status``: ``enabled`` | ``suspended``.
        Raises NoSuchBucket, InvalidArgument."""
        _, _, doc = await self._request(
            "PUT", self.bucket_url(name) + "/versioning", json={"status": status}
        )
        return _bucket(doc)

    async def delete_bucket(self, name: str) -> None:
        """``DELETE /v1/buckets/{name}``. Raises NoSuchBucket, BucketNotEmpty (a key still
        holds a version or a delete marker)."""
        await self._request("DELETE", self.bucket_url(name), expect_json=False)

    async def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> dict[str, Any]:
        """One page of ``GET /v1/objects/{bucket}``: the server's JSON (``objects``,
        ``common_prefixes``, ``is_truncated``, ``next_start_after``)."""
        params = {"prefix": prefix, "delimiter": delimiter, "limit": str(limit)}
        if start_after:
            params["start_after"] = start_after
        _, _, doc = await self._request("GET", self.object_url(bucket), params=params)
        return doc if isinstance(doc, dict) else {}

    async def iter_objects(
        self, bucket: str, prefix: str = "", delimiter: str = "", page_size: int = 1000
    ) -> AsyncIterator[tuple[dict[str, Any] | None, str | None]]:
        """Every listing entry across pages: ``(object_json, None)`` for an object and
        ``(None, common_prefix)`` for a common prefix."""
        start_after = ""
        while True:
            page = await self.list_objects(bucket, prefix, delimiter, page_size, start_after)
            for cp in page.get("common_prefixes", []):
                yield None, str(cp)
            for obj in page.get("objects", []):
                yield obj, None
            start_after = page.get("next_start_after") or ""
            if not page.get("is_truncated") or not start_after:
                return

    # ------------------------------------------------------------------ uploads
    def upload_url(self, upload_id: str | None = None) -> str:
        """Absolute URL of ``/v1/uploads[/{upload_id}]``."""
        url = f"{self.base_url}/v1/uploads"
        return url if upload_id is None else f"{url}/{quote(upload_id, safe='')}"

    async def init_upload(
        self,
        bucket: str,
        key: str,
        *,
        size: int | None = None,
        chunk_size: int | None = None,
        sha256: str | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[UploadJson, bool]:
        """``POST /v1/uploads``: start a session for ``bucket/key``; ``(session, created)``.

        ``size`` (bytes, optional) fixes the chunk count and lets the server say which
        chunks are missing; ``chunk_size`` (bytes, the server's ``upload_min_chunk_bytes``
        .. ``upload_max_chunk_bytes``, default its ``chunk_size_bytes``) is the size of every
        chunk but the last; ``sha256`` (hex) the whole object's, checked at completion.
        With an ``idempotency_key`` the same request again returns the same session
        (``created`` False). Raises InvalidArgument, IdempotencyConflict (the key was used
        with another body), TooManyUploads, InvalidBucketName, InvalidKey."""
        body: dict[str, Any] = {"bucket": bucket, "key": key}
        for name, value in (
            ("size", size),
            ("chunk_size", chunk_size),
            ("sha256", sha256),
            ("content_type", content_type),
            ("metadata", metadata),
        ):
            if value is not None:
                body[name] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        status, _, doc = await self._request("POST", self.upload_url(), json=body, headers=headers)
        return _upload(doc), status == 201

    async def put_chunk(
        self, upload_id: str, index: int, data: bytes, *, sha256: str | None = None
    ) -> ChunkJson:
        """``PUT /v1/uploads/{id}/chunks/{index}``: store chunk ``index`` (from 0). Every
        chunk but the last is exactly the session's chunk size; ``sha256`` (hex) is sent as
        ``X-Chunk-SHA256`` and checked by the server. The same bytes again change nothing;
        other bytes replace the chunk. Raises NoSuchUpload, UploadNotOpen,
        InvalidChunkSize, InvalidArgument (index), BadDigest."""
        headers = {"Content-Type": "application/octet-stream"}
        if sha256 is not None:
            headers["X-Chunk-SHA256"] = sha256
        _, _, doc = await self._request(
            "PUT", f"{self.upload_url(upload_id)}/chunks/{index}", data=data, headers=headers
        )
        doc = doc if isinstance(doc, dict) else {}
        return {
            "index": int(doc.get("index", index)),
            "size": int(doc.get("size", len(data))),
            "sha256": str(doc.get("sha256", "")),
        }

    async def get_upload(self, upload_id: str) -> UploadJson:
        """``GET /v1/uploads/{id}``: the session (open or ended). Raises NoSuchUpload."""
        _, _, doc = await self._request("GET", self.upload_url(upload_id))
        return _upload(doc)

    async def missing_chunks(self, upload_id: str) -> list[int]:
        """``GET /v1/uploads/{id}/missing-chunks``: indices not received yet, ascending.
        Raises NoSuchUpload, InvalidArgument (the session declared no size)."""
        _, _, doc = await self._request("GET", self.upload_url(upload_id) + "/missing-chunks")
        missing = doc.get("missing", []) if isinstance(doc, dict) else []
        return [int(i) for i in missing]

    async def list_uploads(self, bucket: str) -> list[UploadJson]:
        """``GET /v1/uploads?bucket=``: the bucket's open sessions, oldest first."""
        _, _, doc = await self._request("GET", self.upload_url(), params={"bucket": bucket})
        listed = doc.get("uploads", []) if isinstance(doc, dict) else []
        return [_upload(u) for u in listed]

    async def complete_upload(self, upload_id: str, *, sha256: str | None = None) -> dict[str, Any]:
        """``POST /v1/uploads/{id}/complete``: make the chunks the object's new version;
        the object JSON of ``PUT /v1/objects`` (the same again for a completed session).
        ``sha256`` (hex): the whole object's, checked (``bad_digest``, the session stays
        open). Raises IncompleteUpload (``details["missing"]``), UploadNotOpen,
        NoSuchUpload, InvalidChunkSize, BadDigest."""
        body = {"sha256": sha256} if sha256 is not None else None
        _, _, doc = await self._request("POST", self.upload_url(upload_id) + "/complete", json=body)
        return doc if isinstance(doc, dict) else {}

    async def abort_upload(self, upload_id: str) -> None:
        """``DELETE /v1/uploads/{id}``: abort the session and free its chunks. Raises
        NoSuchUpload, UploadNotOpen."""
        await self._request("DELETE", self.upload_url(upload_id), expect_json=False)

    async def upload_file(
        self,
        path: Path | str,
        bucket: str,
        key: str,
        *,
        resume: bool = True,
        chunk_size: int | None = None,
        parallel: int = 4,
        progress: UploadProgress | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        stats: UploadStats | None = None,
        state_store: ResumeStore | None = None,
    ) -> dict[str, Any]:
        """Upload the file at ``path`` as ``bucket/key`` through a resumable session;
        returns the object JSON (as :meth:`put_object`).

        The session's Idempotency-Key comes from the file's identity (absolute path, size,
        mtime, bucket/key), and its state (upload id, peer URL, chunk size, identity) is
        kept in a JSON file of ``state_store`` (default: under ``$XDG_CACHE_HOME``, see
        :mod:`dfspeer.resume_state`), so after a crash the same call — through any peer —
        resumes it: only the chunks the server says are missing are sent, ``parallel``
        at a time. The file is read once, in order, and its SHA-256 computed on the way;
        completion checks it. The state file is removed once the object exists. A saved
        session that is gone or closed (404 / 409) is replaced by a new one; so is one
        whose chunks turn out not to be this file's (``bad_digest`` at completion).
        ``resume=False`` always starts a new session. ``chunk_size`` in bytes (default:
        the server's). ``progress(bytes_done, bytes_total)`` is called first with the bytes
        already stored, then after every chunk. ``stats`` (an :class:`UploadStats`) is
        filled in. Raises DfsError (the state stays: run again to resume), OSError."""
        if parallel < 1:
            raise ValueError("parallel must be >= 1")
        identity = FileIdentity.of(path, bucket, key)
        store = state_store if state_store is not None else ResumeStore()
        stats = stats if stats is not None else UploadStats()
        stats.total_bytes = identity.size
        fresh = not resume
        while True:
            session, resumed = await self._session_for(
                identity,
                store,
                fresh=fresh,
                chunk_size=chunk_size,
                content_type=content_type,
                metadata=metadata,
            )
            stats.sessions += 1
            stats.upload_id, stats.chunk_size = session["upload_id"], session["chunk_size"]
            stats.resumed = resumed
            try:
                if session["state"] == "completed":
                    info = await self.complete_upload(session["upload_id"])
                else:
                    info = await self._send_file(identity, session, parallel, progress, stats)
            except _StaleSession:
                if not resumed:
                    raise AssertionError("a new session cannot be stale") from None
                store.remove(identity)
                fresh = True
                continue
            store.remove(identity)
            return info

    async def _session_for(
        self,
        identity: FileIdentity,
        store: ResumeStore,
        *,
        fresh: bool,
        chunk_size: int | None,
        content_type: str | None,
        metadata: dict[str, str] | None,
    ) -> tuple[UploadJson, bool]:
        """The session to use and whether it was started before (its chunks count)."""
        saved = None if fresh else store.load(identity)
        if saved is not None:
            try:
                found = await self.get_upload(saved.upload_id)
            except errors.NoSuchUpload:
                found = None
            if found is not None and (
                found["state"] in OPEN_UPLOAD_STATES or found["state"] == "completed"
            ):
                return found, True
            store.remove(identity)
        ikey = identity.digest()
        if fresh:
            ikey += "-" + secrets.token_hex(8)
        request: dict[str, Any] = {
            "size": identity.size,
            "chunk_size": _session_chunk_size(identity.size, chunk_size),
            "content_type": content_type,
            "metadata": metadata,
        }
        found_open: tuple[UploadJson, bool] | None = None
        with contextlib.suppress(errors.IdempotencyConflict):  # asked with other options
            found_open = await self.init_upload(
                identity.bucket, identity.key, idempotency_key=ikey, **request
            )
        if found_open is not None and found_open[0]["state"] in OPEN_UPLOAD_STATES:
            session, created = found_open
        else:
            # this identity's earlier session ended, or was started with other options
            session, created = await self.init_upload(
                identity.bucket,
                identity.key,
                idempotency_key=f"{ikey}-{secrets.token_hex(8)}",
                **request,
            )
        state = new_state(
            session["upload_id"], self.base_url, session["chunk_size"], ikey, identity
        )
        await asyncio.to_thread(store.save, state)
        return session, not created

    async def _send_file(
        self,
        identity: FileIdentity,
        session: UploadJson,
        parallel: int,
        progress: UploadProgress | None,
        stats: UploadStats,
    ) -> dict[str, Any]:
        """Send the missing chunks of ``session`` from the file, then complete it."""
        upload_id, chunk = session["upload_id"], session["chunk_size"]
        size = identity.size
        if session["size"] != size:
            raise _StaleSession
        try:
            missing = set(await self.missing_chunks(upload_id))
        except errors.NoSuchUpload:
            raise _StaleSession from None
        count = -(-size // chunk)
        sizes = [min(chunk, size - i * chunk) for i in range(count)]
        done = size - sum(sizes[i] for i in missing)
        stats.stored_bytes = done
        if progress is not None:
            progress(done, size)
        whole = hashlib.sha256()
        slots = asyncio.Semaphore(parallel)
        pending: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        async def send(index: int, data: bytes, digest: str) -> None:
            nonlocal done
            try:
                await self._put_chunk_retrying(upload_id, index, data, digest, stats)
            except BaseException as exc:
                failures.append(exc)
                raise
            finally:
                slots.release()
            done += len(data)
            if progress is not None:
                progress(done, size)

        try:
            with open(identity.path, "rb") as f:
                for index in range(count):
                    wanted = index in missing
                    if wanted:
                        await slots.acquire()
                    if failures:
                        if wanted:
                            slots.release()
                        break
                    data, digest = await asyncio.to_thread(
                        _read_chunk, f, index * chunk, sizes[index], whole, wanted
                    )
                    if wanted:
                        task = asyncio.create_task(send(index, data, digest))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    del data
                if pending:
                    await asyncio.gather(*pending)
                if failures:
                    raise failures[0]
        except (errors.NoSuchUpload, errors.UploadNotOpen):
            if stats.resumed:
                raise _StaleSession from None
            raise
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        try:
            return await self.complete_upload(upload_id, sha256=whole.hexdigest())
        except (errors.NoSuchUpload, errors.UploadNotOpen, errors.BadDigest):
            if not stats.resumed:
                raise
            # chunks of another file (or the session ended meanwhile): give it up
            with contextlib.suppress(DfsError):
                await self.abort_upload(upload_id)
            raise _StaleSession from None

    async def _put_chunk_retrying(
        self, upload_id: str, index: int, data: bytes, digest: str, stats: UploadStats
    ) -> None:
        """:meth:`put_chunk`, retried ``CHUNK_RETRIES`` times (0.5 s, 1 s apart) when the
        peer is unreachable or answers 5xx (a chunk is idempotent)."""
        for attempt in range(CHUNK_RETRIES + 1):
            stats.sent_bytes += len(data)
            stats.chunks_sent += 1
            try:
                await self.put_chunk(upload_id, index, data, sha256=digest)
                return
            except DfsError as exc:
                if exc.status < 500 or attempt == CHUNK_RETRIES:
                    raise
            await asyncio.sleep(CHUNK_RETRY_DELAY_S * 2**attempt)

    # ------------------------------------------------------------------ cluster
    async def members(self) -> dict[str, Any]:
        """``GET /v1/cluster/members``: ``{"self", "members": [...]}``."""
        return await self._get_json("/v1/cluster/members")

    async def ring(self) -> dict[str, Any]:
        """``GET /v1/cluster/ring``."""
        return await self._get_json("/v1/cluster/ring")

    async def status(self) -> dict[str, Any]:
        """``GET /v1/cluster/status`` of this peer."""
        return await self._get_json("/v1/cluster/status")

    async def drain(self) -> dict[str, Any]:
        """``POST /v1/cluster/drain``: start draining this peer; its drain progress."""
        _, _, doc = await self._request("POST", self.base_url + "/v1/cluster/drain")
        return doc if isinstance(doc, dict) else {}

    async def remove_member(self, peer_id: str) -> dict[str, Any]:
        """``POST /v1/cluster/members/{id}/remove``: forget a dead member for good; its
        entry as in :meth:`members` (``state`` ``"left"``). Raises NoSuchMember (404),
        MemberAlive (409: alive or suspect)."""
        url = f"{self.base_url}/v1/cluster/members/{quote(peer_id, safe='')}/remove"
        _, _, doc = await self._request("POST", url)
        return doc if isinstance(doc, dict) else {}

    async def recount_block_refs(self) -> dict[str, int]:
        """``POST /v1/cluster/repair/block-refs``: rebuild this peer's block reference
        counts; ``{"references", "blocks", "changed"}``."""
        _, _, doc = await self._request("POST", self.base_url + "/v1/cluster/repair/block-refs")
        return {str(k): int(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    async def drain_progress(self) -> dict[str, Any]:
        """``GET /v1/cluster/drain``: ``{"state", "partitions_remaining", ...}``."""
        return await self._get_json("/v1/cluster/drain")

    # ------------------------------------------------------------------ access
    async def create_key(self, name: str, *, allow_create_bucket: bool = False) -> dict[str, Any]:
        """``POST /v1/keys`` (admin): ``{"id", "secret", "name", "created",
        "allow_create_bucket", "disabled"}``; the secret is shown only here."""
        body = {"name": name, "allow_create_bucket": allow_create_bucket}
        _, _, doc = await self._request("POST", self.base_url + "/v1/keys", json=body)
        return doc if isinstance(doc, dict) else {}

    async def list_keys(self) -> list[dict[str, Any]]:
        """``GET /v1/keys`` (admin): every key without its secret, by id."""
        doc = await self._get_json("/v1/keys")
        return list(doc.get("keys", []))

    async def delete_key(self, key_id: str) -> None:
        """``DELETE /v1/keys/{id}`` (admin). Raises DfsError ``no_such_access_key``."""
        url = f"{self.base_url}/v1/keys/{quote(key_id, safe='')}"
        await self._request("DELETE", url, expect_json=False)

    async def disable_key(self, key_id: str) -> dict[str, Any]:
        """``POST /v1/keys/{id}/disable`` (admin): the key, now refused by every peer."""
        url = f"{self.base_url}/v1/keys/{quote(key_id, safe='')}/disable"
        _, _, doc = await self._request("POST", url)
        return doc if isinstance(doc, dict) else {}

    async def set_bucket_permissions(
        self,
        bucket: str,
        key_id: str,
        *,
        read: bool | None = None,
        write: bool | None = None,
        owner: bool | None = None,
    ) -> dict[str, Any]:
        """``PUT /v1/buckets/{bucket}/permissions`` (owner or admin): set the flags given
        (None keeps a flag as it is); ``{"name", "owner", "permissions"}``."""
        body: dict[str, Any] = {"key": key_id}
        for flag, value in (("read", read), ("write", write), ("owner", owner)):
            if value is not None:
                body[flag] = value
        url = self.bucket_url(bucket) + "/permissions"
        _, _, doc = await self._request("PUT", url, json=body)
        return doc if isinstance(doc, dict) else {}

    async def get_bucket_permissions(self, bucket: str) -> dict[str, Any]:
        """``GET /v1/buckets/{bucket}/permissions`` (owner or admin)."""
        _, _, doc = await self._request("GET", self.bucket_url(bucket) + "/permissions")
        return doc if isinstance(doc, dict) else {}

    async def share_url(
        self, bucket: str, key: str, expires_s: float, *, version: str | None = None
    ) -> str:
        """``POST /v1/share``: a presigned URL that lets anyone who holds it ``GET`` /
        ``HEAD`` ``bucket/key`` (only its version ``version``, when given) without
        credentials for ``expires_s`` seconds (1..604800, 7 days), signed as this client's
        access key (or the admin). Raises DfsError (``invalid_argument`` for an expiry out
        of range or a malformed version, ``access_denied`` when the caller may not read
        the bucket)."""
        body: dict[str, Any] = {"bucket": bucket, "key": key, "expires_s": expires_s}
        if version is not None:
            body["version"] = version
        _, _, doc = await self._request("POST", self.base_url + "/v1/share", json=body)
        return str(doc.get("url", "")) if isinstance(doc, dict) else ""

    async def ready(self) -> bool:
        """True if ``GET /ready`` answers 200; False on 503 or if unreachable."""
        try:
            await self._request("GET", self.base_url + "/ready", expect_json=False)
        except DfsError:
            return False
        return True
