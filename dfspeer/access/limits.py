"""Rate limits and backpressure of the native API (and of the S3 API: :meth:`Limits.refusal`).

Two guards, both answered before the handler runs (so before the body is read) by
:meth:`Limits.middleware`, which sits right inside the access middleware (it needs the
principal) and outside the shutdown gate:

- **per principal** (an access key, ``admin``, ``open``), two token buckets:
  ``rate_limit_requests_per_s`` (one token a request) and ``rate_limit_bytes_per_s`` (one
  token a byte of an upload's ``Content-Length``). Beyond them: 429 ``slow_down`` with
  ``Retry-After`` = seconds until the tokens are there (rounded up, at least 1). A bucket
  holds one second of its rate (at least one request); an upload larger than that is let
  through once the bucket is full and leaves it in debt, so the principal's next requests
  wait until the debt is paid off: over time it gets its byte rate, never more.
- **global**: at most ``max_inflight_requests`` requests handled at once; beyond it 503
  ``overloaded`` with ``Retry-After: 1``.
- **upload memory**: an upload (a ``PUT`` or ``POST`` with a body) holds at most
  ``per_upload_bytes`` in memory while it is cut, hashed and replicated (the chunker's window
  plus the chunks in flight: ``(upload_pipeline_depth + 2) x`` the largest chunk, or a
  resumable session's largest chunk, read whole, if that is more), or its
  ``Content-Length`` when that is less; the uploads being handled may reserve at most
  ``max_upload_memory_bytes`` together (default 1 GiB) — beyond it 503 ``overloaded``
  with ``Retry-After: 1``. One upload is always admitted, so a cap below one upload's
  reservation slows uploads down to one at a time instead of refusing them all.

0 turns a limit off (the default of the first three). Public routes (no principal: ``/health``,
``/ready``, ``/metrics``...) and ``/internal/`` are never limited. Uploads without a
``Content-Length`` (chunked) are not counted in bytes.

:class:`TokenBucket` is pure (time is an argument); :class:`RateLimiter` takes an
injectable clock, so both are unit-tested without sleeping.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Handler

from dfspeer.access.middleware import INTERNAL_PREFIX, PRINCIPAL_KEY
from dfspeer.api.middleware import RETRY_AFTER_HEADER, render_dfs_error
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, Overloaded, SlowDown

Clock = Callable[[], float]
MAX_TRACKED = 10_000
"""Buckets kept before full ones (no different from new ones) are dropped."""
_UPLOAD_METHODS = frozenset({"PUT", "POST"})


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` saved; may go into debt (below 0)."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        if rate <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be > 0")
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def refill(self, now: float) -> None:
        """Add the tokens earned since the last update (a clock going back adds none)."""
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def wait_s(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` tokens may be taken (0.0: now). A cost above the capacity
        needs a full bucket (and then leaves it in debt)."""
        self.refill(now)
        need = min(cost, self.capacity)
        return 0.0 if self.tokens >= need else (need - self.tokens) / self.rate

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens and return 0.0, or take nothing and return the seconds to
        wait (:meth:`wait_s`)."""
        wait = self.wait_s(cost, now)
        if wait == 0.0:
            self.tokens -= cost
        return wait

    def full(self, now: float) -> bool:
        """True when the bucket is full at ``now`` (no different from a new one)."""
        self.refill(now)
        return self.tokens >= self.capacity


def retry_after_s(wait: float) -> int:
    """The ``Retry-After`` value for a wait of ``wait`` seconds: rounded up, at least 1."""
    return max(1, math.ceil(wait))


class RateLimiter:
    """Per-principal request and byte token buckets (0 rate: that one is off)."""

    def __init__(
        self,
        requests_per_s: float,
        bytes_per_s: float,
        *,
        clock: Clock = time.monotonic,
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.requests_per_s = requests_per_s
        self.bytes_per_s = bytes_per_s
        self.clock = clock
        self.max_tracked = max_tracked
        self._requests: dict[str, TokenBucket] = {}
        self._bytes: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        return self.requests_per_s > 0 or self.bytes_per_s > 0

    def admit(self, principal: str, nbytes: int = 0) -> float:
        """Count one request of ``principal`` carrying ``nbytes`` upload bytes and return
        0.0, or count nothing and return the seconds until it would be admitted."""
        now = self.clock()
        buckets: list[tuple[TokenBucket, float]] = []
        if self.requests_per_s > 0:
            buckets.append((self._bucket(self._requests, principal, self.requests_per_s, now), 1))
        if self.bytes_per_s > 0 and nbytes > 0:
            buckets.append((self._bucket(self._bytes, principal, self.bytes_per_s, now), nbytes))
        wait = max((b.wait_s(cost, now) for b, cost in buckets), default=0.0)
        if wait > 0.0:
            return wait
        for bucket, cost in buckets:
            bucket.take(cost, now)
        return 0.0

    def tracked(self) -> int:
        """Principals with a bucket (for tests)."""
        return len(self._requests.keys() | self._bytes.keys())

    def _bucket(
        self, table: dict[str, TokenBucket], principal: str, rate: float, now: float
    ) -> TokenBucket:
        bucket = table.get(principal)
        if bucket is None:
            if len(table) >= self.max_tracked:
                for name in [n for n, b in table.items() if b.full(now)]:
                    del table[name]
            bucket = table[principal] = TokenBucket(rate, max(rate, 1.0), now)
        return bucket


class Limits:
    """The aiohttp middleware of the guards (module docstring). ``max_upload_bytes``: the
    upload memory cap (0: off); ``per_upload_bytes``: what one upload may hold."""

    def __init__(
        self,
        limiter: RateLimiter,
        max_inflight: int = 0,
        *,
        max_upload_bytes: int = 0,
        per_upload_bytes: int = 0,
    ) -> None:
        self.limiter = limiter
        self.max_inflight = max_inflight
        self.inflight = 0
        self.max_upload_bytes = max_upload_bytes
        self.per_upload_bytes = per_upload_bytes
        self.upload_bytes = 0
        """Bytes reserved by the uploads being handled."""

    @classmethod
    def from_config(cls, config: PeerConfig, *, clock: Clock = time.monotonic) -> Limits:
        limiter = RateLimiter(
            config.rate_limit_requests_per_s, config.rate_limit_bytes_per_s, clock=clock
        )
        per_upload = max(
            (config.upload_pipeline_depth + 2) * config.largest_chunk_bytes,
            config.upload_max_chunk_bytes,  # a resumable session's chunk is read whole
        )
        return cls(
            limiter,
            config.max_inflight_requests,
            max_upload_bytes=config.max_upload_memory_bytes,
            per_upload_bytes=per_upload,
        )

    @property
    def enabled(self) -> bool:
        return self.limiter.enabled or self.max_inflight > 0 or self.max_upload_bytes > 0

    def reservation(self, method: str, content_length: int | None) -> int:
        """Bytes of upload memory one request reserves (0: not an upload, or no cap)."""
        if self.max_upload_bytes <= 0 or method not in _UPLOAD_METHODS or content_length == 0:
            return 0
        if content_length is None:
            return self.per_upload_bytes
        return min(content_length, self.per_upload_bytes)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Refuse (429 / 503 + ``Retry-After``) or count the request while it is handled."""
        principal = request.get(PRINCIPAL_KEY)
        if principal is None or request.path.startswith(INTERNAL_PREFIX):
            return await handler(request)  # public route, or peer RPC
        refused = self.refusal(principal.name, request.method, request.content_length)
        if refused is not None:
            return _refuse(request, refused)
        with self.slot(self.reservation(request.method, request.content_length)):
            return await handler(request)

    def refusal(self, principal: str, method: str, content_length: int | None) -> DfsError | None:
        """Check one request of ``principal`` (``content_length`` bytes counted for PUT and
        POST) against both guards: None if admitted (its tokens are taken: run it inside
        :meth:`slot`), else the Overloaded or SlowDown error to answer, its
        ``retry_after_s`` set (whole seconds, at least 1). Also used by the S3 API, which
        renders the error its own way."""
        if self.max_inflight > 0 and self.inflight >= self.max_inflight:
            busy = Overloaded(f"the peer already handles {self.max_inflight} requests; retry")
            busy.retry_after_s = retry_after_s(1.0)
            return busy
        need = self.reservation(method, content_length)
        if need and self.upload_bytes and self.upload_bytes + need > self.max_upload_bytes:
            full = Overloaded(
                f"the uploads in progress hold {self.upload_bytes} of the peer's "
                f"{self.max_upload_bytes}-byte upload memory; retry"
            )
            full.retry_after_s = retry_after_s(1.0)
            return full
        nbytes = (content_length or 0) if method in _UPLOAD_METHODS else 0
        wait = self.limiter.admit(principal, nbytes)
        if wait > 0.0:
            slow = SlowDown(f"{principal} is over its rate limit; slow down")
            slow.retry_after_s = retry_after_s(wait)
            return slow
        return None

    @contextlib.contextmanager
    def slot(self, upload_bytes: int = 0) -> Iterator[None]:
        """Count one admitted request in flight, holding ``upload_bytes`` of upload memory
        (its :meth:`reservation`), while the block runs."""
        self.inflight += 1
        self.upload_bytes += upload_bytes
        try:
            yield
        finally:
            self.inflight -= 1
            self.upload_bytes -= upload_bytes


LIMITS_KEY = web.AppKey("dfspeer.limits", Limits)


def _refuse(request: web.Request, exc: DfsError) -> web.Response:
    seconds = int(exc.retry_after_s or 1)
    return render_dfs_error(request, exc, headers={RETRY_AFTER_HEADER: str(seconds)})
