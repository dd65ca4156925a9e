"""What :class:`dfspeer.client.Client` puts on the wire and reads back besides JSON: byte
ranges, object headers, request bodies from files and streams, credentials."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

from multidict import CIMultiDict

ByteRange = tuple[int, int | None]
Progress = Callable[[int], None]

READ_PIECE_BYTES = 1024 * 1024
SHA256_HEADER = "X-Content-SHA256"
VERSION_HEADER = "X-Object-Version"
META_HEADER_PREFIX = "X-Meta-"


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
