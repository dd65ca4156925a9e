"""The nodes of a Merkle summary trie (:mod:`.merkle`): hashes and key paths, the byte
encoding of inner and leaf nodes, and the hash of the canonical subtree holding a set of
leaves.
"""

from __future__ import annotations

import hashlib

BUCKET = 8
"""Maximum keys in a leaf bucket above the maximal depth."""
MAX_DEPTH = 32
"""Nibbles of a key's path (BLAKE2b-128): a bucket this deep is never split."""
HASH_BYTES = 16
"""Bytes of every stored hash (node hashes, value hashes, block digests' prefixes)."""
EMPTY_HASH = bytes(HASH_BYTES)
"""Hash of an empty subtree (and of an empty partition / partition set)."""
INNER = 0x49  # b"I"
LEAF = 0x4C  # b"L"

_NIBBLES = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))

Entry = tuple[bytes, bytes]
"""``(key, value hash)`` of one leaf."""


def node_hash(raw: bytes) -> bytes:
    """BLAKE2b-128 of a node's stored bytes."""
    return hashlib.blake2b(raw, digest_size=HASH_BYTES).digest()


def value_hash(encoded: bytes) -> bytes:
    """Leaf value hash of a metadata record: BLAKE2b-128 of its canonical CBOR."""
    return hashlib.blake2b(encoded, digest_size=HASH_BYTES).digest()


def key_path(key: bytes) -> bytes:
    """The key's 32-nibble path: BLAKE2b-128 of the key, one nibble (0..15) per byte."""
    return hashlib.blake2b(key, digest_size=16).hexdigest().encode().translate(_NIBBLES)


# ---------------------------------------------------------------------- node codec
def leaf_encode(entries: list[Entry]) -> bytes:
    """Leaf bucket bytes of ``entries`` (already sorted by key)."""
    parts = [b"L"]
    for key, vhash in entries:
        parts += (len(key).to_bytes(2, "big"), key, vhash)
    return b"".join(parts)


def leaf_decode(raw: bytes) -> list[Entry]:
    """Entries of a leaf bucket, sorted by key."""
    out: list[Entry] = []
    i, end = 1, len(raw)
    while i < end:
        size = (raw[i] << 8) | raw[i + 1]
        j = i + 2 + size
        out.append((raw[i + 2 : j], raw[j : j + HASH_BYTES]))
        i = j + HASH_BYTES
    return out


def inner_encode(count: int, children: dict[int, bytes]) -> bytes:
    """Inner node bytes: ``count`` keys below, ``children`` nibble -> hash (non-empty)."""
    bitmap = 0
    for nibble in children:
        bitmap |= 1 << nibble
    hashes = b"".join(children[n] for n in sorted(children))
    return b"I" + count.to_bytes(8, "big") + bitmap.to_bytes(2, "big") + hashes


def inner_decode(raw: bytes) -> tuple[int, dict[int, bytes]]:
    """``(count, {nibble: child hash})`` of an inner node."""
    count = int.from_bytes(raw[1:9], "big")
    bitmap = int.from_bytes(raw[9:11], "big")
    children: dict[int, bytes] = {}
    offset = 11
    for nibble in range(16):
        if bitmap >> nibble & 1:
            children[nibble] = raw[offset : offset + HASH_BYTES]
            offset += HASH_BYTES
    return count, children


def node_count(raw: bytes) -> int:
    """Keys under a stored node (inner: its counter; leaf: its entries)."""
    if raw[0] == INNER:
        return int.from_bytes(raw[1:9], "big")
    return len(leaf_decode(raw))


def _inner_set_child(raw: bytes, nibble: int, child: bytes | None, delta: int) -> bytes:
    """``raw`` with child ``nibble`` set to hash ``child`` (None: removed), count += delta."""
    count = int.from_bytes(raw[1:9], "big") + delta
    bitmap = int.from_bytes(raw[9:11], "big")
    bit = 1 << nibble
    offset = 11 + HASH_BYTES * (bitmap & (bit - 1)).bit_count()
    rest = raw[offset + HASH_BYTES :] if bitmap & bit else raw[offset:]
    if child is None:
        bitmap &= ~bit
        child = b""
    else:
        bitmap |= bit
    head = b"I" + count.to_bytes(8, "big") + bitmap.to_bytes(2, "big")
    return head + raw[11:offset] + child + rest


def bucket_children(entries: list[Entry], depth: int) -> dict[int, list[Entry]]:
    """Entries grouped by the nibble of their path at ``depth`` (key order kept)."""
    groups: dict[int, list[Entry]] = {}
    for entry in entries:
        groups.setdefault(key_path(entry[0])[depth], []).append(entry)
    return groups


def canonical_hash(entries: list[Entry], depth: int) -> bytes:
    """Hash of the canonical subtree at ``depth`` holding ``entries`` (sorted by key)."""
    if not entries:
        return EMPTY_HASH
    if len(entries) <= BUCKET or depth >= MAX_DEPTH:
        return node_hash(leaf_encode(entries))
    groups = bucket_children(entries, depth)
    children = {n: canonical_hash(g, depth + 1) for n, g in groups.items()}
    return node_hash(inner_encode(len(entries), children))
