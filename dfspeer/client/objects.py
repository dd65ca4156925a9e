"""Object calls of :class:`dfspeer.client.Client`: put, get (whole or a byte range),
download to a file, stat, delete, and version listings."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterable, Callable
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any, TypedDict, cast

from dfspeer import errors
from dfspeer.client.errors import TRANSPORT_ERRORS, _transport_error
from dfspeer.client.transport import ClientBase
from dfspeer.client.wire import (
    META_HEADER_PREFIX,
    READ_PIECE_BYTES,
    SHA256_HEADER,
    VERSION_HEADER,
    ByteRange,
    Progress,
    _counted,
    _file_pieces,
    _version_params,
    meta_from_headers,
    range_header,
)
from dfspeer.errors import DfsError


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


class ObjectsMixin(ClientBase):
    """:class:`~dfspeer.client.Client` calls on objects and their versions."""

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
