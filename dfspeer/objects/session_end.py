"""The end of an upload session without completion (:mod:`dfspeer.objects.sessions`):
abort, and expiry of sessions idle for ``upload_expiry_s``, both of which release every
received chunk's and part's reference at once; and the listing of open sessions."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from dfspeer.errors import DfsError, UploadNotOpen
from dfspeer.model.objects import ABORTED, ObjectVersion
from dfspeer.model.uploads import ABORTED as SESSION_ABORTED
from dfspeer.model.uploads import CHUNKS_KIND, EXPIRED, UPLOADS_TABLE, UploadSession
from dfspeer.objects.names import validate_bucket
from dfspeer.objects.session_records import SessionRecords
from dfspeer.objects.versioned_put import release_refs

log = logging.getLogger("dfspeer.objects.sessions")

MAX_LISTED = 1000


class SessionEndMixin(SessionRecords):
    """:class:`~dfspeer.objects.sessions.UploadService` calls that abort, expire and list
    sessions."""

    async def abort(self, upload_id: str) -> None:
        """Abort an open session and release its chunks now. Raises NoSuchUpload,
        UploadNotOpen."""
        session = await self.get(upload_id)
        if not session.is_open:
            raise UploadNotOpen(f"upload {upload_id} is {session.state}")
        await self._end(session, SESSION_ABORTED)

    async def _end(self, session: UploadSession, state: str) -> None:
        """Mark the session ``state`` (aborted / expired), abort its version, release every
        chunk it received (best effort: the lifecycle sweep finishes what fails)."""
        now = time.time()
        await self._write(
            replace(
                session,
                chunks=frozenset(),
                parts=frozenset(),
                states=frozenset({(state, now)}),
                activity=now,
                result=None,
            )
        )
        try:
            await self.objects.write_version(
                session.bucket, session.key, ObjectVersion(session.version, ABORTED)
            )
        except DfsError as exc:
            log.debug("abort of the version of upload %s deferred: %s", session.id, exc)
        digests = {c.digest for c in session.chunks} | session.part_digests()
        await release_refs(self.replicator, digests, session.version, session.bucket, session.key)
        await self._end_elements(session, now)

    # ------------------------------------------------------------------ listing / expiry
    async def list_open(
        self, bucket: str, *, limit: int = MAX_LISTED, kind: str | None = CHUNKS_KIND
    ) -> list[UploadSession]:
        """Open sessions of ``bucket`` of ``kind`` (None: any; at most ``limit``), oldest
        first, read without their chunk and part lists."""
        validate_bucket(bucket)
        out: list[UploadSession] = await self.replicator.scan_entries(
            UPLOADS_TABLE,
            lambda s: s.bucket == bucket and s.is_open and kind in (None, s.kind),
            limit=limit,
            omit=("chunks", "parts"),
        )
        return sorted(out, key=lambda s: (s.created, s.id))[:limit]

    async def expire_once(self) -> int:
        """Expire the open sessions idle for ``upload_expiry_s`` (those whose id this peer
        is the first replica of); returns how many."""
        horizon = time.time() - self.config.upload_expiry_s
        view = self.objects.view
        expired = 0
        for key, record in self.objects.store.table(UPLOADS_TABLE).iter_items():
            try:
                session = self.schema.decode(record)
            except ValueError:
                continue
            if not session.is_open or session.activity >= horizon:
                continue
            if view.replicas(view.partition_of(key))[:1] != (self.self_id,):
                continue
            try:
                await self._end(await self.with_elements(session), EXPIRED)
                expired += 1
            except DfsError as exc:
                log.debug("expiry of upload %s deferred: %s", session.id, exc)
        return expired
