"""Rate limits and the in-flight cap on the S3 port (:mod:`dfspeer.access.limits`, shared
with the native port): a refusal is S3 XML ``SlowDown`` (503) with ``Retry-After``, sent
before the body is read, and boto3's own retry then succeeds.

The token buckets run on a virtual clock that the test drives (a peer's limiter takes an
injectable clock), so which request is refused does not depend on how fast this machine
is; the in-flight test holds a request open by not sending its whole body, and waits on
the peer's in-flight count (polled state), not on time.
"""

from __future__ import annotations

import http.client
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from botocore.exceptions import ClientError

from dfspeer.access.limits import LIMITS_KEY, Limits
from tests.unit.s3_harness import AK, SK, PeerThread, error_code, send, signed


def _limits(node: PeerThread) -> Limits:
    runner = node.peer._runner
    assert runner is not None
    return runner.app[LIMITS_KEY]


def _node(base: Path, **limits: object) -> PeerThread:
    creds = base / "s3.credentials"
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text(f"{AK}:{SK}\n")
    return PeerThread(base / "p", s3_credentials_file=creds, **limits)


@pytest.fixture
def rated(tmp_path: Path) -> Iterator[PeerThread]:
    node = _node(tmp_path, rate_limit_requests_per_s=1.0, rate_limit_bytes_per_s=1000)
    node.client().create_bucket(Bucket="rated")
    yield node
    node.close()


def _raw_put(url: str, length: int, sent: bytes) -> http.client.HTTPConnection:
    """Send a signed PUT's headers (``Content-Length: length``) and only ``sent`` of its
    body; the open connection."""
    request = signed("PUT", url, body=b"\0" * length)
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.netloc, timeout=30)
    conn.putrequest("PUT", parsed.path, skip_accept_encoding=True)
    for name, value in request.headers.items():
        conn.putheader(name, value)
    conn.putheader("Content-Length", str(length))
    conn.endheaders()
    if sent:
        conn.send(sent)
    return conn


def test_rate_limit_is_slow_down_before_the_body(rated: PeerThread) -> None:
    limiter = _limits(rated).limiter
    t0 = time.monotonic() + 100.0  # later than any real use: the buckets are full
    limiter.clock = lambda: t0  # frozen: no token comes back
    url = f"{rated.s3_url}/rated/"
    assert send(signed("GET", url))[0] == 200  # the one request token
    status, headers, body = send(signed("GET", url))
    assert status == 503 and error_code(body) == "SlowDown"
    assert headers["Retry-After"] == "1" and headers["x-amz-request-id"]
    # a PUT is refused on its headers alone: its body is never sent, never read
    conn = _raw_put(f"{rated.s3_url}/rated/never", 5000, b"")
    answer = conn.getresponse()
    refused = answer.read()
    conn.close()
    assert answer.status == 503 and error_code(refused) == "SlowDown"
    limiter.clock = lambda: t0 + 100.0  # tokens back: but 5000 bytes at 1000 B/s
    conn = _raw_put(f"{rated.s3_url}/rated/big", 5000, b"\0" * 5000)
    assert conn.getresponse().status == 200  # a full bucket lets one large upload through
    conn.close()
    limiter.clock = lambda: t0 + 101.0  # one request token again, but 4000 bytes of debt
    status, headers, body = send(signed("PUT", f"{rated.s3_url}/rated/next", body=b"x"))
    assert status == 503 and error_code(body) == "SlowDown"
    assert headers["Retry-After"] == "4"
    client = rated.client()  # a HEAD costs no bytes: admitted on the request token
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket="rated", Key="never")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404  # nothing written


def test_boto3_retries_past_slow_down(rated: PeerThread) -> None:
    """Half a second of virtual time per request at 1 request/s: every other request is
    refused, so every call after the first needs boto3's retry."""
    ticks = itertools.count()
    t0 = time.monotonic() + 100.0
    _limits(rated).limiter.clock = lambda: t0 + next(ticks) * 0.5
    client = rated.client(retries={"max_attempts": 5, "mode": "standard"})
    retried = 0
    for i in range(4):
        out = client.put_object(Bucket="rated", Key=f"k{i}", Body=b"")
        retried += out["ResponseMetadata"]["RetryAttempts"]
    assert retried >= 3
    names = [o["Key"] for o in client.list_objects_v2(Bucket="rated")["Contents"]]
    assert {f"k{i}" for i in range(4)} <= set(names)


def test_inflight_cap_is_slow_down(tmp_path: Path) -> None:
    node = _node(tmp_path, max_inflight_requests=1)
    try:
        client = node.client()
        client.create_bucket(Bucket="capped")
        limits = _limits(node)
        conn = _raw_put(f"{node.s3_url}/capped/held", 1000, b"\0" * 10)  # body unfinished
        deadline = time.monotonic() + 30
        while limits.inflight == 0:
            assert time.monotonic() < deadline, "the held request never started"
            time.sleep(0.01)
        status, headers, body = send(signed("GET", f"{node.s3_url}/capped/"))
        assert status == 503 and error_code(body) == "SlowDown"
        assert headers["Retry-After"] == "1"
        conn.send(b"\0" * 990)
        assert conn.getresponse().status == 200
        conn.close()
        got: Any = client.get_object(Bucket="capped", Key="held")
        assert got["Body"].read() == b"\0" * 1000
    finally:
        node.close()
