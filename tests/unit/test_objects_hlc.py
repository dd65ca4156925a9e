"""Hybrid logical clock: monotonic, absorbs remote timestamps; versions sort like (hlc, id)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dfspeer.objects.hlc import LOGICAL_BITS, HybridLogicalClock, Version


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_monotonic_even_when_wall_clock_goes_back() -> None:
    wall = FakeClock(1000.0)
    clock = HybridLogicalClock(wall)
    a = clock.now()
    wall.t = 999.0  # the wall clock steps backwards
    b = clock.now()
    c = clock.now()
    assert a < b < c
    assert b >> LOGICAL_BITS == 1_000_000  # still in the last physical millisecond


def test_physical_part_follows_wall_clock() -> None:
    wall = FakeClock(1000.0)
    clock = HybridLogicalClock(wall)
    clock.now()
    wall.t = 1001.5
    assert clock.now() >> LOGICAL_BITS == 1_001_500


def test_observe_orders_later_events_after_remote() -> None:
    slow = HybridLogicalClock(FakeClock(1000.0))
    fast = HybridLogicalClock(FakeClock(2000.0))
    remote = fast.now()
    slow.observe(remote)
    assert slow.now() > remote
    slow.observe(1)  # an old timestamp changes nothing
    assert slow.now() > remote


def test_logical_overflow_carries_into_milliseconds() -> None:
    clock = HybridLogicalClock(FakeClock(1.0))
    stamps = [clock.now() for _ in range((1 << LOGICAL_BITS) + 5)]
    assert stamps == sorted(set(stamps))


@given(st.lists(st.tuples(st.integers(0, 2**62), st.text(min_size=1, max_size=12)), min_size=2))
def test_version_text_sorts_like_tuple(items: list[tuple[int, str]]) -> None:
    versions = [Version(h, p) for h, p in items]
    assert sorted(versions, key=str) == sorted(versions)
    for v in versions:
        assert Version.parse(str(v)) == v


def test_observe_version_ignores_garbage() -> None:
    clock = HybridLogicalClock(FakeClock(5.0))
    clock.observe_version("not-a-version")
    clock.observe_version(str(Version(10**15, "p")))
    assert clock.now() > 10**15
