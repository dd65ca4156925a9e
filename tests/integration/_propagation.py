"""Waiting for an access change made through one peer to reach the others.

Every peer caches the key and bucket reads of access control for the auth cache's TTL
(:mod:`dfspeer.access.cache`, 1 s by default): a key disabled or a grant changed through
one peer applies there at once, and on the other peers once their cached read expires.
These helpers retry a request every :data:`POLL_S` until the change shows, and fail the
test after :data:`GIVE_UP_S` (far beyond the TTL: a change that never shows is a bug).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dfspeer.errors import DfsError

T = TypeVar("T")
POLL_S = 0.2
GIVE_UP_S = 15.0


async def until_refused(
    attempt: Callable[[], Awaitable[object]], what: str, *, give_up_s: float = GIVE_UP_S
) -> DfsError:
    """The error ``attempt()`` raises once it is refused; retried while it succeeds. The
    first error is returned as it is (the caller asserts its status and code)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    while True:
        try:
            await attempt()
        except DfsError as exc:
            return exc
        assert loop.time() < deadline, f"{what}: still allowed after {give_up_s} s"
        await asyncio.sleep(POLL_S)


async def until_allowed(
    attempt: Callable[[], Awaitable[T]], what: str, *, give_up_s: float = GIVE_UP_S
) -> T:
    """What ``attempt()`` returns once it is allowed; retried while it is refused with
    ``403 access_denied`` (any other error is raised at once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + give_up_s
    while True:
        try:
            return await attempt()
        except DfsError as exc:
            if exc.status != 403 or exc.code != "access_denied":
                raise
            assert loop.time() < deadline, f"{what}: still refused after {give_up_s} s"
        await asyncio.sleep(POLL_S)
