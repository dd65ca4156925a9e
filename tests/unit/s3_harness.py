"""A real Peer with its S3 API, run on its own event loop in a thread, for boto3 tests.

boto3 is synchronous: the peer runs on a background loop and the tests call boto3 (and
``urllib``) directly. ``run(coro)`` runs a coroutine on the peer's loop (its Python API).
"""

from __future__ import annotations

import asyncio
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import boto3
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from dfspeer.loopback import free_port
from dfspeer.peer import Peer
from tests.unit.test_peer_single import config_for

T = TypeVar("T")
AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ROOT_DOMAIN = "s3.test"


class PeerThread:
    """Start a Peer (``config_for`` plus ``settings``, S3 on a free port) on a thread."""

    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        s3_port = free_port("127.0.0.1")
        self.peer = Peer(config_for(data_dir, s3_port=s3_port, **settings))
        self.run(self._start())

    async def _start(self) -> None:
        await self.peer.start()
        await self.peer.wait_ready(10)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    @property
    def s3_url(self) -> str:
        url = self.peer.s3_url
        assert url is not None
        return url

    def client(
        self, key: str = AK, secret: str = SK, *, unsigned: bool = False, **config: Any
    ) -> Any:
        """A boto3 S3 client on this peer (path style, no retries unless ``retries`` is
        given); ``config``: more botocore ``Config`` settings."""
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        cfg = Config(
            s3={"addressing_style": "path"},
            signature_version=UNSIGNED if unsigned else "s3v4",
            **config,
        )
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=cfg,
        )

    def close(self) -> None:
        self.run(self.peer.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def keyed_peer(base: Path, **settings: object) -> PeerThread:
    """A :class:`PeerThread` under ``base`` whose S3 port knows the key ``AK`` / ``SK``
    (an ``s3_credentials_file``, full access), with 1 MiB chunks unless ``settings`` say."""
    creds = base / "s3.credentials"
    creds.write_text(f"{AK}:{SK}\n")
    settings.setdefault("chunk_size_bytes", 1024 * 1024)
    return PeerThread(base / "p", s3_credentials_file=creds, **settings)


def signed(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    key: str = AK,
    secret: str = SK,
) -> AWSRequest:
    """A request signed by botocore (payload hash of ``body`` in x-amz-content-sha256)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    S3SigV4Auth(Credentials(key, secret), "s3", "us-east-1").add_auth(request)
    return request


def send(
    request: AWSRequest, *, body: bytes | None = None, host: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` with urllib (optionally another ``body``, ``Host``); ``(status,
    headers, body)``, errors included."""
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    if host is not None:
        headers["Host"] = host
    data = request.body if body is None else body
    req = urllib.request.Request(
        request.url, data=data if data else None, headers=headers, method=request.method
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 XML error body."""
    node = ET.fromstring(body)
    code = node.findtext("Code")
    assert code is not None, body
    return code
