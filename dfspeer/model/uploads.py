"""The ``uploads`` table (resumable upload sessions) and ``upload_keys`` (idempotency).

``uploads`` — table key: the session id (32 hex characters, 128 random bits), placed by it.
Record (CBOR)::

    {"format": 1, "id": str, "bucket": str, "key": str, "version": str (the id of the
     session's ``uploading`` object version), "null": bool, "chunk_size": int (bytes),
     "size": int | None, "sha256": str | None (declared), "content_type": str,
     "meta": {str: str}, "created": float (unix s), "idempotency_key": str,
     "request_hash": str, "states": [[state, unix s], ...],
     "chunks": [[index, digest (32 B), size, at (HLC text)], ...],
     "activity": float (unix s, latest), "result": {...} | None,
     "kind": "s3" (absent: "chunks"), "parts": [[number, at (HLC text), md5 (16 B),
     size, [[digest (32 B), size], ...]], ...] (only in an "s3" session)}

State: ``initiated`` → ``in_progress`` → ``completed`` | ``aborted`` | ``expired``; the
session's state is the most advanced one recorded (``states`` maps each state reached to
the first time it was reached — merged by minimum — so two peers that saw different steps
converge and the record does not grow with every chunk). The chunks and parts received
are kept in the ``upload_parts`` table (:mod:`dfspeer.model.upload_parts`), one small
entry each; the ``chunks`` / ``parts`` fields below stay empty in the stored record.
In memory, ``chunks`` is the grow-only set of every chunk ever received; the current
chunk of an index is the one with the highest ``(at, digest)`` (a re-sent index replaces
it; the replaced digests are released on completion or abort).
``activity`` is the maximum, ``result`` (the completed object) is set once. Merge =
union/maximum per field, so it is commutative, associative and idempotent.

``kind``: ``chunks`` (the native ``/v1/uploads`` session: one block per chunk index; its
record has no ``kind`` / ``parts``, exactly as before) or ``s3`` (an S3 multipart upload:
numbered parts, each one or more blocks). ``parts`` is, like ``chunks``, a grow-only set
of every part ever received; the current part of a number is the one with the highest
``(at, md5, size, blocks)``. A part numbered 0 is never current: it records the blocks
of a part upload that failed, so completion and abort release them too.

``upload_keys`` — table key: SHA-256 of ``bucket/key NUL Idempotency-Key``. Record:
``{"format": 1, "upload_id": str, "request_hash": str, "at": str (HLC)}``; merge keeps the
earliest ``at`` (first writer wins), so two peers racing on one key agree on one session;
an idempotency key is kept for ``tombstone_grace_s`` after its first use, then purged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dfspeer.cluster.table import TableSchema
from dfspeer.model.hlc_time import version_unix_s
from dfspeer.model.objects import DEFAULT_CONTENT_TYPE

UPLOADS_TABLE = "uploads"
UPLOAD_KEYS_TABLE = "upload_keys"
INITIATED, IN_PROGRESS, COMPLETED, ABORTED, EXPIRED = (
    "initiated",
    "in_progress",
    "completed",
    "aborted",
    "expired",
)
_RANK = {INITIATED: 0, IN_PROGRESS: 1, COMPLETED: 2, ABORTED: 3, EXPIRED: 4}
OPEN_STATES = (INITIATED, IN_PROGRESS)
CHUNKS_KIND, PARTS_KIND = "chunks", "s3"
KINDS = (CHUNKS_KIND, PARTS_KIND)


@dataclass(frozen=True, order=True)
class ChunkRecord:
    """One received chunk: ``index`` from 0, ``digest`` its SHA-256, ``size`` in bytes,
    ``at`` the HLC text of its receipt (later wins for one index)."""

    index: int
    digest: bytes
    size: int
    at: str


@dataclass(frozen=True, order=True)
class PartRecord:
    """One received S3 part: ``number`` 1..10,000 (0: the blocks of a failed part
    upload), ``at`` the HLC text of its receipt (later wins for one number), ``md5`` its
    16-byte MD5 (the part's ETag), ``size`` in bytes, ``blocks`` its ``(digest, size)``
    list in order (each block at most the cluster's largest chunk)."""

    number: int
    at: str
    md5: bytes
    size: int
    blocks: tuple[tuple[bytes, int], ...]

    @property
    def etag(self) -> str:
        """The part's S3 ETag, unquoted (hex MD5)."""
        return self.md5.hex()


@dataclass(frozen=True)
class UploadSession:
    """A resumable upload session (module docstring)."""

    id: str
    bucket: str
    key: str
    version: str
    null: bool
    chunk_size: int
    created: float
    size: int | None = None
    sha256: str | None = None
    content_type: str = DEFAULT_CONTENT_TYPE
    meta: tuple[tuple[str, str], ...] = ()
    idempotency_key: str = ""
    request_hash: str = ""
    states: frozenset[tuple[str, float]] = frozenset()
    chunks: frozenset[ChunkRecord] = frozenset()
    activity: float = 0.0
    result: dict[str, Any] | None = field(default=None, compare=False)
    kind: str = CHUNKS_KIND
    parts: frozenset[PartRecord] = frozenset()

    @property
    def state(self) -> str:
        """The most advanced state recorded."""
        best = INITIATED
        for name, _ in self.states:
            if _RANK.get(name, 0) > _RANK[best]:
                best = name
        return best

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def total_chunks(self) -> int | None:
        """Number of chunks when the size is known (a 0-byte object has none)."""
        if self.size is None:
            return None
        return -(-self.size // self.chunk_size)

    def current(self) -> dict[int, ChunkRecord]:
        """Index -> the chunk that counts (the latest received)."""
        out: dict[int, ChunkRecord] = {}
        for c in self.chunks:
            mine = out.get(c.index)
            if mine is None or (c.at, c.digest) > (mine.at, mine.digest):
                out[c.index] = c
        return out

    def replaced(self) -> set[bytes]:
        """Digests received for an index and then replaced (not in :meth:`current`)."""
        kept = {c.digest for c in self.current().values()}
        return {c.digest for c in self.chunks} - kept

    def missing(self) -> list[int]:
        """Indices not received yet (only when the size is known; else [])."""
        total = self.total_chunks
        if total is None:
            return []
        have = self.current()
        return [i for i in range(total) if i not in have]

    def current_parts(self) -> dict[int, PartRecord]:
        """Part number (1..) -> the part that counts (the latest received)."""
        out: dict[int, PartRecord] = {}
        for p in self.parts:
            mine = out.get(p.number)
            if p.number > 0 and (mine is None or p > mine):
                out[p.number] = p
        return out

    def part_digests(self) -> set[bytes]:
        """Every block digest of every part ever received (failed ones too)."""
        return {d for p in self.parts for d, _ in p.blocks}

    def bytes_received(self) -> int:
        return sum(c.size for c in self.current().values())

    def received_ranges(self) -> list[list[int]]:
        """Received indices as inclusive ``[first, last]`` ranges."""
        out: list[list[int]] = []
        for i in sorted(self.current()):
            if out and out[-1][1] == i - 1:
                out[-1][1] = i
            else:
                out.append([i, i])
        return out


def _part_of(raw: Any) -> PartRecord:
    number, at, md5, size, blocks = raw
    part = PartRecord(
        int(number),
        str(at),
        bytes(md5),
        int(size),
        tuple((bytes(d), int(n)) for d, n in blocks),
    )
    if (
        part.number < 0
        or not part.at
        or len(part.md5) != 16
        or part.size != sum(n for _, n in part.blocks)
        or any(len(d) != 32 or n <= 0 for d, n in part.blocks)
    ):
        raise ValueError("malformed part record")
    return part


def _first_times(states: Iterable[tuple[str, float]]) -> frozenset[tuple[str, float]]:
    """One ``(state, first time reached)`` per state (a map of minima: a join
    semilattice), so a session record does not grow with every step."""
    first: dict[str, float] = {}
    for name, t in states:
        first[name] = min(t, first.get(name, t))
    return frozenset(first.items())


def _chunk_of(raw: Any) -> ChunkRecord:
    index, digest, size, at = raw
    chunk = ChunkRecord(int(index), bytes(digest), int(size), str(at))
    if chunk.index < 0 or len(chunk.digest) != 32 or chunk.size < 0 or not chunk.at:
        raise ValueError("malformed chunk record")
    return chunk


class UploadsSchema(TableSchema[UploadSession]):
    """Schema of the ``uploads`` table (module docstring)."""

    name = UPLOADS_TABLE
    format_version = 1

    def decode(self, record: Any) -> UploadSession:
        record = self.check_format(record)
        try:
            size = record.get("size")
            sha = record.get("sha256")
            session = UploadSession(
                id=str(record["id"]),
                bucket=str(record["bucket"]),
                key=str(record["key"]),
                version=str(record["version"]),
                null=bool(record.get("null", True)),
                chunk_size=int(record["chunk_size"]),
                created=float(record["created"]),
                size=None if size is None else int(size),
                sha256=None if sha is None else str(sha),
                content_type=str(record.get("content_type") or DEFAULT_CONTENT_TYPE),
                meta=tuple(sorted((str(k), str(v)) for k, v in (record.get("meta") or {}).items())),
                idempotency_key=str(record.get("idempotency_key", "")),
                request_hash=str(record.get("request_hash", "")),
                states=_first_times((str(n), float(t)) for n, t in record.get("states") or ()),
                chunks=frozenset(_chunk_of(c) for c in record.get("chunks") or ()),
                activity=float(record.get("activity", 0.0)),
                result=dict(record["result"]) if record.get("result") else None,
                kind=str(record.get("kind", CHUNKS_KIND)),
                parts=frozenset(_part_of(p) for p in record.get("parts") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed uploads record: {exc}") from exc
        if session.chunk_size <= 0 or any(n not in _RANK for n, _ in session.states):
            raise ValueError("malformed uploads record: bad chunk size or state")
        if session.kind not in KINDS:
            raise ValueError(f"malformed uploads record: unknown kind {session.kind!r}")
        return session

    def encode(self, entry: UploadSession) -> dict[str, Any]:
        record = self._encode_common(entry)
        if entry.kind != CHUNKS_KIND or entry.parts:  # a native session's record is unchanged
            record["kind"] = entry.kind
            record["parts"] = [
                [p.number, p.at, p.md5, p.size, [[d, n] for d, n in p.blocks]]
                for p in sorted(entry.parts)
            ]
        return record

    def _encode_common(self, entry: UploadSession) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "id": entry.id,
            "bucket": entry.bucket,
            "key": entry.key,
            "version": entry.version,
            "null": entry.null,
            "chunk_size": entry.chunk_size,
            "size": entry.size,
            "sha256": entry.sha256,
            "content_type": entry.content_type,
            "meta": dict(entry.meta),
            "created": entry.created,
            "idempotency_key": entry.idempotency_key,
            "request_hash": entry.request_hash,
            "states": sorted([n, t] for n, t in entry.states),
            "chunks": [[c.index, c.digest, c.size, c.at] for c in sorted(entry.chunks)],
            "activity": entry.activity,
            "result": entry.result,
        }

    def merge(self, a: UploadSession, b: UploadSession) -> UploadSession:
        result = a.result if a.result is not None else b.result
        if a.result is not None and b.result is not None:
            result = min(a.result, b.result, key=lambda r: str(sorted(r.items())))
        return UploadSession(
            id=a.id,
            bucket=a.bucket,
            key=a.key,
            version=min(a.version, b.version),
            null=a.null and b.null,
            chunk_size=a.chunk_size,
            created=min(a.created, b.created),
            size=a.size if a.size is not None else b.size,
            sha256=a.sha256 if a.sha256 is not None else b.sha256,
            content_type=a.content_type,
            meta=a.meta,
            idempotency_key=a.idempotency_key,
            request_hash=a.request_hash,
            states=_first_times(a.states | b.states),
            chunks=a.chunks | b.chunks,
            activity=max(a.activity, b.activity),
            result=result,
            kind=max(a.kind, b.kind),
            parts=a.parts | b.parts,
        )

    def tombstone_since(self, entry: UploadSession) -> float | None:
        """A session that ended is kept for the grace (a late step gets a clear 409),
        then purged."""
        ended = [t for n, t in entry.states if n not in OPEN_STATES]
        return max(ended) if ended else None


@dataclass(frozen=True)
class UploadKey:
    """The session an ``Idempotency-Key`` started (first writer wins by ``at``)."""

    upload_id: str
    request_hash: str
    at: str


def upload_key_id(bucket: str, key: str, idempotency_key: str) -> bytes:
    """Table key of an idempotency key for ``bucket/key``."""
    raw = f"{bucket}/{key}".encode() + b"\0" + idempotency_key.encode()
    return hashlib.sha256(raw).digest()


class UploadKeysSchema(TableSchema[UploadKey]):
    """Schema of the ``upload_keys`` table (module docstring)."""

    name = UPLOAD_KEYS_TABLE
    format_version = 1

    def decode(self, record: Any) -> UploadKey:
        record = self.check_format(record)
        try:
            entry = UploadKey(
                str(record["upload_id"]), str(record["request_hash"]), str(record["at"])
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed upload_keys record: {exc}") from exc
        if not entry.upload_id or not entry.at:
            raise ValueError("malformed upload_keys record")
        return entry

    def encode(self, entry: UploadKey) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "upload_id": entry.upload_id,
            "request_hash": entry.request_hash,
            "at": entry.at,
        }

    def merge(self, a: UploadKey, b: UploadKey) -> UploadKey:
        return min(a, b, key=lambda e: (e.at, e.upload_id, e.request_hash))

    def tombstone_since(self, entry: UploadKey) -> float | None:
        """An idempotency key is remembered for the tombstone grace, then purged."""
        return version_unix_s(entry.at)
