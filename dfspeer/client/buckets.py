"""Bucket calls of :class:`dfspeer.client.Client`: create, list, inspect, versioning,
delete, and listing a bucket's objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypedDict

from dfspeer.client.transport import ClientBase


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


def _bucket(doc: Any) -> BucketJson:
    """The :class:`BucketJson` fields of a server answer."""
    if not isinstance(doc, dict):
        doc = {}
    return {
        "name": str(doc.get("name", "")),
        "created": float(doc.get("created", 0.0)),
        "versioning": str(doc.get("versioning", "unversioned")),
    }


class BucketsMixin(ClientBase):
    """:class:`~dfspeer.client.Client` calls on buckets."""

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
