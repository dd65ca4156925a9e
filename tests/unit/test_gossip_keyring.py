"""Keyring: key files, sealing, rotation, subkey derivation."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dfspeer.gossip import Keyring, generate_key, load_keyring


def test_generate_key_is_base64_of_32_random_bytes() -> None:
    a, b = generate_key(), generate_key()
    assert len(base64.b64decode(a, validate=True)) == 32
    assert a != b


def test_load_keyring_reads_keys_in_order_with_comments(tmp_path: Path) -> None:
    k1, k2 = generate_key(), generate_key()
    path = tmp_path / "cluster.key"
    path.write_text(f"# cluster keys\n{k1}\n\n  {k2}  # old key\n")
    ring = load_keyring(path)
    assert ring.keys == (base64.b64decode(k1), base64.b64decode(k2))
    assert ring.primary == base64.b64decode(k1)
    assert len(ring) == 2 and repr(ring) == "Keyring(2 keys)"


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "no key"), ("# only a comment\n", "no key"), ("not base64!\n", ":1: not a base64"),
     (base64.b64encode(b"short").decode() + "\n", "must be 32 bytes")],
)
def test_load_keyring_rejects_bad_files(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "k"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        load_keyring(path)


def test_keyring_needs_32_byte_keys() -> None:
    with pytest.raises(ValueError):
        Keyring([])
    with pytest.raises(ValueError):
        Keyring([b"x" * 31])


def test_seal_with_first_open_with_any() -> None:
    k1, k2, k3 = (bytes([i]) * 32 for i in (1, 2, 3))
    new = Keyring([k2, k1])
    old = Keyring([k1, k2])
    sealed = new.seal(b"hello")
    assert len(sealed) == len(b"hello") + 40
    assert old.open(sealed) == b"hello"  # rotation: k2 is known second
    assert new.open(old.seal(b"back")) == b"back"
    assert Keyring([k3]).open(sealed) is None
    assert old.open(sealed[:-1]) is None
    assert old.open(b"") is None
    tampered = bytearray(sealed)
    tampered[30] ^= 1
    assert old.open(bytes(tampered)) is None
    assert new.seal(b"same") != new.seal(b"same")  # random nonces


def test_derive_gives_one_subkey_per_key_and_purpose() -> None:
    ring = Keyring([b"\x01" * 32, b"\x02" * 32])
    rpc = ring.derive(b"dfspeer-rpc-hmac")
    assert len(rpc) == 2 and all(len(k) == 32 for k in rpc)
    assert rpc[0] != rpc[1]
    assert ring.derive(b"dfspeer-rpc-hmac") == rpc
    assert ring.derive(b"other") != rpc
    assert rpc[0] not in ring.keys
    assert Keyring([b"\x01" * 32]).derive(b"dfspeer-rpc-hmac") == rpc[:1]


def test_insecure_keyring_is_fixed() -> None:
    assert Keyring.insecure().keys == (bytes(32),)
    assert Keyring.insecure().open(Keyring.insecure().seal(b"x")) == b"x"
