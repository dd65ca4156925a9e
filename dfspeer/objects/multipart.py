"""S3 multipart uploads on the resumable-session core (:mod:`dfspeer.objects.sessions`).

A multipart upload is an upload session of kind ``s3`` (:mod:`dfspeer.model.uploads`):
it owns one ``uploading`` object version from its start, like a native session. A part
(1..10,000, 0..5 GiB) streams through the bounded upload pipeline
(:func:`dfspeer.objects.upload.store_body`: memory ``(depth + 2) x chunk``, whatever the
part size) and is cut by the bucket's chunker into blocks of at most the cluster's
largest chunk; every block is written with its ``block_refs`` entry for the session's
version (as :meth:`UploadService.put_chunk` does), then the part is recorded in the
session: ``(number, at, md5, size, blocks)``. A part sent again replaces the earlier one
(latest ``at`` wins).

Complete checks the client's list against the recorded parts (ascending numbers, ETags
equal, every part but the last at least 5 MiB), reads the blocks back to compute the
object's SHA-256 (the native API shows it), then writes the version ``complete`` with the
concatenation of the parts' block lists (no data copied) and the S3 ETag
``hex(MD5(md5_1 || ... || md5_N))-N`` as the reserved ``dfs:etag`` metadata. Blocks of
parts left out of the list (or replaced) are released then; abort releases them all.

The session's header is a quorum read, and a part must not write a block under a
session that has ended. What a part needs before its first block (bucket, key, kind,
version, created) never changes for an upload id, so a :class:`MultipartService` keeps it
(:class:`KnownSessions`, bounded LRU, filled by Create and by each read): a part of a
known upload starts reading its body at once while the header's quorum read (is the
upload still open?) runs beside it, and its first block waits for that answer. The
check is the same as without the cache (an ended upload is NoSuchUpload with no block
written); its round trip is off the part's critical path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence

from dfspeer.errors import DfsError, NoSuchUpload, UploadNotOpen
from dfspeer.model.uploads import (
    COMPLETED,
    PARTS_KIND,
    PartRecord,
    UploadSession,
)
from dfspeer.objects.cdc import chunker_for
from dfspeer.objects.info import RESERVED_META_PREFIX, ObjectInfo
from dfspeer.objects.sessions import UploadService
from dfspeer.objects.upload import store_body

log = logging.getLogger(__name__)

ETAG_META = RESERVED_META_PREFIX + "etag"
MiB = 1024 * 1024
MIN_PART_BYTES = 5 * MiB
MAX_PART_BYTES = 5 * 1024 * MiB
MAX_PART_NUMBER = 10_000
READ_AHEAD_BLOCKS = 4
KNOWN_SESSIONS = 4096
"""Upload sessions whose fixed fields a :class:`MultipartService` keeps (LRU)."""


class InvalidPart(DfsError):
    """A listed part was not uploaded, or its ETag differs."""

    code, status = "invalid_part", 400


class InvalidPartOrder(DfsError):
    """The listed part numbers are not in ascending order."""

    code, status = "invalid_part_order", 400


class EntityTooSmall(DfsError):
    """A part other than the last is under 5 MiB."""

    code, status = "entity_too_small", 400


def multipart_etag(md5s: Sequence[bytes]) -> str:
    """S3's ETag of a multipart object (unquoted): hex MD5 of the parts' MD5s, ``-N``."""
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"


async def blocks_sha256(
    read_block: Callable[[bytes], Awaitable[bytes]],
    blocks: Sequence[tuple[bytes, int]],
) -> tuple[str, int]:
    """SHA-256 hex and size of ``blocks`` (``(digest, size)``) read in order through
    ``read_block(digest)`` (verified reads), ``READ_AHEAD_BLOCKS`` in flight; hashing runs
    on a thread. Memory: the blocks in flight."""
    whole = hashlib.sha256()
    size = 0
    pending: list[asyncio.Task[bytes]] = []
    nxt = 0

    def refill() -> None:
        nonlocal nxt
        while nxt < len(blocks) and len(pending) < READ_AHEAD_BLOCKS:
            pending.append(asyncio.ensure_future(read_block(blocks[nxt][0])))
            nxt += 1

    try:
        refill()
        while pending:
            data = await pending.pop(0)
            refill()
            await asyncio.to_thread(whole.update, data)
            size += len(data)
    finally:
        for task in pending:
            task.cancel()
    return whole.hexdigest(), size


def _settle(task: asyncio.Task[UploadSession]) -> None:
    """Cancel ``task``, or take its exception (it is answered by another error)."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


class KnownSessions:
    """Headers of recently seen upload sessions by id (at most ``limit``, least recently
    used dropped). Only their fixed fields (bucket, key, kind, version, created) may be
    relied on: state and activity are as they were when seen."""

    def __init__(self, limit: int = KNOWN_SESSIONS) -> None:
        self.limit = limit
        self._by_id: OrderedDict[str, UploadSession] = OrderedDict()

    def get(self, upload_id: str) -> UploadSession | None:
        found = self._by_id.get(upload_id)
        if found is not None:
            self._by_id.move_to_end(upload_id)
        return found

    def put(self, session: UploadSession) -> None:
        self._by_id[session.id] = session
        self._by_id.move_to_end(session.id)
        while len(self._by_id) > self.limit:
            self._by_id.popitem(last=False)


class MultipartService:
    """S3 multipart uploads (module docstring) over ``uploads``. Sizes in bytes. Every
    method may raise InsufficientReplicas; an id that is not an open ``s3`` session is
    NoSuchUpload. Keep one instance per peer: it holds the :class:`KnownSessions`."""

    def __init__(self, uploads: UploadService) -> None:
        self.uploads = uploads
        self.objects = uploads.objects
        self.replicator = uploads.replicator
        self.config = uploads.config
        self.known = KnownSessions()

    async def session(self, upload_id: str, bucket: str, key: str) -> UploadSession:
        """The ``s3`` session ``upload_id`` of ``bucket/key`` (any state). Raises
        NoSuchUpload."""
        session = await self.uploads.get(upload_id)
        if session.kind != PARTS_KIND or (session.bucket, session.key) != (bucket, key):
            raise NoSuchUpload(f"no multipart upload {upload_id} for {bucket}/{key}")
        return session

    async def open_session(self, upload_id: str, bucket: str, key: str) -> UploadSession:
        """As :meth:`session` (without the parts), but an ended one is NoSuchUpload too."""
        session = await self.uploads.header(upload_id)
        self._check_target(session, bucket, key)
        self.known.put(session)
        if not session.is_open:
            raise NoSuchUpload(f"multipart upload {upload_id} is {session.state}")
        return session

    @staticmethod
    def _check_target(session: UploadSession, bucket: str, key: str) -> None:
        if session.kind != PARTS_KIND or (session.bucket, session.key) != (bucket, key):
            raise NoSuchUpload(f"no multipart upload {session.id} for {bucket}/{key}")

    async def create(
        self, bucket: str, key: str, *, content_type: str, meta: Mapping[str, str]
    ) -> UploadSession:
        """Start a multipart upload of ``bucket/key`` (the bucket must exist: the caller
        checks). Raises InvalidKey, TooManyUploads."""
        session, _ = await self.uploads.init(
            bucket, key, content_type=content_type, meta=meta, kind=PARTS_KIND
        )
        self.known.put(session)
        return session

    async def _part_session(
        self, upload_id: str, bucket: str, key: str
    ) -> tuple[UploadSession, asyncio.Task[UploadSession] | None]:
        """The session a part is stored under and, when it came from :attr:`known`, the
        running check that it is still open (module docstring). Raises NoSuchUpload."""
        known = self.known.get(upload_id)
        if known is None:
            return await self.open_session(upload_id, bucket, key), None
        self._check_target(known, bucket, key)
        return known, asyncio.ensure_future(self.open_session(upload_id, bucket, key))

    async def upload_part(
        self,
        upload_id: str,
        bucket: str,
        key: str,
        number: int,
        body: AsyncIterable[bytes],
        md5: Callable[[], bytes],
        *,
        content_length: int | None,
        expected_sha256: str | None = None,
    ) -> PartRecord:
        """Store part ``number`` from ``body``; ``md5()`` gives the body's MD5 once it has
        been read (the caller's stream computes it and checks ``Content-MD5``). Raises
        NoSuchUpload, InvalidArgument, EntityTooLarge (over 5 GiB), IncompleteBody,
        BadDigest (nothing recorded)."""
        session, still_open = await self._part_session(upload_id, bucket, key)
        info = await self.objects.buckets.read(bucket, cached=True)
        chunker, largest = chunker_for(info.chunking if info else "fixed", self.config)
        written: list[tuple[bytes, int]] = []

        async def write_block(data: bytes, digest: bytes) -> int:
            if still_open is not None:
                await still_open  # no block under an upload that has ended
            ref = self.objects.ref_record(
                digest, session.version, session.bucket, session.key, session.created
            )
            acks = await self.replicator.write_block(data, digest, ref=ref)
            written.append((digest, len(data)))
            return acks

        try:
            stored = await store_body(
                body,
                write_block,
                chunker=chunker,
                chunk_size=largest,
                inline_threshold=-1,  # a part is always blocks
                depth=self.config.upload_pipeline_depth,
                max_bytes=MAX_PART_BYTES,
                content_length=content_length,
                expected_sha256=expected_sha256,
            )
            if still_open is not None:
                session = await still_open  # the current header (activity, state)
        except BaseException:
            if still_open is not None:
                _settle(still_open)
            if written:  # recorded as part 0 so completion / abort release them
                size = sum(n for _, n in written)
                lost = PartRecord(0, self._now(), bytes(16), size, tuple(written))
                await asyncio.shield(self._record_quietly(session, lost))
            raise
        part = PartRecord(number, self._now(), md5(), stored.size, stored.chunks)
        await self._record(session, part)
        return part

    def _now(self) -> str:
        return str(self.uploads.clock.next_version(self.uploads.self_id))

    async def _record(self, session: UploadSession, part: PartRecord) -> None:
        await self.uploads.record_element(session, part)

    async def _record_quietly(self, session: UploadSession, part: PartRecord) -> None:
        # on failure the blocks stay referenced by the session's version (a leak, logged)
        try:
            await self._record(session, part)
        except DfsError as exc:
            log.warning("blocks of a failed part of upload %s not recorded: %s", session.id, exc)

    async def complete(
        self, upload_id: str, bucket: str, key: str, wanted: Sequence[tuple[int, str]]
    ) -> ObjectInfo:
        """Make the parts ``wanted`` (``(number, etag)``, ascending) the object's new
        version; returns its info (the same again for a completed upload). Raises
        NoSuchUpload, InvalidPart, InvalidPartOrder, EntityTooSmall."""
        session = await self.session(upload_id, bucket, key)
        if session.state == COMPLETED and session.result is not None:
            return await self.objects.stat_object(
                bucket, key, version=str(session.result["version"])
            )
        if not session.is_open:
            raise UploadNotOpen(f"multipart upload {upload_id} is {session.state}")
        parts = self.check_parts(session, wanted)
        blocks = tuple(b for p in parts for b in p.blocks)
        sha, size = await blocks_sha256(self.replicator.read_block, blocks)
        meta = {**dict(session.meta), ETAG_META: multipart_etag([p.md5 for p in parts])}
        sizes = tuple(p.size for p in parts)
        return await self.uploads.publish(session, blocks, size, sha, meta, sizes)

    @staticmethod
    def check_parts(session: UploadSession, wanted: Sequence[tuple[int, str]]) -> list[PartRecord]:
        """The recorded parts ``wanted`` names, in order. Raises InvalidPartOrder,
        InvalidPart, EntityTooSmall."""
        current = session.current_parts()
        out: list[PartRecord] = []
        last = 0
        for number, etag in wanted:
            if number <= last:
                raise InvalidPartOrder("The list of parts was not in ascending order.")
            last = number
            part = current.get(number)
            if part is None or etag.strip().strip('"').lower() != part.etag:
                raise InvalidPart(
                    f"Part {number} could not be found or its ETag did not match the part's."
                )
            out.append(part)
        for part in out[:-1]:
            if part.size < MIN_PART_BYTES:
                raise EntityTooSmall(
                    f"Part {part.number} is {part.size} bytes; every part but the last "
                    f"must be at least {MIN_PART_BYTES}."
                )
        return out

    async def abort(self, upload_id: str, bucket: str, key: str) -> None:
        """Abort an open upload and release every block of its parts. Raises
        NoSuchUpload."""
        await self.open_session(upload_id, bucket, key)
        await self.uploads.abort(upload_id)

    async def list_open(self, bucket: str, *, limit: int) -> list[UploadSession]:
        """Open multipart uploads of ``bucket`` (without their parts), oldest first."""
        return await self.uploads.list_open(bucket, limit=limit, kind=PARTS_KIND)
