"""The small parts of the SWIM core, each alone: suspicion, awareness, broadcast queue,
member table, timers."""

from __future__ import annotations

import math
import random

from dfspeer.gossip import EventKind, Member, MemberState
from dfspeer.gossip.awareness import Awareness
from dfspeer.gossip.broadcast import BroadcastQueue, retransmit_limit
from dfspeer.gossip.state import MemberTable, Merge
from dfspeer.gossip.suspicion import Suspicion, confirmations_wanted, suspicion_timeout
from dfspeer.gossip.swim import push_pull_interval
from dfspeer.gossip.timers import TimerHeap


def _m(i: int, inc: int = 0, state: MemberState = MemberState.ALIVE, zone: str = "") -> Member:
    return Member(f"n{i}", (f"10.0.0.{i}", 7946), f"10.0.0.{i}:7070", inc, state, zone)


# ---------------------------------------------------------------------- suspicion
def test_suspicion_timeout_scales_with_log_n() -> None:
    assert suspicion_timeout(4, 1, 1.0) == 4.0
    assert suspicion_timeout(4, 5, 1.0) == 4.0  # log10(5) < 1 -> floor of 1
    assert math.isclose(suspicion_timeout(4, 1000, 1.0), 12.0)
    assert math.isclose(suspicion_timeout(4, 10_000, 0.5), 8.0)
    assert confirmations_wanted(4, 100) == 2
    assert confirmations_wanted(4, 3) == 0  # too small a cluster to confirm


def test_suspicion_shrinks_with_independent_confirmations() -> None:
    s = Suspicion("a", incarnation=1, k=3, min_s=10.0, max_s=60.0, start=100.0)
    assert s.deadline == 160.0
    assert not s.confirm("a")  # the accuser does not confirm itself
    assert s.confirm("b")
    first = s.deadline
    assert 110.0 < first < 160.0
    assert not s.confirm("b")  # once per peer
    assert s.confirm("c") and s.deadline < first
    assert s.confirm("d") and s.deadline == 110.0  # k confirmations: the minimum
    assert not s.confirm("e")
    expected = 60.0 - (60.0 - 10.0) * math.log(2) / math.log(4)
    assert math.isclose(first, 100.0 + expected)


def test_suspicion_without_confirmations_wanted_stays_at_max() -> None:
    s = Suspicion("a", incarnation=0, k=0, min_s=4.0, max_s=24.0, start=0.0)
    assert s.deadline == 24.0
    assert not s.confirm("b")


# ---------------------------------------------------------------------- awareness
def test_awareness_is_clamped_and_scales_timeouts() -> None:
    a = Awareness(8)
    assert a.apply_delta(-1) == 0
    assert a.apply_delta(3) == 3 and a.scale(0.5) == 2.0 and a.multiplier == 4
    assert a.apply_delta(100) == 7
    assert a.apply_delta(-2) == 5


# ---------------------------------------------------------------------- broadcast queue
def test_retransmit_limit() -> None:
    assert retransmit_limit(4, 1) == 4
    assert retransmit_limit(4, 9) == 4
    assert retransmit_limit(4, 10) == 8
    assert retransmit_limit(4, 1000) == 16
    assert retransmit_limit(4, 10_000) == 20


def test_queue_sends_least_sent_then_newest_first() -> None:
    q = BroadcastQueue(retransmit_mult=2)  # limit 2 transmits for n=5
    q.queue("a", b"A" * 10)
    q.queue("b", b"B" * 10)
    assert q.get(15, 5) == [b"B" * 10]  # newest first, only one fits
    q.queue("c", b"C" * 10)
    assert q.get(25, 5) == [b"C" * 10, b"A" * 10]  # unsent before sent-once
    assert q.get(100, 5) == [b"C" * 10, b"B" * 10, b"A" * 10]  # all sent once: newest first
    assert len(q) == 0 and q.get(100, 5) == []


def test_queue_replaces_news_about_the_same_member() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("a", b"old")
    q.get(100, 5)
    q.queue("a", b"new")
    assert "a" in q and len(q) == 1
    assert q.get(100, 5) == [b"new"]
    sent = [q.get(100, 5) for _ in range(5)]
    assert sent == [[b"new"], [b"new"], [b"new"], [], []]  # 4 transmits in all


def test_queue_packs_small_items_past_a_large_one() -> None:
    q = BroadcastQueue(retransmit_mult=4)
    q.queue("small", b"s" * 10)
    q.queue("big", b"b" * 100)
    assert q.get(50, 5) == [b"s" * 10]
    assert q.get(200, 5) == [b"b" * 100, b"s" * 10]


def test_queue_per_item_budget_and_uncounted_sends() -> None:
    q = BroadcastQueue(retransmit_mult=1)  # n=5: 1 transmit by default
    q.queue("acc", b"d" * 10)
    q.queue("upd", b"u" * 10, mult=3)  # ALIVE news: 3 transmits
    for _ in range(4):  # to members likely gone: packed, budget untouched
        assert q.get(100, 5, counted=False) == [b"u" * 10, b"d" * 10]
    assert q.get(100, 5) == [b"u" * 10, b"d" * 10]
    assert q.get(100, 5) == [b"u" * 10]
    assert q.get(100, 5, counted=False) == [b"u" * 10]
    assert q.get(100, 5) == [b"u" * 10]
    assert len(q) == 0 and q.get(100, 5) == []


# ---------------------------------------------------------------------- member table
def test_merge_rules() -> None:
    t = MemberTable(_m(0))
    assert t.merge_alive(_m(1), 0.0) is EventKind.JOINED
    assert t.merge_alive(_m(1), 0.0) is Merge.IGNORE  # same incarnation
    assert t.merge_alive(_m(1, inc=1), 0.0) is Merge.QUIET
    assert t.merge_alive(_m(1, inc=2, zone="z"), 0.0) is EventKind.UPDATED
    assert t.merge_suspect("n1", 1, 0.0) is Merge.IGNORE  # older incarnation
    assert t.merge_suspect("n9", 5, 0.0) is Merge.IGNORE  # unknown member
    assert t.merge_suspect("n1", 2, 0.0) is EventKind.SUSPECT
    assert t.merge_suspect("n1", 2, 0.0) is Merge.QUIET
    assert t.merge_alive(_m(1, inc=2), 0.0) is Merge.IGNORE  # must outbid the suspicion
    assert t.merge_alive(_m(1, inc=3), 0.0) is EventKind.ALIVE
    assert t.merge_dead("n1", 2, False, 0.0) is Merge.IGNORE
    assert t.merge_dead("n1", 3, False, 5.0) is EventKind.DEAD
    assert t.merge_dead("n1", 4, False, 6.0) is Merge.IGNORE  # already down
    assert t.merge_dead("n1", 2, True, 6.0) is Merge.IGNORE  # a stale LEFT
    assert t.changed_at["n1"] == 5.0 and t.live_count == 1
    assert t.merge_suspect("n1", 9, 0.0) is Merge.IGNORE
    assert t.merge_alive(_m(1, inc=3), 0.0) is Merge.IGNORE
    assert t.merge_alive(_m(1, inc=4), 7.0) is EventKind.JOINED  # rejoin
    assert "n1" not in t.changed_at and t.live_count == 2
    assert t.merge_dead("n1", 4, True, 8.0) is EventKind.LEFT
    assert t.remove("n1") is not None and t.get("n1") is None
    # a removed DEAD member (Swim.remove_member): LEFT replaces DEAD, nothing replaces LEFT
    assert t.merge_alive(_m(2), 10.0) is EventKind.JOINED
    assert t.merge_dead("n2", 0, False, 11.0) is EventKind.DEAD
    assert t.merge_dead("n2", 0, True, 12.0) is EventKind.LEFT
    assert t.get("n2").state is MemberState.LEFT  # type: ignore[union-attr]
    assert t.changed_at["n2"] == 11.0  # still down since its death (reaping counts from it)
    assert t.merge_dead("n2", 5, True, 13.0) is Merge.IGNORE
    assert t.merge_dead("n2", 5, False, 13.0) is Merge.IGNORE
    assert t.remove("n0") is None  # never the local member


def test_probe_order_is_round_robin_over_live_members() -> None:
    t = MemberTable(_m(0))
    for i in range(1, 21):
        t.put(_m(i), 0.0)
    t.put(_m(5, state=MemberState.DEAD), 0.0)
    rng = random.Random(1)
    live = {f"n{i}" for i in range(1, 21)} - {"n5"}
    for _ in range(3):  # each round visits every live member exactly once
        seen = [t.next_probe_target(rng) for _ in range(len(live))]
        assert {m.id for m in seen if m is not None} == live
        t._next = len(t._order)  # a round ends at the end of the order
    rounds = [[t.next_probe_target(rng).id for _ in range(19)] for _ in range(2)]  # type: ignore[union-attr]
    assert rounds[0] != rounds[1]  # reshuffled every round


def test_sample_respects_filter_and_exclusion() -> None:
    t = MemberTable(_m(0))
    for i in range(1, 11):
        t.put(_m(i, state=MemberState.DEAD if i % 2 else MemberState.ALIVE), 0.0)
    rng = random.Random(2)
    picked = t.sample(3, rng, lambda m: m.state is MemberState.ALIVE, exclude="n2")
    assert len(picked) == 3 and len({m.id for m in picked}) == 3
    assert all(m.state is MemberState.ALIVE and m.id != "n2" for m in picked)
    assert len(t.sample(10, rng, lambda m: m.state is MemberState.ALIVE)) == 5


# ---------------------------------------------------------------------- misc
def test_push_pull_interval_scales_above_32_members() -> None:
    assert push_pull_interval(30.0, 10) == 30.0
    assert push_pull_interval(30.0, 32) == 30.0
    assert push_pull_interval(30.0, 64) == 60.0
    assert push_pull_interval(30.0, 10_000) == 300.0


def test_timer_heap_runs_due_timers_in_order() -> None:
    h = TimerHeap()
    ran: list[tuple[str, float]] = []
    h.at(2.0, lambda arg, now: ran.append((arg, now)), "b")
    h.at(1.0, lambda arg, now: ran.append((arg, now)), "a")
    h.at(5.0, lambda arg, now: ran.append((arg, now)), "c")
    assert h.next() == 1.0
    assert h.run_due(3.0) == 2 and ran == [("a", 3.0), ("b", 3.0)]
    assert h.next() == 5.0 and len(h) == 1
