"""What the object routes read from a request and write into an answer besides the body:
the bucket and key names, the ``?version=`` and listing query parameters, user metadata
(``X-Meta-<name>`` headers), and an object's headers, entity tag and upload JSON.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING

from aiohttp import web

from dfspeer.errors import InvalidArgument
from dfspeer.objects.info import public_meta
from dfspeer.objects.names import validate_bucket, validate_key

if TYPE_CHECKING:
    from dfspeer.objects import ObjectInfo

META_PREFIX = "x-meta-"
MAX_META_BYTES = 2048
"""Largest user metadata of one object: UTF-8 bytes of every name plus every value."""
MAX_VERSION_CHARS = 128
_META_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")


def _names(request: web.Request) -> tuple[str, str]:
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    validate_bucket(bucket)
    validate_key(key)
    return bucket, key


def object_json(info: ObjectInfo) -> dict[str, object]:
    """The upload answer: ``{"bucket","key","version","size","sha256","chunks"}``."""
    return {
        "bucket": info.bucket,
        "key": info.key,
        "version": info.version,
        "size": info.size,
        "sha256": info.sha256,
        "chunks": info.chunks,
    }


def etag(info: ObjectInfo) -> str:
    """Strong entity tag: the quoted SHA-256 hex of the whole object."""
    return f'"{info.sha256}"'


def object_headers(info: ObjectInfo) -> dict[str, str]:
    """Headers every GET/HEAD/304 answer carries (``X-Meta-<name>`` per metadata entry)."""
    headers = {
        "ETag": etag(info),
        "Last-Modified": formatdate(info.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type,
        "X-Object-Version": info.version,
    }
    for name, value in sorted(public_meta(info.meta).items()):
        headers["X-Meta-" + name] = value
    return headers


def user_meta(headers: Mapping[str, str]) -> dict[str, str]:
    """User metadata from ``X-Meta-<name>`` headers: ``{name lower-cased: value}``
    (repeated headers joined with ``,``). Raises InvalidArgument for an empty or
    non-token name, a value that is not printable ASCII, or more than
    :data:`MAX_META_BYTES` bytes of names and values in all."""
    meta: dict[str, str] = {}
    for header, value in headers.items():
        lowered = header.lower()
        if not lowered.startswith(META_PREFIX):
            continue
        name = lowered[len(META_PREFIX) :]
        if not _META_NAME.fullmatch(name):
            raise InvalidArgument(f"{header}: metadata name must be a non-empty HTTP token")
        value = value.strip()
        if not (value.isascii() and value.isprintable()):
            raise InvalidArgument(f"{header}: metadata value must be printable ASCII")
        meta[name] = f"{meta[name]},{value}" if name in meta else value
    total = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if total > MAX_META_BYTES:
        raise InvalidArgument(
            f"user metadata is {total} bytes; at most {MAX_META_BYTES} bytes are allowed"
        )
    return meta


def version_param(request: web.Request) -> str | None:
    """The ``?version=`` query parameter, or None. Raises InvalidArgument when it is empty
    or not 1..128 printable characters."""
    raw = request.query.get("version")
    if raw is None:
        return None
    if not raw or len(raw) > MAX_VERSION_CHARS or not raw.isprintable():
        raise InvalidArgument(f"version must be 1..{MAX_VERSION_CHARS} printable characters")
    return raw


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidArgument(f"{name} must be an integer in {low}..{high}, got {raw!r}")
    return int(raw)


def _text_params(request: web.Request, *names: str) -> list[str]:
    """The query parameters ``names`` ("" when absent). Raises InvalidArgument past 1024
    bytes."""
    values = [request.query.get(name, "") for name in names]
    for name, value in zip(names, values, strict=True):
        if len(value.encode()) > 1024:
            raise InvalidArgument(f"{name} is longer than 1024 bytes")
    return values
