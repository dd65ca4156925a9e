"""JWT verification keys fetched from an identity provider's JWKS URL (``jwt_jwks_url``).

The set (RFC 7517, the same shape as a ``jwt_jwks_file``) is fetched with aiohttp, so no
fetch ever blocks the event loop:

- over HTTPS, the server verified against the system's CAs (OpenSSL's ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` name another bundle); plain ``http://`` only to a loopback address (an
  identity provider's sidecar); redirects are not followed; at most
  :data:`~dfspeer.access.jwt_auth.MAX_JWKS_BYTES`, within :data:`FETCH_TIMEOUT_S`;
- kept :data:`CACHE_S` seconds, then fetched again by the next JWT to arrive;
- fetched again at once when a JWT names a ``kid`` the cached set does not hold (the
  provider rotated its keys);
- but never more often than once in :data:`MIN_REFETCH_S` seconds, whatever the outcome,
  and by one request at a time (the others wait for its answer): a flood of tokens with
  made-up ``kid`` s costs the provider one request every :data:`MIN_REFETCH_S` seconds.

Keys the provider publishes for other uses or algorithms are left out (only ES256 and
RS256 signing keys count). When a fetch fails, the keys of the last good fetch stay in use;
with none, every JWT is refused with 401 ``unauthenticated`` naming the reason (never a
500). A peer starts even when the provider is down (:meth:`JwksUrlKeys.warm_up` only logs a
warning): its access keys and admin token keep working.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

from dfspeer import tls
from dfspeer.access.jwt_auth import MAX_JWKS_BYTES, VerifyKey, parse_jwks
from dfspeer.errors import Unauthenticated

log = logging.getLogger("dfspeer.access")

CACHE_S = 300.0
MIN_REFETCH_S = 10.0
FETCH_TIMEOUT_S = 5.0
_FETCH_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, ValueError)


class JwksUrlKeys:
    """The cached signing keys of the JWKS at ``url`` (module docstring).

    ``cache_s``: how long a fetched set is used before it is fetched again, seconds;
    ``min_refetch_s``: the least time between two fetches, seconds; ``timeout_s``: one
    fetch's limit, seconds; ``clock``: monotonic seconds (tests pass their own);
    ``ssl_context``: verifies an https server (default: the system's CAs).
    """

    def __init__(
        self,
        url: str,
        *,
        cache_s: float = CACHE_S,
        min_refetch_s: float = MIN_REFETCH_S,
        timeout_s: float = FETCH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.cache_s = cache_s
        self.min_refetch_s = min_refetch_s
        self.timeout_s = timeout_s
        self._clock = clock
        https = urlsplit(url).scheme == "https"
        self._ssl = (ssl_context or tls.client_context(None)) if https else None
        self._keys: tuple[VerifyKey, ...] = ()
        self._fetched_at: float | None = None  # the last good fetch
        self._tried_at: float | None = None  # the last fetch, good or not
        self._error = "not fetched yet"
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Fetches made (good or not)."""

    def __repr__(self) -> str:
        return f"JwksUrlKeys({self.url!r}, {len(self._keys)} keys)"

    async def keys(self, kid: str | None) -> tuple[VerifyKey, ...]:
        """The keys to verify a JWT with ``kid`` (None: the token names none), fetching
        the set first when it is older than ``cache_s`` or lacks ``kid`` (at most once in
        ``min_refetch_s``). Raises Unauthenticated when no set was ever fetched."""
        if self._stale(kid):
            await self._refresh(kid)
        if not self._keys:
            raise Unauthenticated(
                f"the JWT keys of jwt_jwks_url cannot be fetched ({self._error}); "
                f"tried again at most every {self.min_refetch_s:g} s"
            )
        return self._keys

    async def warm_up(self) -> bool:
        """Fetch the set once (at a peer's start). True when it was fetched; False (a
        warning is logged, JWTs get 401 until a fetch works) otherwise. Raises nothing."""
        await self._refresh(None)
        return bool(self._keys)

    def _stale(self, kid: str | None) -> bool:
        if self._fetched_at is None or self._clock() - self._fetched_at >= self.cache_s:
            return True
        return kid is not None and not any(k.kid in (None, kid) for k in self._keys)

    async def _refresh(self, kid: str | None) -> None:
        """Fetch the set unless another task just did, or one was tried less than
        ``min_refetch_s`` ago. A failure keeps the keys held and is logged."""
        async with self._lock:
            if not self._stale(kid):
                return  # fetched while this task waited
            now = self._clock()
            if self._tried_at is not None and now - self._tried_at < self.min_refetch_s:
                return
            self._tried_at = now
            self.fetches += 1
            try:
                keys = await self._fetch()
            except _FETCH_ERRORS as exc:
                self._error = _describe(exc)
                log.warning(
                    "cannot fetch the JWKS at %s (%s); %s",
                    self.url,
                    self._error,
                    "keeping the keys fetched before" if self._keys else "JWTs are refused",
                )
                return
            self._keys, self._fetched_at, self._error = tuple(keys), self._clock(), ""
            kids = ",".join(sorted(k.kid or "-" for k in keys))
            log.info("JWKS fetched from %s: %d keys (kid %s)", self.url, len(keys), kids)

    async def _fetch(self) -> list[VerifyKey]:
        """One GET of the set. Raises aiohttp.ClientError, TimeoutError, OSError or
        ValueError (not 200, too large, not a usable JWKS)."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(
                self.url,
                ssl=self._ssl if self._ssl is not None else True,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as resp,
        ):
            if resp.status != 200:
                raise ValueError(f"HTTP {resp.status}")
            data = bytearray()
            async for piece in resp.content.iter_chunked(64 * 1024):
                data += piece
                if len(data) > MAX_JWKS_BYTES:
                    raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
        return parse_jwks(bytes(data), "jwt_jwks_url", skip_unusable=True)


def _describe(exc: BaseException) -> str:
    """A short reason for a failed fetch (never a response body)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ValueError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:200]
