"""Rate limits and backpressure (dfspeer.access.limits): token bucket math with a fake
clock, then a real in-process peer answering 429 ``slow_down`` / 503 ``overloaded``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dfspeer.access.limits import Limits, RateLimiter, TokenBucket, retry_after_s
from dfspeer.client import Client, error_from_response
from dfspeer.config import ConfigError
from dfspeer.errors import NoSuchBucket, NoSuchKey, Overloaded, SlowDown
from dfspeer.peer import Peer
from tests.unit.test_peer_single import config_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- pure logic
def test_token_bucket_refill_math() -> None:
    bucket = TokenBucket(rate=2.0, capacity=2.0, now=0.0)
    assert bucket.take(1, 0.0) == 0.0
    assert bucket.take(1, 0.0) == 0.0
    assert bucket.take(1, 0.0) == pytest.approx(0.5)  # empty: one token in 1/2 s
    assert bucket.tokens == 0.0  # a refused take takes nothing
    assert bucket.take(1, 0.25) == pytest.approx(0.25)
    assert bucket.take(1, 0.5) == 0.0
    assert bucket.tokens == pytest.approx(0.0)
    assert bucket.wait_s(1, 100.0) == 0.0
    assert bucket.tokens == 2.0  # capped at the capacity
    assert bucket.take(1, 50.0) == 0.0  # a clock going back adds nothing
    assert bucket.tokens == 1.0


def test_token_bucket_large_cost_needs_full_bucket_then_leaves_debt() -> None:
    bucket = TokenBucket(rate=100.0, capacity=100.0, now=0.0)
    assert bucket.take(10, 0.0) == 0.0
    assert bucket.take(1000, 0.0) == pytest.approx(0.1)  # needs a full bucket (10 more)
    assert bucket.take(1000, 0.1) == 0.0
    assert bucket.tokens == pytest.approx(-900.0)  # in debt
    assert bucket.wait_s(1, 0.1) == pytest.approx(9.01)  # debt + 1 token, at 100/s
    assert bucket.full(10.1)


def test_bucket_rejects_nonpositive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0.0, 1.0, 0.0)


def test_retry_after_rounds_up_at_least_one() -> None:
    assert retry_after_s(0.0) == 1
    assert retry_after_s(0.01) == 1
    assert retry_after_s(1.0) == 1
    assert retry_after_s(1.2) == 2


def test_rate_limiter_per_principal_requests_and_bytes() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 1000, clock=clock)
    assert limiter.admit("a") == 0.0
    assert limiter.admit("a") == 0.0
    assert limiter.admit("a") == pytest.approx(0.5)
    assert limiter.admit("b") == 0.0  # another principal has its own buckets
    clock.now += 0.5
    assert limiter.admit("a", 600) == 0.0
    # a large upload passes on a full byte bucket (1000) and leaves it in debt (-500)
    assert limiter.admit("b", 1500) == 0.0
    clock.now += 0.5  # b: 2 request tokens; 500 bytes of debt paid -> 0 bytes
    assert limiter.admit("b", 1) == pytest.approx(0.001)
    # the byte bucket refused: no request token was taken either
    assert limiter.admit("b") == 0.0  # bodiless requests are not held by the byte debt
    assert limiter.admit("b") == 0.0
    assert limiter.admit("b") == pytest.approx(0.5)


def test_rate_limiter_off_and_forgets_full_buckets() -> None:
    clock = FakeClock()
    assert not RateLimiter(0, 0, clock=clock).enabled
    assert RateLimiter(0, 0, clock=clock).admit("a", 10**9) == 0.0
    limiter = RateLimiter(1.0, 0, clock=clock, max_tracked=2)
    limiter.admit("a")
    limiter.admit("b")
    clock.now += 10
    limiter.admit("c")  # a and b are full again: dropped
    assert limiter.tracked() == 1


def test_config_checks_limits() -> None:
    base = config_for(Path("/tmp/unused"))
    assert base.rate_limit_requests_per_s == 0
    assert base.rate_limit_bytes_per_s == 0
    assert base.max_inflight_requests == 0
    with pytest.raises(ConfigError, match="rate_limit_requests_per_s"):
        base.replace(rate_limit_requests_per_s=-1)
    with pytest.raises(ConfigError, match="max_inflight_requests"):
        base.replace(max_inflight_requests=-1)


def test_client_maps_codes_and_retries_429() -> None:
    assert isinstance(error_from_response(429, b""), SlowDown)
    body = b'{"error": {"code": "overloaded", "message": "busy", "request_id": "x"}}'
    assert isinstance(error_from_response(503, body), Overloaded)
    c = Client("http://127.0.0.1:1", retry_backoff_s=0.0)
    assert c.retry_delay("GET", 429, "2", 1) is not None
    assert c.retry_delay("GET", 429, None, 1) is None
    assert c.retry_delay("POST", 429, "1", 1) is None


# ---------------------------------------------------------------- a real peer
@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _stalled_put(
    http: aiohttp.ClientSession, url: str, release: asyncio.Event, sent: list[int]
) -> tuple[int, dict[str, str], dict[str, object]]:
    """A PUT whose body stops after its first piece until ``release`` is set."""

    async def body() -> AsyncIterator[bytes]:
        sent.append(1)
        yield b"x" * 1024
        await release.wait()
        sent.append(2)
        yield b"y" * 1024

    async with http.put(url, data=body()) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_burst_gets_slow_down_before_the_body_is_read(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    async with Peer(config_for(tmp_path / "p", rate_limit_requests_per_s=2)) as peer:
        await peer.wait_ready(10)
        url = f"{peer.api_url}/v1/buckets"
        statuses = []
        for _ in range(5):
            async with http.get(url) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    doc = await resp.json()
                    assert doc["error"]["code"] == "slow_down"
                    assert int(resp.headers["Retry-After"]) >= 1
        assert statuses[:2] == [200, 200]
        assert 429 in statuses
        async with http.get(f"{peer.api_url}/health") as resp:
            assert resp.status == 200  # public routes are not limited
        # an upload over the limit is refused before its body is read
        release = asyncio.Event()
        sent: list[int] = []
        put = f"{peer.api_url}/v1/objects/bkt/k"
        status, headers, doc = await asyncio.wait_for(_stalled_put(http, put, release, sent), 5)
        assert sent == [1]  # the answer came while the body was still held back
        release.set()
        assert status == 429
        assert doc["error"]["code"] == "slow_down"  # type: ignore[index]
        assert int(headers["Retry-After"]) >= 1
        with pytest.raises((NoSuchKey, NoSuchBucket)):
            await peer.stat_object("bkt", "k")  # nothing was written


async def test_client_completes_a_burst_by_retrying(tmp_path: Path) -> None:
    async with Peer(config_for(tmp_path / "p", rate_limit_requests_per_s=2)) as peer:
        await peer.wait_ready(10)
        async with Client(peer.api_url, retry_backoff_s=0.01) as client:
            for i in range(5):
                await client.put_object("bkt", f"k{i}", b"data")
            assert client.retries >= 1
            assert len((await client.list_objects("bkt"))["objects"]) == 5


async def test_inflight_cap_answers_overloaded(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    async with Peer(config_for(tmp_path / "p", max_inflight_requests=1)) as peer:
        await peer.wait_ready(10)
        release = asyncio.Event()
        sent: list[int] = []
        slow = asyncio.create_task(
            _stalled_put(http, f"{peer.api_url}/v1/objects/bkt/slow", release, sent)
        )
        for _ in range(100):  # until the slow upload is being handled
            await asyncio.sleep(0.02)
            async with http.get(f"{peer.api_url}/v1/buckets") as resp:
                if resp.status == 503:
                    assert (await resp.json())["error"]["code"] == "overloaded"
                    assert resp.headers["Retry-After"] == "1"
                    break
        else:
            pytest.fail("never overloaded")
        release.set()
        status, _, _ = await asyncio.wait_for(slow, 5)
        assert status == 201
        async with http.get(f"{peer.api_url}/v1/buckets") as resp:
            assert resp.status == 200  # the slot is free again


def test_upload_memory_reservations() -> None:
    """An upload reserves min(Content-Length, what one upload may hold); uploads beyond the
    cap are refused with Overloaded, but one is always admitted."""
    limits = Limits(RateLimiter(0, 0), max_upload_bytes=100, per_upload_bytes=60)
    assert limits.enabled
    assert limits.reservation("GET", None) == 0
    assert limits.reservation("PUT", 10) == 10
    assert (limits.reservation("PUT", None), limits.reservation("POST", 1000)) == (60, 60)
    assert limits.refusal("k", "PUT", 1000) is None
    with limits.slot(limits.reservation("PUT", 1000)):
        assert limits.upload_bytes == 60
        assert limits.refusal("k", "PUT", 40) is None  # 60 + 40 fits
        refused = limits.refusal("k", "PUT", 41)
        assert isinstance(refused, Overloaded) and refused.retry_after_s == 1
        assert limits.refusal("k", "GET", None) is None  # reads reserve nothing
    assert limits.upload_bytes == 0
    alone = Limits(RateLimiter(0, 0), max_upload_bytes=10, per_upload_bytes=60)
    assert alone.refusal("k", "PUT", 1000) is None  # over the cap, but the only upload
    assert Limits(RateLimiter(0, 0), per_upload_bytes=60).reservation("PUT", 5) == 0  # off


async def test_upload_memory_cap_answers_overloaded_before_the_body(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    config = config_for(tmp_path / "p", max_upload_memory_bytes=1024)
    async with Peer(config) as peer:
        await peer.wait_ready(10)
        release = asyncio.Event()
        sent: list[int] = []
        slow = asyncio.create_task(  # a chunked upload reserves a whole upload's memory
            _stalled_put(http, f"{peer.api_url}/v1/objects/bkt/slow", release, sent)
        )
        for _ in range(100):  # until the slow upload is being handled
            await asyncio.sleep(0.02)
            async with http.put(f"{peer.api_url}/v1/objects/bkt/other", data=b"z" * 2048) as r:
                if r.status == 503:
                    assert (await r.json())["error"]["code"] == "overloaded"
                    assert r.headers["Retry-After"] == "1"
                    break
        else:
            pytest.fail("never refused")
        async with http.get(f"{peer.api_url}/v1/buckets") as resp:
            assert resp.status == 200  # reads are not held back
        release.set()
        status, _, _ = await asyncio.wait_for(slow, 5)
        assert status == 201
        async with http.put(f"{peer.api_url}/v1/objects/bkt/other", data=b"z" * 2048) as r:
            assert r.status == 201  # the memory is free again
