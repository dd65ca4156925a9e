"""PeerRpcClient: signed HTTP calls to another peer's ``/internal/`` routes.

One :class:`aiohttp.ClientSession` (keep-alive pool) per peer process, created on first use.
Every request is signed and every answer's signature checked (:mod:`dfspeer.cluster.auth`).
Bodies: raw bytes for blocks, CBOR for records and scans, JSON for status. Record reads and
writes go as messages on the peer channel (:mod:`.channel`, one WebSocket per peer) unless
``channel=False``, the peer has none, or the record is too large for a message.

Errors (every one a :class:`dfspeer.errors.DfsError`): a transport failure or a timeout
(``timeout_s`` per request, total) raises :class:`PeerUnreachable` (503
``peer_unreachable``); an unsigned / malformed answer raises :class:`RpcError` (502
``peer_error``); an error answer raises :class:`RpcError` with the peer's ``status`` and
``code`` -- :class:`PeerStoreFull` (also an :class:`~dfspeer.errors.InsufficientStorage`)
when the peer's store is full (507 ``store_full`` / ``insufficient_storage``); a missing
block raises :class:`dfspeer.blockstore.BlockNotFound`; a missing record is ``None``. The
replicator counts any of them as a failed ack and moves on. :class:`RpcError` and
:class:`PeerUnreachable` are defined in :mod:`dfspeer.errors` and re-exported here.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import cbor2
from prometheus_client import CollectorRegistry, Histogram
from yarl import URL

from dfspeer.blockstore import BlockNotFound
from dfspeer.cluster.auth import EMPTY_SHA256, HEADER_SIGNATURE, RpcAuth
from dfspeer.cluster.block_payload import BlockBody
from dfspeer.cluster.channel import PeerChannels
from dfspeer.cluster.rpc_base import (
    MAX_RECORD_BYTES,
    MAX_SCAN_LIMIT,
    STORE_FULL_CODES,
    TABLE_NAME_RE,
    PeerStoreFull,
    answer_error,
    check_table_name,
    observe,
    sha256_hex,
)
from dfspeer.cluster.rpc_channel import HTTP, ChannelRpcMixin
from dfspeer.cluster.tracing_hooks import traced_rpc
from dfspeer.errors import PeerUnreachable, RpcError, Unauthorized
from dfspeer.gossip import Keyring
from dfspeer.tracing import inject

__all__ = [
    "MAX_RECORD_BYTES",
    "MAX_SCAN_LIMIT",
    "STORE_FULL_CODES",
    "TABLE_NAME_RE",
    "PeerRpcClient",
    "PeerStoreFull",
    "PeerUnreachable",
    "RpcError",
    "check_table_name",
    "sha256_hex",
]


RPC_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


class PeerRpcClient(ChannelRpcMixin):
    """Signed requests to peers' ``/internal/`` API. ``timeout_s``: per request, total.

    ``address`` arguments are a peer's API ``host:port``, dialled over https with ``tls``
    (a client context of :mod:`dfspeer.tls`), else plain http. ``registry``: where the
    ``dfspeer_rpc_duration_seconds{peer,method,outcome}`` histogram goes (seconds per call,
    by the peer's address, method ``CHANNEL`` for calls on the peer channel; none: not
    measured). ``channel``: send record reads and writes on the peer channel. Call
    :meth:`close` when done.
    """

    def __init__(
        self,
        keyring: Keyring,
        self_id: str,
        *,
        timeout_s: float,
        connections_per_peer: int = 32,
        registry: CollectorRegistry | None = None,
        tls: ssl.SSLContext | None = None,
        channel: bool = True,
    ) -> None:
        self._latency = (
            Histogram(
                "dfspeer_rpc_duration_seconds",
                "Peer RPC calls, seconds from request to the whole answer, by peer address, "
                "method and outcome (ok, error, unreachable).",
                ["peer", "method", "outcome"],
                registry=registry,
                buckets=RPC_BUCKETS_S,
            )
            if registry is not None
            else None
        )
        self._auth = RpcAuth(keyring, self_id)
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 5.0))
        self._per_peer = connections_per_peer
        self._tls = tls
        self._scheme = "https" if tls is not None else "http"
        self._session: aiohttp.ClientSession | None = None
        self.self_id = self_id
        self._channels = (
            PeerChannels(self._auth, self._get_session, scheme=self._scheme, timeout_s=timeout_s)
            if channel
            else None
        )

    @property
    def tls(self) -> ssl.SSLContext | None:
        """The client TLS context peers are dialled with (None: plain http)."""
        return self._tls

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=self._per_peer, ssl=self._tls or True
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        """Close the peer channels and the connection pool (idempotent)."""
        if self._channels is not None:
            await self._channels.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ transport
    @traced_rpc  # a client span per call (dfspeer.cluster.tracing_hooks)
    async def _call(
        self,
        method: str,
        address: str,
        path_qs: str,
        *,
        body: bytes | BlockBody | None = None,
        body_sha256: str | None = None,
        content_type: str = "application/cbor",
        max_bytes: int = MAX_RECORD_BYTES,
    ) -> tuple[int, str, bytes]:
        """Send one signed request; return (status, claimed body sha256, body)."""
        if body is not None and body_sha256 is None:
            raw = body if isinstance(body, bytes) else await body.as_bytes()
            body_sha256 = await sha256_hex(raw)
        headers = self._auth.sign_request(method, path_qs, body_sha256 or EMPTY_SHA256)
        inject(headers)  # W3C traceparent: not covered by the signature
        if body is not None:
            headers["Content-Type"] = content_type
        url = URL(f"{self._scheme}://{address}{path_qs}", encoded=True)
        started = time.perf_counter()
        outcome = "unreachable"
        try:
            async with self._get_session().request(method, url, data=body, headers=headers) as resp:
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise RpcError(f"{address}: answer of {resp.content_length} bytes is too large")
                data = await resp.read()
                status = resp.status
                claimed = self._auth.verify_response(
                    headers[HEADER_SIGNATURE], status, resp.headers
                )
                outcome = "ok" if status < 500 else "error"
        except Unauthorized as exc:
            outcome = "error"
            raise RpcError(f"{address}: {exc.message}", status=401, code="unauthorized") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerUnreachable(f"{address}: {type(exc).__name__}: {exc}") from exc
        finally:
            observe(self._latency, address, method, outcome, started)
        return status, claimed, data

    @staticmethod
    def _error(address: str, status: int, data: bytes) -> RpcError:
        code, message = "unknown", data[:200].decode("utf-8", "replace")
        try:
            err = json.loads(data)["error"]
            code, message = str(err["code"]), str(err["message"])
        except (ValueError, KeyError, TypeError):
            pass
        return answer_error(address, status, code, message)

    async def _checked_body(self, address: str, claimed: str, data: bytes) -> bytes:
        if await sha256_hex(data) != claimed:
            raise RpcError(f"{address}: answer body does not match its signed hash")
        return data

    # ------------------------------------------------------------------ blocks
    async def put_block(
        self,
        address: str,
        digest: bytes,
        data: bytes,
        *,
        ref: Any | None = None,
        linger: bool = False,
    ) -> None:
        """Store a block on a peer; returns once it is durable there. ``ref``: a
        ``block_refs`` record stored with the block in the same transaction; ``linger``:
        more blocks follow at once, the peer may wait a moment to commit them together."""
        params = [f"ref={cbor2.dumps(ref, canonical=True).hex()}"] if ref is not None else []
        if linger:
            params.append("linger=1")
        query = "?" + "&".join(params) if params else ""
        status, _, body = await self._call(
            "PUT",
            address,
            f"/internal/blocks/{digest.hex()}{query}",
            body=BlockBody(data),  # sent from ``data`` without copies
            body_sha256=digest.hex(),
            content_type="application/octet-stream",
        )
        if status not in (200, 201, 204):
            raise self._error(address, status, body)

    async def _get_block(self, address: str, digest: bytes, query: str) -> tuple[str, bytes]:
        """``GET /internal/blocks/{digest}{query}``: (claimed body SHA-256, body). Raises
        BlockNotFound (404) or RpcError."""
        status, claimed, body = await self._call(
            "GET",
            address,
            f"/internal/blocks/{digest.hex()}{query}",
            max_bytes=64 * 1024 * 1024 + 1,
        )
        if status == 404:
            raise BlockNotFound(digest)
        if status != 200:
            raise self._error(address, status, body)
        return claimed, body

    async def get_block(self, address: str, digest: bytes) -> bytes:
        """Fetch a block. Raises BlockNotFound (404) or RpcError. NOT verified here: the
        caller hashes the bytes (see Replicator.read_block)."""
        claimed, body = await self._get_block(address, digest, "")
        if claimed != digest.hex():
            raise RpcError(f"{address}: answered a different block than asked")
        return body

    async def get_block_range(self, address: str, digest: bytes, lo: int, hi: int) -> bytes:
        """Bytes ``[lo, hi)`` of a block (``hi`` within it), which the peer checked against
        its segment sums and which are checked here against the answer's signed SHA-256.
        Raises BlockNotFound (404) or RpcError (also for an answer of another length, e.g.
        the whole block from a peer that predates ranged reads)."""
        claimed, body = await self._get_block(address, digest, f"?range={lo}-{hi}")
        data = await self._checked_body(address, claimed, body)
        if len(data) != hi - lo:
            raise RpcError(f"{address}: answered {len(data)} bytes for a {hi - lo}-byte range")
        return data

    async def has_block(self, address: str, digest: bytes) -> bool:
        status, _, body = await self._call("HEAD", address, f"/internal/blocks/{digest.hex()}")
        if status in (200, 404):
            return status == 200
        raise self._error(address, status, body)

    async def has_blocks(self, address: str, digests: Sequence[bytes]) -> list[bool]:
        """Which of ``digests`` (32 bytes each, at most ``MAX_HAS_DIGESTS``) the peer
        stores: one ``POST /internal/blocks/has`` (CBOR list of digests -> CBOR list of
        booleans, in order). Raises RpcError on an error or malformed answer."""
        status, claimed, body = await self._call(
            "POST", address, "/internal/blocks/has", body=cbor2.dumps(list(digests))
        )
        if status != 200:
            raise self._error(address, status, body)
        answers = cbor2.loads(await self._checked_body(address, claimed, body))
        if (
            not isinstance(answers, list)
            or len(answers) != len(digests)
            or not all(isinstance(a, bool) for a in answers)
        ):
            raise RpcError(f"{address}: malformed blocks/has answer")
        return answers

    # ------------------------------------------------------------------ records
    async def put_record(self, address: str, table: str, key: bytes, value: Any) -> None:
        """Send a record; the peer merges it with its copy (LWW) atomically. On the peer
        channel when it is on, the peer has one and the record is small, else over HTTP."""
        check_table_name(table)
        body = cbor2.dumps(value)
        if await self._channel_put_record(address, table, key, body):
            return
        path = f"/internal/tables/{table}/records/{key.hex()}"
        status, _, answer = await self._call("PUT", address, path, body=body)
        if status not in (200, 201, 204):
            raise self._error(address, status, answer)

    async def get_record(self, address: str, table: str, key: bytes) -> Any | None:
        """A peer's copy of a record, or None if it has none. On the peer channel
        (:mod:`.channel`) when it is on and the peer has one, else over HTTP."""
        value = await self._channel_get_record(address, check_table_name(table), key)
        if value is not HTTP:
            return value
        path = f"/internal/tables/{table}/records/{key.hex()}"
        status, claimed, body = await self._call("GET", address, path)
        if status == 404 and self._error(address, status, body).code == "no_such_record":
            return None
        if status != 200:
            raise self._error(address, status, body)
        return cbor2.loads(await self._checked_body(address, claimed, body))

    async def put_hinted_block(self, address: str, target: str, digest: bytes, data: bytes) -> None:
        """Store a block on stand-in ``address`` with a hint that it is meant for peer
        ``target`` (hinted handoff, :mod:`dfspeer.cluster.handoff`); durable when it returns.
        Raises RpcError (507 ``hints_full`` when the stand-in keeps too many hints)."""
        status, _, body = await self._call(
            "PUT",
            address,
            f"/internal/hints/blocks/{digest.hex()}?target={target.encode().hex()}",
            body=BlockBody(data),  # sent from ``data`` without copies
            body_sha256=digest.hex(),
            content_type="application/octet-stream",
        )
        if status not in (200, 201, 204):
            raise self._error(address, status, body)

    async def put_hinted_record(
        self, address: str, target: str, table: str, key: bytes, value: Any
    ) -> None:
        """Keep a record on stand-in ``address`` for peer ``target`` (hinted handoff)."""
        path = (
            f"/internal/hints/records/{check_table_name(table)}/{key.hex()}"
            f"?target={target.encode().hex()}"
        )
        status, _, body = await self._call("PUT", address, path, body=cbor2.dumps(value))
        if status not in (200, 201, 204):
            raise self._error(address, status, body)

    async def retract_record(self, address: str, table: str, key: bytes, version: str) -> bool:
        """Remove a record from a peer only if its stored version is exactly ``version``
        (undo of a write that failed its quorum). True if something was removed."""
        path = (
            f"/internal/tables/{check_table_name(table)}/records/{key.hex()}"
            f"?version={version.encode().hex()}"
        )
        status, _, body = await self._call("DELETE", address, path)
        if status not in (200, 204, 404):
            raise self._error(address, status, body)
        return status in (200, 204)

    async def scan_records(
        self,
        address: str,
        table: str,
        *,
        prefix: bytes,
        start_after: bytes | None,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[tuple[bytes, Any]]:
        """Up to ``limit`` (<= 1000) records with keys starting with ``prefix`` and greater
        than ``start_after``, in key order. ``omit``: top-level fields to leave out."""
        query = f"prefix={prefix.hex()}&limit={min(limit, MAX_SCAN_LIMIT)}"
        if start_after is not None:
            query += f"&start_after={start_after.hex()}"
        if omit:
            query += "&omit=" + ",".join(check_table_name(f) for f in omit)
        path = f"/internal/tables/{check_table_name(table)}/scan?{query}"
        status, claimed, body = await self._call("GET", address, path)
        if status != 200:
            raise self._error(address, status, body)
        items = cbor2.loads(await self._checked_body(address, claimed, body))
        try:
            return [(bytes(k), v) for k, v in items]
        except (TypeError, ValueError) as exc:
            raise RpcError(f"{address}: malformed scan answer") from exc

    async def merkle_exchange(self, address: str, tree: str, request: bytes) -> bytes:
        """One round trip of the anti-entropy summary diff (:mod:`dfspeer.blockstore.
        merkle_diff`): send a CBOR request about ``tree`` ("blocks" or a table name), get
        the peer's CBOR answer. Raises RpcError (e.g. 400 for a malformed request)."""
        if tree != "blocks":
            check_table_name(tree)
        status, claimed, body = await self._call(
            "POST", address, f"/internal/merkle/{tree}", body=request
        )
        if status != 200:
            raise self._error(address, status, body)
        return await self._checked_body(address, claimed, body)

    async def status(self, address: str) -> dict[str, Any]:
        """The peer's ``/internal/status`` document."""
        status, claimed, body = await self._call("GET", address, "/internal/status")
        if status != 200:
            raise self._error(address, status, body)
        doc = json.loads(await self._checked_body(address, claimed, body))
        if not isinstance(doc, dict):
            raise RpcError(f"{address}: malformed status answer")
        return doc
