"""What a client sees of objects and their versions (the JSON of the native API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfspeer.model.objects import DEFAULT_CONTENT_TYPE, ObjectVersion

RESERVED_META_PREFIX = "dfs:"
"""Metadata names starting with this are the system's (``dfs:etag``, the S3 ETag), not the
user's: no client can set one (``:`` is not an HTTP token character) and the native API
hides them (:func:`public_meta`)."""


def public_meta(meta: Mapping[str, str]) -> dict[str, str]:
    """``meta`` without the reserved (``dfs:``) entries."""
    return {k: v for k, v in meta.items() if not k.startswith(RESERVED_META_PREFIX)}


@dataclass(frozen=True)
class ObjectInfo:
    """One object version. ``size`` in bytes, ``sha256`` hex of the whole object,
    ``chunks`` number of blocks (0 when stored inline), ``modified`` unix seconds, ``meta``
    the user metadata (``X-Meta-*`` headers, names lower-case without the prefix)."""

    bucket: str
    key: str
    version: str
    size: int
    sha256: str
    chunks: int
    modified: float
    content_type: str = DEFAULT_CONTENT_TYPE
    meta: Mapping[str, str] = field(default_factory=dict)
    checksum: tuple[str, str] | None = None
    """``(algorithm, base64 value)``: the full-object checksum checked when the version was
    written (:attr:`ObjectVersion.checksum`; the S3 API returns it), not in the JSON."""
    parts: tuple[int, ...] = ()
    """Byte sizes of an S3 multipart upload's parts (:attr:`ObjectVersion.parts`; the S3
    API serves ``partNumber`` from them), not in the JSON."""

    @classmethod
    def of(cls, bucket: str, key: str, v: ObjectVersion) -> ObjectInfo:
        """The info of version ``v`` of ``bucket``/``key``."""
        return cls(
            bucket,
            key,
            v.id,
            v.size,
            v.sha256,
            len(v.chunks),
            v.modified,
            v.content_type,
            dict(v.meta),
            v.checksum,
            v.parts,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": self.chunks,
            "modified": self.modified,
            "content_type": self.content_type,
            "meta": public_meta(self.meta),
        }


@dataclass(frozen=True)
class VersionInfo:
    """One entry of a versions listing (newest first). A delete marker has size 0 and
    sha256 ""."""

    key: str
    version: str
    size: int
    sha256: str
    modified: float
    is_latest: bool
    delete_marker: bool
    null: bool = False
    """Written while the bucket did not keep versions (S3's "null" version)."""

    @classmethod
    def listing(cls, key: str, versions: list[ObjectVersion]) -> list[VersionInfo]:
        """Infos of ``versions`` (newest first, as :meth:`ObjectEntry.listed` gives)."""
        return [
            cls(key, v.id, v.size, v.sha256, v.modified, i == 0, v.delete_marker, v.null)
            for i, v in enumerate(versions)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "modified": self.modified,
            "is_latest": self.is_latest,
            "delete_marker": self.delete_marker,
        }
