"""Waiting for a quorum of concurrent replica operations.

Dynamo-style (DeCandia et al., SOSP 2007, section 4.5): the coordinator sends a request to
every replica of the preference list and answers as soon as ``need`` of them succeeded;
the rest keep running (the caller decides whether to await, background or cancel them).

Reads need not ask every replica: :func:`speculative_fan_out` asks only as many as the
quorum needs and the others only when one of those fails or is slow, after Cassandra's
speculative retry (``speculative_retry``), so a read costs R replicas' work, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from dfspeer.cluster.tracing_hooks import quorum_outcome, quorum_wait
from dfspeer.tracing import traced

T = TypeVar("T")


@dataclass
class QuorumOutcome(Generic[T]):
    """What :func:`wait_quorum` saw: successes and failures by peer id, and what still runs."""

    results: dict[str, T] = field(default_factory=dict)
    errors: dict[str, BaseException] = field(default_factory=dict)
    pending: dict[str, asyncio.Task[T]] = field(default_factory=dict)

    def reached(self, need: int) -> bool:
        return len(self.results) >= need

    def describe_errors(self) -> str:
        """One short line naming each failed peer and why (for error messages and logs)."""
        if not self.errors:
            return "no replica failed"
        return "; ".join(f"{peer}: {_short(exc)}" for peer, exc in sorted(self.errors.items()))


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


@traced("quorum.wait", quorum_wait, outcome=quorum_outcome)
async def wait_quorum(tasks: Mapping[str, asyncio.Task[T]], need: int) -> QuorumOutcome[T]:
    """Wait until ``need`` tasks succeeded, or until that can no longer happen.

    ``tasks`` maps peer id -> running task. Returns early (with the unfinished tasks in
    ``pending``) as soon as the quorum is reached or is impossible. If the caller is
    cancelled, every task is cancelled too.
    """
    return await _wait(
        tasks, lambda results, pending: len(results) >= need or len(results) + pending < need
    )


async def wait_until(
    tasks: Mapping[str, asyncio.Task[T]], satisfied: Callable[[Mapping[str, T]], bool]
) -> QuorumOutcome[T]:
    """Wait until ``satisfied(results so far)`` holds or every task has finished; the
    unfinished tasks are left in ``pending``. Cancelling the caller cancels every task."""
    return await _wait(tasks, lambda results, _pending: satisfied(results))


async def _wait(
    tasks: Mapping[str, asyncio.Task[T]], stop: Callable[[Mapping[str, T], int], bool]
) -> QuorumOutcome[T]:
    """Collect task outcomes until ``stop(results, number still pending)`` or none is left."""
    outcome: QuorumOutcome[T] = QuorumOutcome()
    peer_of = {task: peer for peer, task in tasks.items()}
    pending: set[asyncio.Task[T]] = set(tasks.values())
    try:
        while pending and not stop(outcome.results, len(pending)):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                _record(outcome, peer_of[task], task)
    except asyncio.CancelledError:
        for task in pending:
            task.cancel()
        raise
    outcome.pending = {peer_of[task]: task for task in pending}
    return outcome


def _record(outcome: QuorumOutcome[T], peer: str, task: asyncio.Task[T]) -> None:
    if task.cancelled():
        outcome.errors[peer] = asyncio.CancelledError()
    elif (exc := task.exception()) is not None:
        outcome.errors[peer] = exc
    else:
        outcome.results[peer] = task.result()


async def wait_all(tasks: Mapping[str, asyncio.Task[T]]) -> QuorumOutcome[T]:
    """Wait for every task (each bounded by its own timeout); sort outcomes by peer."""
    if tasks:
        try:
            await asyncio.wait(tasks.values())
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            raise
    outcome: QuorumOutcome[T] = QuorumOutcome()
    for peer, task in tasks.items():
        _record(outcome, peer, task)
    return outcome


async def cancel_all(tasks: Mapping[str, asyncio.Task[T]] | set[asyncio.Task[T]]) -> None:
    """Cancel ``tasks`` and wait until they have finished (their errors are swallowed)."""
    items = list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)
    for task in items:
        task.cancel()
    if items:
        await asyncio.gather(*items, return_exceptions=True)


async def speculative_fan_out(
    peers: Sequence[str],
    need: int,
    spawn: Callable[[tuple[str, ...]], dict[str, asyncio.Task[T]]],
    after_s: float,
) -> dict[str, asyncio.Task[T]]:
    """Start the operation on the first ``need`` of ``peers`` (in preference order) with
    ``spawn``; if any of them fails, or they have not all finished within ``after_s``
    seconds, start it on the rest of ``peers`` too. ``after_s <= 0``: on every peer at
    once. Returns every task started (peer id -> task), for :func:`wait_quorum`; cancelling
    the caller cancels them."""
    if after_s <= 0 or need >= len(peers):
        return spawn(tuple(peers))
    tasks = spawn(tuple(peers[:need]))
    if not tasks:
        return tasks
    try:
        done, pending = await asyncio.wait(tasks.values(), timeout=after_s)
    except asyncio.CancelledError:
        for task in tasks.values():
            task.cancel()
        raise
    if pending or any(t.cancelled() or t.exception() is not None for t in done):
        tasks.update(spawn(tuple(peers[need:])))
    return tasks
