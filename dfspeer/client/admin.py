"""Cluster and access calls of :class:`dfspeer.client.Client`: membership, ring, status,
drain and repair; access keys, bucket permissions, share links; readiness."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dfspeer.client.transport import ClientBase
from dfspeer.errors import DfsError


class AdminMixin(ClientBase):
    """:class:`~dfspeer.client.Client` calls on the cluster and on access control."""

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
