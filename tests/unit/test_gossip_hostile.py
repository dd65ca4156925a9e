"""Hostile input: forged, garbage, truncated, replayed, stale, oversized and fuzzed datagrams
are dropped, counted, and change nothing; ``receive`` never raises."""

from __future__ import annotations

import math
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.gossip import Keyring, Member, Swim, wire
from tests.unit.gossip_net import KEYRING, Net

FOREIGN = Keyring([b"\x07" * 32])


def _snapshot(swim: Swim) -> list[Member]:
    return sorted(swim.members(), key=lambda m: m.id)


def _cluster() -> tuple[Net, list[Swim]]:
    net = Net(seed=21)
    return net, net.cluster(4)


def _suspect_datagram(net: Net, about: Swim, *, keyring: Keyring = KEYRING,
                      t: float | None = None) -> bytes:
    msg = wire.suspect(about.local.id, about.local.incarnation, "node-1")
    dead = wire.dead(about.local.id, about.local.incarnation, "node-1")
    when = net.now if t is None else t
    return wire.seal_datagram(keyring, wire.text_head("node-1"), when, [msg, dead])


def test_rejected_datagrams_change_nothing_and_are_counted() -> None:
    net, swims = _cluster()
    victim, target = swims[1], swims[2]
    before = _snapshot(victim)
    good = _suspect_datagram(net, target)
    cases = {
        "unsealed": [_suspect_datagram(net, target, keyring=FOREIGN), b"\x00" * 100,
                     good[:-1], good[:30], b"", bytes(reversed(good))],
        "too_large": [good + b"\x00" * 1400],
        "stale": [_suspect_datagram(net, target, t=net.now - 61.0),
                  _suspect_datagram(net, target, t=net.now + 61.0)],
        "malformed": [KEYRING.seal(b"\xff\xfe garbage"), KEYRING.seal(cbor2.dumps([1, 2, 3])),
                      KEYRING.seal(cbor2.dumps({"v": 1, "t": net.now, "from": "x"})),
                      KEYRING.seal(cbor2.dumps({"v": 1, "t": math.nan, "from": "x", "msgs": []}))],
        "version": [KEYRING.seal(cbor2.dumps({"v": 2, "t": net.now, "from": "x", "msgs": []}))],
        "unknown_type": [_sealed([[42, 1]], net.now)],
        "invalid": [_sealed([[wire.SUSPECT, "node-3", -1, "node-1"]], net.now),
                    _sealed([[wire.SUSPECT, "node-3", True, "node-1"]], net.now),
                    _sealed([[wire.DEAD, "node-3", 0]], net.now),
                    _sealed([[wire.SUSPECT, "node-3", 0, "node-1"], "junk"], net.now),
                    _sealed([[wire.ALIVE, "n\x00", 0, "h", 1, "a", "", 1.0, ""]], net.now),
                    _sealed([[wire.ALIVE, "n", 0, "h", 1, "a", "", math.inf, ""]], net.now),
                    _sealed([[wire.LEFT, "node-3", 2**60]], net.now)],
        "from_self": [wire.seal_datagram(KEYRING, wire.text_head(victim.local.id), net.now,
                                         [wire.suspect(target.local.id, 0, "x")])],
    }
    for reason, datagrams in cases.items():
        for data in datagrams:
            victim.receive(data, ("10.9.9.9", 7946), net.now)
        assert victim.counters["dropped." + reason] == len(datagrams), reason
    assert _snapshot(victim) == before
    assert victim.drain_events() == []
    assert victim.counters["errors.internal"] == 0
    # the genuine datagram is accepted once, then its exact replay is dropped
    victim.receive(good, ("10.9.9.9", 7946), net.now)
    assert victim.member(target.local.id).state.value == "dead"  # type: ignore[union-attr]
    after = _snapshot(victim)
    victim.receive(good, ("10.9.9.9", 7946), net.now + 1.0)
    assert victim.counters["dropped.replayed"] == 1
    assert _snapshot(victim) == after


def _sealed(msgs: list[Any], t: float, sender: str = "node-1") -> bytes:
    return KEYRING.seal(cbor2.dumps({"v": 1, "t": t, "from": sender, "msgs": msgs}))


def test_merge_state_rejects_bad_input() -> None:
    net, swims = _cluster()
    a = swims[0]
    before = _snapshot(a)
    assert not a.merge_state(b"nonsense", net.now)
    assert not a.merge_state(FOREIGN.seal(b"x"), net.now)
    assert not a.merge_state(KEYRING.seal(cbor2.dumps({"v": 1})), net.now)
    entry = ["id", 0, 9, "h", 1, "", "", 1.0, ""]  # state 9 does not exist
    bad_entry = {"v": 1, "t": net.now, "from": "x", "members": [entry]}
    assert not a.merge_state(KEYRING.seal(cbor2.dumps(bad_entry)), net.now)
    assert _snapshot(a) == before
    assert a.counters["dropped.unsealed"] == 2
    assert a.counters["dropped.malformed"] == 1 and a.counters["dropped.invalid"] == 1


# ---------------------------------------------------------------------- fuzz
_FUZZ_NET: list[tuple[Net, list[Swim]]] = []


def _fuzz_cluster() -> tuple[Net, list[Swim]]:
    if not _FUZZ_NET:
        _FUZZ_NET.append(_cluster())
    return _FUZZ_NET[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=1600))
def test_fuzz_arbitrary_bytes_never_raise_or_change_membership(data: bytes) -> None:
    net, swims = _fuzz_cluster()
    victim = swims[1]
    before = _snapshot(victim)
    victim.receive(data, ("10.9.9.9", 7946), net.now)
    assert _snapshot(victim) == before
    assert victim.counters["errors.internal"] == 0


_scalars = (
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=20) | st.binary(max_size=20)
)
_cbor = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=6)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=15,
)
_msg = st.one_of(
    st.lists(_cbor, max_size=10),
    st.tuples(st.integers(min_value=-1, max_value=9), st.lists(_cbor, max_size=9)).map(
        lambda t: [t[0], *t[1]]
    ),
    st.tuples(
        st.integers(min_value=0, max_value=7),
        st.sampled_from(["node-1", "node-2", "node-3", "node-4", "ghost", ""]),
        st.integers(min_value=-2, max_value=5) | _scalars,
        st.lists(_scalars, max_size=7),
    ).map(lambda t: [t[0], t[1], t[2], *t[3]]),
)
_envelope = st.one_of(
    _cbor,
    st.fixed_dictionaries(
        {"v": st.just(1) | _scalars, "t": st.just(0.0) | _scalars,
         "from": st.sampled_from(["node-1", "x"]) | _scalars, "msgs": st.lists(_msg, max_size=5)},
    ),
)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_envelope)
def test_fuzz_validly_sealed_structures_never_raise(obj: Any) -> None:
    net, swims = _fuzz_cluster()
    victim = swims[1]
    if isinstance(obj, dict) and obj.get("t") == 0.0:
        obj["t"] = net.now  # inside the replay window, so the structure itself is judged
    try:
        plain = cbor2.dumps(obj)
    except Exception:
        return
    before = _snapshot(victim)
    dropped = sum(v for k, v in victim.counters.items() if k.startswith("dropped."))
    victim.receive(KEYRING.seal(plain), ("10.9.9.9", 7946), net.now)
    assert victim.counters["errors.internal"] == 0
    if sum(v for k, v in victim.counters.items() if k.startswith("dropped.")) > dropped:
        assert _snapshot(victim) == before
    assert victim.merge_state(KEYRING.seal(plain), net.now) in (True, False)
    assert victim.counters["errors.internal"] == 0
