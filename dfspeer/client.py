"""Async HTTP client for a remote dfspeer peer (the public API of issue 4).

``Client(base_url)`` wraps one :class:`aiohttp.ClientSession`. Uploads stream from bytes, a
file path or an async iterable without reading a file whole; downloads stream into a file.
Every error the server renders as ``{"error": {"code", "message", "request_id"}}`` comes back
as a :class:`dfspeer.errors.DfsError` (the matching subclass when the code is known, e.g.
:class:`~dfspeer.errors.NoSuchKey`) carrying the server's ``code``, ``status`` and message.
A peer that cannot be reached raises :class:`PeerUnreachable`.

Byte ranges are ``(start, end)`` half-open, like Python slices: ``(0, 10)`` is the first ten
bytes, ``(100, None)`` everything from byte 100, and ``(-n, None)`` the last ``n`` bytes.

Buckets and versions come back as the server's JSON, typed: :class:`BucketJson`,
:class:`BucketUsageJson`, :class:`VersionJson`, :class:`VersionPageJson`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TypedDict, cast
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from dfspeer import errors
from dfspeer.errors import DfsError

ByteRange = tuple[int, int | None]
Progress = Callable[[int], None]

READ_PIECE_BYTES = 1024 * 1024
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


_CODE_FOR_STATUS = {
    400: "invalid_argument",
    401: "unauthorized",
    404: "no_such_key",
    413: "entity_too_large",
    416: "invalid_range",
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
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        code = str(err.get("code") or code)
        message = str(err.get("message") or message)
    cls = _ERROR_CLASSES.get(code, DfsError)
    return cls(message, code=code, status=status)


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
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        reason = "server disconnected"
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


class Client:
    """Async client of one peer's public HTTP API; use as ``async with Client(url) as c``.

    ``timeout_s`` bounds connecting and every wait for data on the socket (not the whole
    transfer, so a multi-GiB upload is not cut off).
    """

    def __init__(self, base_url: str, *, timeout_s: float = 300.0) -> None:
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

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
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
        return self._session

    def object_url(self, bucket: str, key: str | None = None) -> str:
        """Absolute URL of ``/v1/objects/{bucket}[/{key}]`` with the key percent-encoded."""
        url = f"{self.base_url}/v1/objects/{quote(bucket, safe='')}"
        if key is not None:
            url += "/" + quote(key, safe="/")
        return url

    # ------------------------------------------------------------------ plumbing
    async def _request(
        self, method: str, url: str, *, expect_json: bool = True, **kwargs: Any
    ) -> tuple[int, CIMultiDict[str], Any]:
        """One request; returns (status, headers, decoded JSON or raw bytes). Raises DfsError."""
        try:
            async with self._http().request(method, url, **kwargs) as resp:
                body = await resp.read()
                if resp.status >= 400:
                    raise error_from_response(resp.status, body, resp.reason or "")
                headers = CIMultiDict(resp.headers)
                if expect_json and body:
                    return resp.status, headers, await resp.json(content_type=None)
                return resp.status, headers, body
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
        async iterable goes out with ``Transfer-Encoding: chunked``. ``sha256`` (hex) is sent
        as ``X-Content-SHA256`` so the server rejects a corrupted body (``bad_digest``).
        ``progress(n)`` is called with each piece's size as it is handed to the socket.
        ``meta``: user metadata, sent as ``X-Meta-<name>`` headers (names are stored
        lower-case; at most 2 KiB in all, else ``invalid_argument``).
        """
        headers = {"Content-Type": content_type or "application/octet-stream"}
        if sha256 is not None:
            headers[SHA256_HEADER] = sha256
        for name, value in (meta or {}).items():
            headers[META_HEADER_PREFIX + name] = value
        body: Any
        if isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
            if progress is not None:
                progress(len(body))
        elif isinstance(data, Path):
            headers["Content-Length"] = str(os.path.getsize(data))
            body = _file_pieces(data, progress)
        else:
            body = data if progress is None else _counted(data, progress)
        _, _, doc = await self._request(
            "PUT", self.object_url(bucket, key), data=body, headers=headers
        )
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
            async with self._http().get(
                url, headers=headers, params=_version_params(version)
            ) as resp:
                if resp.status >= 400:
                    raise error_from_response(resp.status, await resp.read(), resp.reason or "")
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

    async def recount_block_refs(self) -> dict[str, int]:
        """``POST /v1/cluster/repair/block-refs``: rebuild this peer's block reference
        counts; ``{"references", "blocks", "changed"}``."""
        _, _, doc = await self._request("POST", self.base_url + "/v1/cluster/repair/block-refs")
        return {str(k): int(v) for k, v in doc.items()} if isinstance(doc, dict) else {}

    async def drain_progress(self) -> dict[str, Any]:
        """``GET /v1/cluster/drain``: ``{"state", "partitions_remaining", ...}``."""
        return await self._get_json("/v1/cluster/drain")

    async def ready(self) -> bool:
        """True if ``GET /ready`` answers 200; False on 503 or if unreachable."""
        try:
            await self._request("GET", self.base_url + "/ready", expect_json=False)
        except DfsError:
            return False
        return True
