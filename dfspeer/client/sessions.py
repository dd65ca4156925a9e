"""Resumable upload session calls of :class:`dfspeer.client.Client` (``/v1/uploads``):
start a session, send and list chunks, complete or abort it."""

from __future__ import annotations

from typing import Any, TypedDict
from urllib.parse import quote

from dfspeer.client.transport import ClientBase


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


class SessionsMixin(ClientBase):
    """:class:`~dfspeer.client.Client` calls on resumable upload sessions."""

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
