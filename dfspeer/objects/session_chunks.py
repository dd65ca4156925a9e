"""Chunk upload of a native upload session (:mod:`dfspeer.objects.sessions`): a chunk is
a block written with quorum W together with its ``block_refs`` entry for the session's
version, then recorded in the session. A re-sent chunk with the same bytes changes
nothing; one re-sent with other bytes replaces it (the replaced block is released when the
session ends)."""

from __future__ import annotations

import asyncio
import hashlib

from dfspeer.errors import BadDigest, InvalidArgument, InvalidChunkSize, UploadNotOpen
from dfspeer.model.upload_parts import CHUNK_KIND
from dfspeer.model.uploads import ChunkRecord, UploadSession
from dfspeer.objects.session_records import SessionRecords, _native
from dfspeer.objects.upload import check_expected_sha256


class SessionChunksMixin(SessionRecords):
    """:class:`~dfspeer.objects.sessions.UploadService` calls on a native session's
    chunks."""

    # ------------------------------------------------------------------ chunks
    async def put_chunk(
        self,
        upload_id: str,
        index: int,
        data: bytes,
        *,
        expected_sha256: str | None = None,
        session: UploadSession | None = None,
    ) -> ChunkRecord:
        """Store chunk ``index`` of the session; returns what was recorded. ``session``:
        its header when the caller has just read it. Raises NoSuchUpload, UploadNotOpen,
        InvalidArgument (index), InvalidChunkSize, BadDigest (nothing recorded)."""
        if session is None or session.id != upload_id:
            session = await self.header(upload_id)
        _native(session)
        if not session.is_open:
            raise UploadNotOpen(f"upload {upload_id} is {session.state}")
        self._check_chunk(session, index, len(data))
        expected = check_expected_sha256(expected_sha256)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        if expected is not None and digest.hex() != expected:
            raise BadDigest(f"chunk hashes to {digest.hex()}, not to X-Chunk-SHA256 {expected}")
        ref = self.objects.ref_record(
            digest, session.version, session.bucket, session.key, session.created
        )
        # what the index holds and the (idempotent) block write travel at once
        earlier, _ = await asyncio.gather(
            self.with_elements(session, index, CHUNK_KIND),
            self.replicator.write_block(data, digest, ref=ref),
        )
        have: ChunkRecord | None = earlier.current().get(index)
        if have is not None and have.digest == digest:
            return have  # the same bytes again: nothing new is recorded
        chunk = ChunkRecord(index, digest, len(data), self._now_version())
        await self.record_element(session, chunk)
        return chunk

    def _check_chunk(self, session: UploadSession, index: int, size: int) -> None:
        if index < 0 or index >= self.config.upload_max_chunks:
            raise InvalidArgument(
                f"chunk index must be in 0..{self.config.upload_max_chunks - 1}, got {index}"
            )
        total = session.total_chunks
        if total is not None:
            if index >= total:
                raise InvalidArgument(f"chunk {index} is beyond the declared size ({total} chunks)")
            want = session.chunk_size
            if index == total - 1:
                want = session.size - index * session.chunk_size  # type: ignore[operator]
            if size != want:
                raise InvalidChunkSize(f"chunk {index} must be {want} bytes, got {size}")
        elif not 0 < size <= session.chunk_size:
            raise InvalidChunkSize(
                f"a chunk is 1..{session.chunk_size} bytes (all but the last exactly that)"
            )
