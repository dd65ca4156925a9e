"""Resumable file uploads of :class:`dfspeer.client.Client` (:meth:`upload_file`): a
session per file, resumed after a crash from its state file (:mod:`dfspeer.resume_state`)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dfspeer import errors
from dfspeer.client.sessions import OPEN_UPLOAD_STATES, SessionsMixin, UploadJson
from dfspeer.errors import DfsError
from dfspeer.resume_state import FileIdentity, ResumeStore, new_state

UploadProgress = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)`` of :meth:`Client.upload_file` (bytes)."""

CHUNK_RETRIES = 2
CHUNK_RETRY_DELAY_S = 0.5
MAX_SESSION_CHUNKS = 10_000  # the server's default ``upload_max_chunks``
DEFAULT_SESSION_CHUNK_BYTES = 2 * 1024 * 1024  # the server's default ``chunk_size_bytes``


@dataclass
class UploadStats:
    """What one :meth:`Client.upload_file` call did (sizes in bytes), filled in as it goes:
    ``upload_id`` and ``chunk_size`` of the session used, ``resumed`` when it continued a
    session started earlier, ``stored_bytes`` already on the server when the transfer
    started, ``sent_bytes`` / ``chunks_sent`` the chunk bodies this call sent (retries
    included), ``sessions`` how many sessions it used (2 when a stale one was replaced)."""

    upload_id: str = ""
    chunk_size: int = 0
    total_bytes: int = 0
    resumed: bool = False
    stored_bytes: int = 0
    sent_bytes: int = 0
    chunks_sent: int = 0
    sessions: int = 0


class _StaleSession(Exception):
    """The resumed session cannot finish this file (gone, closed, or its chunks are not
    this file's): start a new one."""


def _session_chunk_size(size: int, requested: int | None) -> int | None:
    """``requested``, else None (the server's default) unless the file needs more than
    the default chunk count at the default size: then a whole number of MiB that fits."""
    if requested is not None:
        return requested
    if size <= MAX_SESSION_CHUNKS * DEFAULT_SESSION_CHUNK_BYTES:
        return None
    mib = 1024 * 1024
    return -(-size // (MAX_SESSION_CHUNKS * mib)) * mib


def _read_chunk(
    f: BinaryIO, offset: int, length: int, whole: Any, want_digest: bool
) -> tuple[bytes, str]:
    """Read ``length`` bytes at ``offset``, feed them to ``whole`` (the file's running
    SHA-256) and return them with their own hex SHA-256 (``""`` unless ``want_digest``).
    Runs in a worker thread (hashlib releases the GIL on large buffers)."""
    f.seek(offset)
    data = f.read(length)
    if len(data) != length:
        raise DfsError(
            f"{getattr(f, 'name', 'file')} changed during the upload: read {len(data)} of "
            f"{length} bytes at offset {offset}",
            code="file_changed",
            status=400,
        )
    whole.update(data)
    return data, hashlib.sha256(data).hexdigest() if want_digest else ""


def _count_session(stats: UploadStats, session: UploadJson, resumed: bool) -> None:
    """Note in ``stats`` the session an upload now uses."""
    stats.sessions += 1
    stats.upload_id, stats.chunk_size = session["upload_id"], session["chunk_size"]
    stats.resumed = resumed


class UploadsMixin(SessionsMixin):
    """:class:`~dfspeer.client.Client`'s resumable file upload (:meth:`upload_file`)."""

    async def upload_file(
        self,
        path: Path | str,
        bucket: str,
        key: str,
        *,
        resume: bool = True,
        chunk_size: int | None = None,
        parallel: int = 4,
        progress: UploadProgress | None = None,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        stats: UploadStats | None = None,
        state_store: ResumeStore | None = None,
    ) -> dict[str, Any]:
        """Upload the file at ``path`` as ``bucket/key`` through a resumable session;
        returns the object JSON (as :meth:`put_object`).

        The session's Idempotency-Key comes from the file's identity (absolute path, size,
        mtime, bucket/key), and its state (upload id, peer URL, chunk size, identity) is
        kept in a JSON file of ``state_store`` (default: under ``$XDG_CACHE_HOME``, see
        :mod:`dfspeer.resume_state`), so after a crash the same call — through any peer —
        resumes it: only the chunks the server says are missing are sent, ``parallel``
        at a time. The file is read once, in order, and its SHA-256 computed on the way;
        completion checks it. The state file is removed once the object exists. A saved
        session that is gone or closed (404 / 409) is replaced by a new one; so is one
        whose chunks turn out not to be this file's (``bad_digest`` at completion).
        ``resume=False`` always starts a new session. ``chunk_size`` in bytes (default:
        the server's). ``progress(bytes_done, bytes_total)`` is called first with the bytes
        already stored, then after every chunk. ``stats`` (an :class:`UploadStats`) is
        filled in. Raises DfsError (the state stays: run again to resume), OSError."""
        if parallel < 1:
            raise ValueError("parallel must be >= 1")
        identity = FileIdentity.of(path, bucket, key)
        store = state_store if state_store is not None else ResumeStore()
        stats = stats if stats is not None else UploadStats()
        stats.total_bytes = identity.size
        fresh = not resume
        while True:
            session, resumed = await self._session_for(
                identity,
                store,
                fresh=fresh,
                chunk_size=chunk_size,
                content_type=content_type,
                metadata=metadata,
            )
            _count_session(stats, session, resumed)
            try:
                info = await self._send_file(identity, session, parallel, progress, stats)
            except _StaleSession:
                if not resumed:
                    raise AssertionError("a new session cannot be stale") from None
                store.remove(identity)
                fresh = True
                continue
            store.remove(identity)
            return info

    async def _session_for(
        self,
        identity: FileIdentity,
        store: ResumeStore,
        *,
        fresh: bool,
        chunk_size: int | None,
        content_type: str | None,
        metadata: dict[str, str] | None,
    ) -> tuple[UploadJson, bool]:
        """The session to use and whether it was started before (its chunks count)."""
        saved = None if fresh else store.load(identity)
        if saved is not None:
            try:
                found = await self.get_upload(saved.upload_id)
            except errors.NoSuchUpload:
                found = None
            if found is not None and (
                found["state"] in OPEN_UPLOAD_STATES or found["state"] == "completed"
            ):
                return found, True
            store.remove(identity)
        ikey = identity.digest()
        if fresh:
            ikey += "-" + secrets.token_hex(8)
        request: dict[str, Any] = {
            "size": identity.size,
            "chunk_size": _session_chunk_size(identity.size, chunk_size),
            "content_type": content_type,
            "metadata": metadata,
        }
        found_open: tuple[UploadJson, bool] | None = None
        with contextlib.suppress(errors.IdempotencyConflict):  # asked with other options
            found_open = await self.init_upload(
                identity.bucket, identity.key, idempotency_key=ikey, **request
            )
        if found_open is not None and found_open[0]["state"] in OPEN_UPLOAD_STATES:
            session, created = found_open
        else:
            # this identity's earlier session ended, or was started with other options
            session, created = await self.init_upload(
                identity.bucket,
                identity.key,
                idempotency_key=f"{ikey}-{secrets.token_hex(8)}",
                **request,
            )
        state = new_state(
            session["upload_id"], self.base_url, session["chunk_size"], ikey, identity
        )
        await asyncio.to_thread(store.save, state)
        return session, not created

    async def _send_file(
        self,
        identity: FileIdentity,
        session: UploadJson,
        parallel: int,
        progress: UploadProgress | None,
        stats: UploadStats,
    ) -> dict[str, Any]:
        """Send the missing chunks of ``session`` from the file, then complete it (at once
        when the server has completed it already)."""
        upload_id, chunk = session["upload_id"], session["chunk_size"]
        if session["state"] == "completed":
            return await self.complete_upload(upload_id)
        size = identity.size
        if session["size"] != size:
            raise _StaleSession
        try:
            missing = set(await self.missing_chunks(upload_id))
        except errors.NoSuchUpload:
            raise _StaleSession from None
        count = -(-size // chunk)
        sizes = [min(chunk, size - i * chunk) for i in range(count)]
        done = size - sum(sizes[i] for i in missing)
        stats.stored_bytes = done
        if progress is not None:
            progress(done, size)
        try:
            whole = await self._send_chunks(
                identity, session, sizes, missing, parallel, progress, stats
            )
        except (errors.NoSuchUpload, errors.UploadNotOpen):
            if stats.resumed:
                raise _StaleSession from None
            raise
        try:
            return await self.complete_upload(upload_id, sha256=whole)
        except (errors.NoSuchUpload, errors.UploadNotOpen, errors.BadDigest):
            if not stats.resumed:
                raise
            # chunks of another file (or the session ended meanwhile): give it up
            with contextlib.suppress(DfsError):
                await self.abort_upload(upload_id)
            raise _StaleSession from None

    async def _send_chunks(
        self,
        identity: FileIdentity,
        session: UploadJson,
        sizes: list[int],
        missing: set[int],
        parallel: int,
        progress: UploadProgress | None,
        stats: UploadStats,
    ) -> str:
        """Send the ``missing`` chunks of ``session`` (chunk ``i``: ``sizes[i]`` bytes),
        ``parallel`` at a time, reading the file once, in order; its hex SHA-256."""
        upload_id, chunk = session["upload_id"], session["chunk_size"]
        size, done, count = identity.size, stats.stored_bytes, len(sizes)
        whole = hashlib.sha256()
        slots = asyncio.Semaphore(parallel)
        pending: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []

        async def send(index: int, data: bytes, digest: str) -> None:
            nonlocal done
            try:
                await self._put_chunk_retrying(upload_id, index, data, digest, stats)
            except BaseException as exc:
                failures.append(exc)
                raise
            finally:
                slots.release()
            done += len(data)
            if progress is not None:
                progress(done, size)

        try:
            with open(identity.path, "rb") as f:
                for index in range(count):
                    wanted = index in missing
                    if wanted:
                        await slots.acquire()
                    if failures:
                        if wanted:
                            slots.release()
                        break
                    data, digest = await asyncio.to_thread(
                        _read_chunk, f, index * chunk, sizes[index], whole, wanted
                    )
                    if wanted:
                        task = asyncio.create_task(send(index, data, digest))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    del data
                if pending:
                    await asyncio.gather(*pending)
                if failures:
                    raise failures[0]
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        return whole.hexdigest()

    async def _put_chunk_retrying(
        self, upload_id: str, index: int, data: bytes, digest: str, stats: UploadStats
    ) -> None:
        """:meth:`put_chunk`, retried ``CHUNK_RETRIES`` times (0.5 s, 1 s apart) when the
        peer is unreachable or answers 5xx (a chunk is idempotent)."""
        for attempt in range(CHUNK_RETRIES + 1):
            stats.sent_bytes += len(data)
            stats.chunks_sent += 1
            try:
                await self.put_chunk(upload_id, index, data, sha256=digest)
                return
            except DfsError as exc:
                if exc.status < 500 or attempt == CHUNK_RETRIES:
                    raise
            await asyncio.sleep(CHUNK_RETRY_DELAY_S * 2**attempt)
