"""Resumable upload routes: ``/v1/uploads`` (see :mod:`dfspeer.objects.sessions`).

- ``POST /v1/uploads`` JSON ``{"bucket", "key", "size"?, "chunk_size"?, "sha256"?,
  "content_type"?, "metadata"?}``, optional ``Idempotency-Key`` header: 201 with the session
  (``upload_id``, ``bucket``, ``key``, ``chunk_size``, ``total_chunks`` when the size is
  known, ``state``, ``expires`` (unix s), ...); the same key and body again: 200 with the
  same session; the same key with another body: 409 ``idempotency_conflict``.
- ``PUT /v1/uploads/{id}/chunks/{index}`` (index from 0), optional ``X-Chunk-SHA256``: 200
  ``{"index", "size", "sha256"}``.
- ``GET /v1/uploads/{id}``: the session (``state``, ``received`` as ``[first, last]``
  ranges, ``bytes_received``); ``GET /v1/uploads/{id}/missing-chunks``: ``{"missing":
  [...]}``; ``GET /v1/uploads?bucket=B``: ``{"uploads": [...]}`` (open sessions).
- ``POST /v1/uploads/{id}/complete``, optional JSON ``{"sha256"}``: 200 with the object JSON
  of ``PUT /v1/objects``; 409 ``incomplete_upload`` with ``missing`` in the error object.
- ``DELETE /v1/uploads/{id}``: 204; later: 409 ``upload_not_open``.

Errors are :class:`~dfspeer.errors.DfsError` s rendered by the error middleware.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dfspeer.access.middleware import require_bucket
from dfspeer.access.permissions import Action
from dfspeer.api.jsonbody import read_at_most, read_json_object
from dfspeer.api.public import object_json
from dfspeer.errors import IncompleteBody, InvalidArgument, InvalidChunkSize
from dfspeer.objects.sessions import UploadService

UPLOADS_KEY = web.AppKey("dfspeer.uploads", UploadService)
routes = web.RouteTableDef()
MAX_JSON_BYTES = 16 * 1024
INIT_FIELDS = frozenset(
    {"bucket", "key", "size", "chunk_size", "sha256", "content_type", "metadata"}
)
MAX_METADATA_BYTES = 2048


async def _json(request: web.Request, *, required: bool) -> dict[str, Any]:
    return await read_json_object(request, max_bytes=MAX_JSON_BYTES, required=required)


def _opt_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer")
    return value


def _opt_str(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _metadata(doc: dict[str, Any]) -> dict[str, str]:
    meta = doc.get("metadata") or {}
    if not isinstance(meta, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta.items()
    ):
        raise InvalidArgument("metadata must be an object of strings")
    if sum(len(k) + len(v) for k, v in meta.items()) > MAX_METADATA_BYTES:
        raise InvalidArgument(f"metadata is over {MAX_METADATA_BYTES} bytes")
    return {k.lower(): v for k, v in meta.items()}


def _service(request: web.Request) -> UploadService:
    return request.app[UPLOADS_KEY]


@routes.post("/v1/uploads")
async def init_upload(request: web.Request) -> web.Response:
    """Start (or, with the same Idempotency-Key, find again) a session."""
    doc = await _json(request, required=True)
    unknown = sorted(set(doc) - INIT_FIELDS)
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    bucket, key = _opt_str(doc, "bucket"), _opt_str(doc, "key")
    if not bucket or not key:
        raise InvalidArgument("bucket and key are required")
    await require_bucket(request, bucket, Action.WRITE)  # the bucket is named in the body
    service = _service(request)
    session, created = await service.init(
        bucket,
        key,
        size=_opt_int(doc, "size"),
        chunk_size=_opt_int(doc, "chunk_size"),
        sha256=_opt_str(doc, "sha256"),
        content_type=_opt_str(doc, "content_type") or "",
        meta=_metadata(doc),
        idempotency_key=request.headers.get("Idempotency-Key", "").strip(),
    )
    return web.json_response(service.to_json(session), status=201 if created else 200)


def _index(request: web.Request) -> int:
    text = request.match_info["index"]
    if not text.isdigit() or len(text) > 9:
        raise InvalidArgument(f"chunk index must be a non-negative integer, got {text!r}")
    return int(text)


@routes.put("/v1/uploads/{upload_id}/chunks/{index}")
async def put_chunk(request: web.Request) -> web.Response:
    """Store one chunk (the body, at most the session's chunk size)."""
    service = _service(request)
    index = _index(request)
    session = await service.header(request.match_info["upload_id"])
    declared = request.content_length
    if declared is not None and declared > session.chunk_size:
        raise InvalidChunkSize(f"a chunk is at most {session.chunk_size} bytes, got {declared}")
    data = await read_at_most(request, session.chunk_size + 1)
    if len(data) > session.chunk_size:
        raise InvalidChunkSize(f"a chunk is at most {session.chunk_size} bytes")
    if declared is not None and len(data) < declared:
        raise IncompleteBody(f"the body ended after {len(data)} of {declared} bytes")
    chunk = await service.put_chunk(
        session.id,
        index,
        data,
        expected_sha256=request.headers.get("X-Chunk-SHA256"),
        session=session,
    )
    return web.json_response(
        {"index": chunk.index, "size": chunk.size, "sha256": chunk.digest.hex()}
    )


@routes.get("/v1/uploads")
async def list_uploads(request: web.Request) -> web.Response:
    """Open sessions of ``?bucket=``."""
    bucket = request.query.get("bucket", "")
    if not bucket:
        raise InvalidArgument("?bucket= is required")
    service = _service(request)
    sessions = await service.list_open(bucket)
    return web.json_response({"uploads": [service.to_json(s) for s in sessions]})


@routes.get("/v1/uploads/{upload_id}")
async def get_upload(request: web.Request) -> web.Response:
    service = _service(request)
    return web.json_response(service.to_json(await service.get(request.match_info["upload_id"])))


@routes.get("/v1/uploads/{upload_id}/missing-chunks")
async def missing_chunks(request: web.Request) -> web.Response:
    service = _service(request)
    session = await service.get_checked(request.match_info["upload_id"])
    if session.total_chunks is None:
        raise InvalidArgument("the session declared no size: missing chunks are unknown")
    return web.json_response({"missing": session.missing()})


@routes.post("/v1/uploads/{upload_id}/complete")
async def complete_upload(request: web.Request) -> web.Response:
    """Turn the session's chunks into the object's new version."""
    doc = await _json(request, required=False)
    unknown = sorted(set(doc) - {"sha256"})
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    service = _service(request)
    info = await service.complete(request.match_info["upload_id"], sha256=_opt_str(doc, "sha256"))
    return web.json_response(object_json(info))


@routes.delete("/v1/uploads/{upload_id}")
async def abort_upload(request: web.Request) -> web.Response:
    await _service(request).abort(request.match_info["upload_id"])
    return web.Response(status=204)
