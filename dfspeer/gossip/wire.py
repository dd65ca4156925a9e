"""Gossip wire format: CBOR messages in SecretBox-sealed datagrams, and their validation.

Datagram = ``Keyring.seal(CBOR({"v": 1, "t": float, "from": id, "msgs": [msg, ...]}))``
(at most ``max_datagram_bytes`` sealed). ``t`` is the sender's clock (seconds), used with a
nonce cache against replays. Each ``msg`` is a CBOR array whose first item is its type:

=========  ===================================================================
``PING``   ``[0, seq, target_id]`` (``target_id`` "" when unknown, e.g. a join)
``ACK``    ``[1, seq]``
``NACK``   ``[2, seq]`` (Lifeguard: the intermediary could not reach the target)
``PING_REQ`` ``[3, seq, target_id, host, port, want_nack]``
``ALIVE``  ``[4, id, incarnation, host, port, api_address, zone, weight, version]``
``SUSPECT`` ``[5, id, incarnation, from_id]``
``DEAD``   ``[6, id, incarnation, from_id]``
``LEFT``   ``[7, id, incarnation]``
=========  ===================================================================

The push-pull full state (any size, sent over a stream) is
``seal(CBOR({"v": 1, "t": float, "from": id, "members": [[id, incarnation, state, host,
port, api_address, zone, weight, version], ...]}))`` with state 0..3 = alive, suspect,
dead, left.

Decoding never trusts input: a failure raises :class:`WireError` whose ``reason`` becomes
the ``dropped.<reason>`` counter. The envelope is hand-encoded (it is fixed), so the size
of a datagram is known before it is built and broadcasts can be packed up to the limit.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Sequence
from typing import Any, TypeGuard

import cbor2

from dfspeer.gossip.keyring import NONCE_BYTES, SEAL_OVERHEAD_BYTES, Keyring
from dfspeer.gossip.types import Member, MemberState

VERSION = 1
PING, ACK, NACK, PING_REQ, ALIVE, SUSPECT, DEAD, LEFT = range(8)
STATE_CODES: dict[MemberState, int] = {
    MemberState.ALIVE: 0,
    MemberState.SUSPECT: 1,
    MemberState.DEAD: 2,
    MemberState.LEFT: 3,
}
CODE_STATES: tuple[MemberState, ...] = tuple(STATE_CODES)
MAX_ID_CHARS = 128
MAX_INCARNATION = 2**53
MAX_SEQ = 2**64 - 1
MAX_WEIGHT = 1e6
MIN_MESSAGE_BYTES = 3
_ARRAY_HEAD_MAX = 3  # bytes reserved for the msgs array head (up to 65535 items)
_LOADS_OPTS: dict[str, Any] = {
    "max_depth": 4,
    "allow_indefinite": False,
    "allow_duplicate_keys": False,
    "strict_hashable_types": True,
}
_T = struct.Struct(">d")


class WireError(Exception):
    """Input rejected; ``reason`` names the ``dropped.<reason>`` counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------- encoding
def text_head(text: str) -> bytes:
    """CBOR encoding of ``text`` (used once per peer for the envelope's ``from``)."""
    return cbor2.dumps(text)


def _array_head(n: int) -> bytes:
    if n < 24:
        return bytes((0x80 | n,))
    if n < 256:
        return bytes((0x98, n))
    if n < 65536:
        return b"\x99" + n.to_bytes(2, "big")
    return b"\x9a" + n.to_bytes(4, "big")


def _envelope(sender: bytes, t: float, key: bytes, body: Sequence[bytes]) -> bytes:
    head = (b"\xa4\x61v\x01\x61t\xfb", _T.pack(t), b"\x64from", sender, key)
    return b"".join((*head, *body))


def datagram_overhead(sender: bytes) -> int:
    """Bytes of a sealed datagram that are not messages, for a ``text_head`` sender."""
    return SEAL_OVERHEAD_BYTES + 15 + 5 + len(sender) + 5 + _ARRAY_HEAD_MAX


def seal_datagram(keyring: Keyring, sender: bytes, t: float, msgs: Sequence[bytes]) -> bytes:
    """Seal encoded messages (see module doc) sent by ``sender`` (a ``text_head``) at ``t``."""
    return keyring.seal(_envelope(sender, t, b"\x64msgs", (_array_head(len(msgs)), *msgs)))


def seal_state(keyring: Keyring, sender: bytes, t: float, members: Sequence[Member]) -> bytes:
    """Seal a push-pull full state listing ``members``."""
    codes = STATE_CODES
    rows = [
        [m.id, m.incarnation, codes[m.state], *m.gossip_address, m.api_address, m.zone,
         float(m.weight), m.version]
        for m in members
    ]
    return keyring.seal(_envelope(sender, t, b"\x67members", (cbor2.dumps(rows),)))


def ping(seq: int, target: str) -> bytes:
    return cbor2.dumps([PING, seq, target])


def ack(seq: int) -> bytes:
    return cbor2.dumps([ACK, seq])


def nack(seq: int) -> bytes:
    return cbor2.dumps([NACK, seq])


def ping_req(seq: int, target: Member, want_nack: bool) -> bytes:
    host, port = target.gossip_address
    return cbor2.dumps([PING_REQ, seq, target.id, host, port, want_nack])


def alive(m: Member) -> bytes:
    host, port = m.gossip_address
    return cbor2.dumps(
        [ALIVE, m.id, m.incarnation, host, port, m.api_address, m.zone, float(m.weight), m.version]
    )


def suspect(member_id: str, incarnation: int, from_id: str) -> bytes:
    return cbor2.dumps([SUSPECT, member_id, incarnation, from_id])


def dead(member_id: str, incarnation: int, from_id: str) -> bytes:
    return cbor2.dumps([DEAD, member_id, incarnation, from_id])


def left(member_id: str, incarnation: int) -> bytes:
    return cbor2.dumps([LEFT, member_id, incarnation])


def member_from_alive(m: list[Any], state: MemberState = MemberState.ALIVE) -> Member:
    """Member from a validated ALIVE message (or a state entry shifted to the same layout)."""
    return Member(m[1], (m[3], m[4]), m[5], m[2], state, m[6], float(m[7]), m[8])


# ---------------------------------------------------------------------- validation
def _id(x: Any) -> TypeGuard[str]:
    return type(x) is str and 0 < len(x) <= MAX_ID_CHARS and x.isprintable()


def _inc(x: Any) -> bool:
    return type(x) is int and 0 <= x <= MAX_INCARNATION


def _seq(x: Any) -> bool:
    return type(x) is int and 0 <= x <= MAX_SEQ


def _text(x: Any, limit: int) -> bool:
    return type(x) is str and len(x) <= limit and x.isprintable()


def _addr(host: Any, port: Any) -> bool:
    return _text(host, 255) and len(host) > 0 and type(port) is int and 0 < port < 65536


def _meta(api: Any, zone: Any, weight: Any, version: Any) -> bool:
    return (
        _text(api, 300)
        and _text(zone, 64)
        and (type(weight) is float or type(weight) is int)
        and 0 <= weight <= MAX_WEIGHT  # 0: draining (in no preference list)
        and _text(version, 64)
    )


def _check_ping(m: list[Any]) -> bool:
    return len(m) == 3 and _seq(m[1]) and (m[2] == "" or _id(m[2]))


def _check_seq_only(m: list[Any]) -> bool:
    return len(m) == 2 and _seq(m[1])


def _check_ping_req(m: list[Any]) -> bool:
    return len(m) == 6 and _seq(m[1]) and _id(m[2]) and _addr(m[3], m[4]) and type(m[5]) is bool


def _check_alive(m: list[Any]) -> bool:
    return (
        len(m) == 9
        and _id(m[1])
        and _inc(m[2])
        and _addr(m[3], m[4])
        and _meta(m[5], m[6], m[7], m[8])
    )


def _check_accusation(m: list[Any]) -> bool:
    return len(m) == 4 and _id(m[1]) and _inc(m[2]) and _id(m[3])


def _check_left(m: list[Any]) -> bool:
    return len(m) == 3 and _id(m[1]) and _inc(m[2])


_CHECKS = (
    _check_ping,
    _check_seq_only,
    _check_seq_only,
    _check_ping_req,
    _check_alive,
    _check_accusation,
    _check_accusation,
    _check_left,
)


def _check_entry(e: Any) -> bool:
    # one flat function: a 10,000-member push-pull state runs it 10,000 times
    if type(e) is not list or len(e) != 9:
        return False
    mid, inc, code, host, port, api, zone, weight, version = e
    return (
        type(mid) is str
        and 0 < len(mid) <= MAX_ID_CHARS
        and mid.isprintable()
        and type(inc) is int
        and 0 <= inc <= MAX_INCARNATION
        and type(code) is int
        and 0 <= code <= 3
        and type(host) is str
        and 0 < len(host) <= 255
        and host.isprintable()
        and type(port) is int
        and 0 < port < 65536
        and _meta(api, zone, weight, version)
    )


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise WireError("malformed")


def _load_envelope(plain: bytes, body_key: str) -> tuple[float, str, list[Any]]:
    try:
        obj = cbor2.loads(plain, tag_hook=_reject_tag, **_LOADS_OPTS)
    except Exception:  # cbor2 raises CBORDecodeError, ValueError, OverflowError, ...
        raise WireError("malformed") from None
    if type(obj) is not dict:
        raise WireError("malformed")
    v = obj.get("v")
    if type(v) is not int:
        raise WireError("malformed")
    if v != VERSION:
        raise WireError("version")
    t, sender, body = obj.get("t"), obj.get("from"), obj.get(body_key)
    if not (type(t) is float or type(t) is int) or not math.isfinite(t):
        raise WireError("malformed")
    if not _id(sender) or type(body) is not list:
        raise WireError("malformed")
    return float(t), sender, body


def decode_datagram(plain: bytes) -> tuple[float, str, list[list[Any]]]:
    """Parse and fully validate an opened datagram -> ``(t, sender_id, msgs)``.

    Every message is checked before any is returned, so a caller can apply them knowing
    the whole datagram is well formed. Raises :class:`WireError` (``malformed``,
    ``version``, ``unknown_type``, ``invalid``).
    """
    t, sender, msgs = _load_envelope(plain, "msgs")
    if not msgs:
        raise WireError("malformed")
    checks = _CHECKS
    for m in msgs:
        if type(m) is not list or not m or type(m[0]) is not int:
            raise WireError("invalid")
        code = m[0]
        if not 0 <= code < len(checks):
            raise WireError("unknown_type")
        if not checks[code](m):
            raise WireError("invalid")
    return t, sender, msgs


def decode_state(plain: bytes) -> tuple[float, str, list[list[Any]]]:
    """Parse and validate an opened push-pull state -> ``(t, sender_id, entries)``.

    Raises :class:`WireError` (``malformed``, ``version``, ``invalid``).
    """
    t, sender, entries = _load_envelope(plain, "members")
    for e in entries:
        if not _check_entry(e):
            raise WireError("invalid")
    return t, sender, entries


def open_datagram(keyring: Keyring, data: bytes, max_bytes: int) -> bytes:
    """Size-check and open a datagram. Raises :class:`WireError` (``too_large``, ``unsealed``)."""
    if len(data) > max_bytes:
        raise WireError("too_large")
    plain = keyring.open(data)
    if plain is None:
        raise WireError("unsealed")
    return plain


class ReplayGuard:
    """Drops stale and exactly replayed datagrams.

    A datagram stamped more than ``window_s`` away from ``now`` is stale; within the
    window, a nonce seen in the last ``2 * window_s`` seconds (at most ``max_entries``
    remembered) is a replay.
    """

    __slots__ = ("_order", "_seen", "max_entries", "window_s")

    def __init__(self, window_s: float, max_entries: int = 8192) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: set[bytes] = set()
        self._order: deque[tuple[float, bytes]] = deque()

    def check(self, data: bytes, t: float, now: float) -> str | None:
        """``None`` if fresh (and remember its nonce), else the drop reason."""
        if abs(t - now) > self.window_s:
            return "stale"
        nonce = data[:NONCE_BYTES]
        seen = self._seen
        if nonce in seen:
            return "replayed"
        order = self._order
        horizon = now - 2 * self.window_s
        while order and (len(order) >= self.max_entries or order[0][0] < horizon):
            seen.discard(order.popleft()[1])
        seen.add(nonce)
        order.append((now, nonce))
        return None
