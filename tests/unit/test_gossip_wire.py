"""Wire format: encoding round trips, envelope sizes, validation, replay guard."""

from __future__ import annotations

import math
from typing import Any

import cbor2
import pytest

from dfspeer.gossip import Keyring, Member, MemberState, wire
from dfspeer.gossip.wire import ReplayGuard, WireError

KEYS = Keyring.insecure()
SENDER = wire.text_head("node-1")


def _member(**kw: Any) -> Member:
    fields: dict[str, Any] = {
        "id": "node-7", "gossip_address": ("10.0.0.7", 7946), "api_address": "10.0.0.7:7070",
        "incarnation": 3, "state": MemberState.ALIVE, "zone": "eu-1", "weight": 2.0,
        "version": "0.1.0",
    }
    fields.update(kw)
    return Member(**fields)


def _roundtrip(msgs: list[bytes], t: float = 12.5) -> tuple[float, str, list[list[Any]]]:
    sealed = wire.seal_datagram(KEYS, SENDER, t, msgs)
    assert len(sealed) <= wire.datagram_overhead(SENDER) + sum(len(m) for m in msgs)
    return wire.decode_datagram(wire.open_datagram(KEYS, sealed, 1400))


def test_every_message_round_trips() -> None:
    m = _member()
    msgs = [wire.ping(1, "node-7"), wire.ping(2, ""), wire.ack(3), wire.nack(4),
            wire.ping_req(5, m, True), wire.alive(m), wire.suspect("node-7", 3, "node-1"),
            wire.dead("node-7", 3, "node-2"), wire.left("node-7", 4)]
    t, sender, decoded = _roundtrip(msgs)
    assert (t, sender) == (12.5, "node-1")
    assert decoded == [
        [wire.PING, 1, "node-7"], [wire.PING, 2, ""], [wire.ACK, 3], [wire.NACK, 4],
        [wire.PING_REQ, 5, "node-7", "10.0.0.7", 7946, True],
        [wire.ALIVE, "node-7", 3, "10.0.0.7", 7946, "10.0.0.7:7070", "eu-1", 2.0, "0.1.0"],
        [wire.SUSPECT, "node-7", 3, "node-1"], [wire.DEAD, "node-7", 3, "node-2"],
        [wire.LEFT, "node-7", 4],
    ]
    assert wire.member_from_alive(decoded[5]) == m


def test_hand_encoded_envelope_is_plain_cbor() -> None:
    msgs = [wire.ack(i) for i in range(30)]  # > 23 items: two-byte array head
    plain = KEYS.open(wire.seal_datagram(KEYS, SENDER, 1.25, msgs))
    assert cbor2.loads(plain or b"") == {"v": 1, "t": 1.25, "from": "node-1",
                                  "msgs": [[wire.ACK, i] for i in range(30)]}


def test_full_state_round_trips() -> None:
    members = [_member(), _member(id="node-8", state=MemberState.LEFT, incarnation=9)]
    sealed = wire.seal_state(KEYS, SENDER, 3.0, members)
    t, sender, entries = wire.decode_state(KEYS.open(sealed) or b"")
    assert (t, sender) == (3.0, "node-1")
    assert [e[0] for e in entries] == ["node-7", "node-8"]
    assert [wire.CODE_STATES[e[2]] for e in entries] == [MemberState.ALIVE, MemberState.LEFT]


def _decode(obj: Any) -> str | None:
    try:
        wire.decode_datagram(cbor2.dumps(obj))
    except WireError as exc:
        return exc.reason
    return None


def _env(msgs: Any, **kw: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"v": 1, "t": 1.0, "from": "node-1", "msgs": msgs}
    env.update(kw)
    return env


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], "malformed"),
        ({"v": 1}, "malformed"),
        (_env([]), "malformed"),
        (_env([[1, 2]], v=2), "version"),
        (_env([[1, 2]], v="1"), "malformed"),
        (_env([[1, 2]], t=math.inf), "malformed"),
        (_env([[1, 2]], t="now"), "malformed"),
        (_env([[1, 2]], **{"from": ""}), "malformed"),
        (_env([[1, 2]], **{"from": "x" * 129}), "malformed"),
        (_env([[8, 2]]), "unknown_type"),
        (_env([[-1, 2]]), "unknown_type"),
        (_env([[1.0, 2]]), "invalid"),
        (_env([[]]), "invalid"),
        (_env([{"t": 1}]), "invalid"),
        (_env([[wire.ACK, -1]]), "invalid"),
        (_env([[wire.ACK, 2**64]]), "invalid"),
        (_env([[wire.ACK, False]]), "invalid"),
        (_env([[wire.ACK, 1, 2]]), "invalid"),
        (_env([[wire.PING, 1, "bad\nid"]]), "invalid"),
        (_env([[wire.PING_REQ, 1, "n", "h", 0, True]]), "invalid"),
        (_env([[wire.PING_REQ, 1, "n", "h", 80, 1]]), "invalid"),
        (_env([[wire.ALIVE, "n", 0, "h", 1, "a", "z", -1.0, ""]]), "invalid"),
        (_env([[wire.ALIVE, "n", 0, "h", 1, "a", "z", math.nan, ""]]), "invalid"),
        (_env([[wire.ALIVE, "n", 0, "h", 1, "a", "z" * 65, 1.0, ""]]), "invalid"),
        (_env([[wire.ALIVE, "n", 2**53 + 1, "h", 1, "a", "z", 1.0, ""]]), "invalid"),
        (_env([[wire.SUSPECT, "n", 0, b"from"]]), "invalid"),
        (_env([[wire.ACK, 1], [wire.LEFT, "n"]]), "invalid"),
    ],
)
def test_validation_rejects(obj: Any, reason: str) -> None:
    assert _decode(obj) == reason


def test_decoder_limits() -> None:
    assert _decode(_env([[wire.ACK, 1]])) is None
    deep: Any = [1]
    for _ in range(10):
        deep = [deep]
    assert _decode(_env([deep])) == "malformed"  # max_depth
    tagged = cbor2.dumps(_env([[wire.ACK, cbor2.CBORTag(4242, 1)]]))
    with pytest.raises(WireError, match="malformed"):
        wire.decode_datagram(tagged)
    head = b"".join(cbor2.dumps(x) for x in ("v", 1, "t", 1.0, "from", "x", "msgs"))
    huge_array = b"\xa4" + head + b"\x9b" + b"\xff" * 8  # claims 2**64-1 items, has none
    with pytest.raises(WireError, match="malformed"):
        wire.decode_datagram(huge_array)
    with pytest.raises(WireError, match="too_large"):
        wire.open_datagram(KEYS, b"\x00" * 1401, 1400)
    with pytest.raises(WireError, match="unsealed"):
        wire.open_datagram(KEYS, b"\x00" * 100, 1400)


def test_replay_guard_window_and_nonces() -> None:
    guard = ReplayGuard(window_s=60.0, max_entries=3)
    a, b = b"a" * 40, b"b" * 40
    assert guard.check(a, t=100.0, now=100.0) is None
    assert guard.check(a, t=100.0, now=101.0) == "replayed"
    assert guard.check(b, t=30.0, now=100.0) == "stale"
    assert guard.check(b, t=170.0, now=100.0) == "stale"
    for i in range(4):  # bounded memory: the oldest nonce is forgotten
        assert guard.check(bytes([i]) * 40, t=100.0, now=100.0) is None
    assert guard.check(a, t=100.0, now=100.0) is None
