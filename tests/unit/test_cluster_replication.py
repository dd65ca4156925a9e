"""Quorum waiting and the cluster-wide scan merge (pagination over many replicas)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from dfspeer.cluster.quorum import cancel_all, wait_all, wait_quorum
from dfspeer.cluster.scan import merge_scans
from tests.unit.lww_table import LwwTestSchema

PICK = LwwTestSchema().pick


async def value(delay: float, result: int) -> int:
    await asyncio.sleep(delay)
    return result


async def fail(delay: float) -> int:
    await asyncio.sleep(delay)
    raise ConnectionRefusedError("down")


async def test_quorum_returns_when_reached_and_leaves_stragglers() -> None:
    tasks = {
        "a": asyncio.create_task(value(0, 1)),
        "b": asyncio.create_task(value(0.001, 2)),
        "c": asyncio.create_task(value(10, 3)),
    }
    outcome = await wait_quorum(tasks, 2)
    assert outcome.reached(2) and outcome.results == {"a": 1, "b": 2}
    assert set(outcome.pending) == {"c"}
    await cancel_all(outcome.pending)


async def test_quorum_gives_up_as_soon_as_it_is_impossible() -> None:
    tasks = {
        "a": asyncio.create_task(fail(0)),
        "b": asyncio.create_task(fail(0.001)),
        "c": asyncio.create_task(value(10, 3)),
    }
    outcome = await wait_quorum(tasks, 2)
    assert not outcome.reached(2) and set(outcome.errors) == {"a", "b"}
    assert "down" in outcome.describe_errors()
    await cancel_all(outcome.pending)
    everything = await wait_all(
        {"x": asyncio.create_task(fail(0)), "y": asyncio.create_task(value(0.002, 5))}
    )
    assert everything.results == {"y": 5} and set(everything.errors) == {"x"}


def record(version: str) -> dict[str, str]:
    return {"version": version}


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 60), max_size=40), min_size=1, max_size=4),
    st.integers(1, 7),
)
def test_paged_merge_sees_every_key_once(replicas: list[set[int]], limit: int) -> None:
    """Each replica answers its first ``limit`` keys after the cursor; paging through
    merge_scans must yield the union of all keys, in order, each once."""
    stores = [sorted(f"k{n:03d}".encode() for n in keys) for keys in replicas]
    seen: list[bytes] = []
    cursor: bytes | None = None
    for _ in range(200):
        answers = [
            [(k, record("1")) for k in s if cursor is None or k > cursor][:limit] for s in stores
        ]
        page = merge_scans(answers, limit, PICK)
        seen += [k for k, _ in page.items]
        if not page.more:
            break
        assert page.cursor is not None and (cursor is None or page.cursor > cursor)
        cursor = page.cursor
    union = sorted(set().union(*map(set, stores)))
    assert seen == union


def test_merge_picks_the_latest_version_per_key() -> None:
    page = merge_scans(
        [[(b"a", record("2")), (b"b", record("1"))], [(b"a", record("3"))], [(b"b", {"bad": 1})]],
        10,
        PICK,
    )
    assert page.items == [(b"a", record("3")), (b"b", record("1"))] and not page.more
