"""The HTTP plumbing of :class:`dfspeer.client.Client`: its session, credentials and TLS,
URLs, and requests retried on ``503`` / ``429`` with ``Retry-After`` (see the
:mod:`dfspeer.client` docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import os
import random
import ssl
from collections.abc import AsyncIterator, Callable
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from dfspeer import tls
from dfspeer.client.errors import TRANSPORT_ERRORS, _transport_error, error_from_response
from dfspeer.client.wire import auth_headers

RETRY_METHODS = frozenset({"GET", "HEAD", "DELETE", "PUT"})  # idempotent: safe to resend
RETRY_STATUSES = frozenset({429, 503})  # with Retry-After: slow_down, overloaded, not_ready...
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_BACKOFF_S = 0.25
DEFAULT_RETRY_MAX_DELAY_S = 5.0


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP date,
    RFC 9110 section 10.2.3); None if absent or malformed. Never negative."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _replayable(data: Any) -> bool:
    """True if a request body can be sent again as is (None, bytes, str)."""
    return data is None or isinstance(data, (bytes, bytearray, str))


class ClientBase:
    """Session, credentials, TLS, URLs and retried requests of a
    :class:`~dfspeer.client.Client` (whose docstring describes the arguments)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 300.0,
        credentials: str | None = None,
        token: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_backoff_s: float = DEFAULT_RETRY_BACKOFF_S,
        retry_max_delay_s: float = DEFAULT_RETRY_MAX_DELAY_S,
        rng: random.Random | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.base_url = base_url.rstrip("/")
        if "://" not in self.base_url:
            self.base_url = "http://" + self.base_url
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.retry_max_delay_s = retry_max_delay_s
        self.retries = 0
        """Requests sent again after a 503 or 429 with ``Retry-After``, all requests so far."""
        self._rng = rng if rng is not None else random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._auth_headers = auth_headers(credentials=credentials, token=token)
        ca = tls.client_ca_file(ca_file)
        self._ssl: ssl.SSLContext | None = tls.client_context(ca) if ca is not None else None

    async def close(self) -> None:
        """Close the HTTP session; idempotent."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=min(self.timeout_s, 10.0), sock_read=self.timeout_s
            )
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl or True),
                timeout=timeout,
                auto_decompress=False,
                headers=self._auth_headers,
            )
        return self._session

    def object_url(self, bucket: str, key: str | None = None) -> str:
        """Absolute URL of ``/v1/objects/{bucket}[/{key}]`` with the key percent-encoded."""
        url = f"{self.base_url}/v1/objects/{quote(bucket, safe='')}"
        if key is not None:
            url += "/" + quote(key, safe="/")
        return url

    # ------------------------------------------------------------------ plumbing
    def retry_delay(
        self,
        method: str,
        status: int,
        retry_after: str | None,
        attempt: int,
        *,
        replayable: bool = True,
    ) -> float | None:
        """Seconds to wait before sending attempt ``attempt + 1`` of a request whose
        attempt ``attempt`` (from 1) got ``status`` with ``Retry-After: retry_after``;
        None: do not retry (not a 503 or 429 with ``Retry-After``, not idempotent, a body
        that cannot be sent again, or no attempt left)."""
        if status not in RETRY_STATUSES or not replayable or method.upper() not in RETRY_METHODS:
            return None
        after = parse_retry_after(retry_after)
        if after is None or attempt >= self.max_attempts:
            return None
        delay = max(after, self.retry_backoff_s * 2.0 ** (attempt - 1))
        delay += self._rng.uniform(0.0, delay / 4)  # jitter: clients do not retry in step
        return min(delay, self.retry_max_delay_s)

    @contextlib.asynccontextmanager
    async def _respond(
        self,
        method: str,
        url: str,
        *,
        body: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The (2xx/3xx) response to ``method url``, retried on 503/429 + ``Retry-After`` (see
        :meth:`retry_delay`). ``body()`` makes a fresh body for every attempt (a file's
        pieces); a ``data`` keyword is resent as is if it is bytes or text, else the request
        is not retried. An error answer raises its :class:`DfsError` (``retry_after_s``
        set). Transport errors propagate as aiohttp raises them (callers map them)."""
        replayable = _replayable(kwargs.get("data"))
        attempt = 1
        while True:
            if body is not None:
                kwargs["data"] = body()
            async with self._http().request(method, url, **kwargs) as resp:
                if resp.status < 400:
                    yield resp
                    return
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After")
                delay = self.retry_delay(
                    method, resp.status, retry_after, attempt, replayable=replayable
                )
                if delay is None:
                    exc = error_from_response(resp.status, raw, resp.reason or "")
                    exc.retry_after_s = parse_retry_after(retry_after)
                    raise exc
            self.retries += 1
            attempt += 1
            await asyncio.sleep(delay)

    async def _request(
        self,
        method: str,
        url: str,
        *,
        expect_json: bool = True,
        body: Callable[[], Any] | None = None,
        **kwargs: Any,
    ) -> tuple[int, CIMultiDict[str], Any]:
        """One request, retried as :meth:`_respond` says; returns (status, headers, decoded
        JSON or raw bytes). Raises DfsError."""
        try:
            async with self._respond(method, url, body=body, **kwargs) as resp:
                raw = await resp.read()
                headers = CIMultiDict(resp.headers)
                if expect_json and raw:
                    return resp.status, headers, await resp.json(content_type=None)
                return resp.status, headers, raw
        except TRANSPORT_ERRORS as exc:
            raise _transport_error(self.base_url, exc) from exc

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        _, _, doc = await self._request("GET", self.base_url + path, params=params)
        return doc if isinstance(doc, dict) else {}

    def bucket_url(self, bucket: str | None = None) -> str:
        """Absolute URL of ``/v1/buckets[/{bucket}]``."""
        url = f"{self.base_url}/v1/buckets"
        return url if bucket is None else f"{url}/{quote(bucket, safe='')}"
