"""Cluster keyring: NaCl SecretBox sealing with key rotation.

Seal with the first key, open with any: to rotate, add the new key second on every peer,
then move it first everywhere, then drop the old one — no peer ever stops understanding
another (the scheme of memberlist's keyring, with XSalsa20-Poly1305 SecretBox).

Key files hold one base64 key (32 bytes) per line; blank lines and ``#`` comments are
ignored; the first key seals.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from pathlib import Path

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.secret
import nacl.utils

KEY_BYTES = 32
SEAL_OVERHEAD_BYTES = nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES  # 40
NONCE_BYTES = nacl.secret.SecretBox.NONCE_SIZE  # 24


def generate_key() -> str:
    """A new random cluster key: base64 of 32 bytes from the OS CSPRNG (libsodium)."""
    return base64.b64encode(nacl.utils.random(KEY_BYTES)).decode("ascii")


def load_keyring(path: Path) -> Keyring:
    """Read a key file (one base64 key per line, ``#`` comments). The first key seals.

    Raises ``ValueError`` naming the line of a malformed key, or if the file holds no
    key; ``OSError`` if it cannot be read.
    """
    keys: list[bytes] = []
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{path}:{lineno}: not a base64 key: {exc}") from None
        if len(key) != KEY_BYTES:
            raise ValueError(f"{path}:{lineno}: key must be {KEY_BYTES} bytes, got {len(key)}")
        keys.append(key)
    if not keys:
        raise ValueError(f"{path}: no key found")
    return Keyring(keys)


class Keyring:
    """An ordered set of 32-byte SecretBox keys; ``keys[0]`` (``primary``) seals.

    Raises ``ValueError`` if ``keys`` is empty or a key is not 32 bytes.
    """

    __slots__ = ("_boxes", "_keys", "primary")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a keyring needs at least one key")
        for key in keys:
            if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
                raise ValueError(f"every key must be {KEY_BYTES} bytes")
        self._keys = tuple(bytes(k) for k in keys)
        self._boxes = tuple(nacl.secret.SecretBox(k) for k in self._keys)
        self.primary: bytes = self._keys[0]

    @classmethod
    def insecure(cls) -> Keyring:
        """A keyring with one fixed all-zero key, for ``--insecure`` local clusters only."""
        return cls([bytes(KEY_BYTES)])

    @property
    def keys(self) -> tuple[bytes, ...]:
        """All keys, sealing key first."""
        return self._keys

    def seal(self, plaintext: bytes) -> bytes:
        """``nonce (24) || ciphertext+MAC``: 40 bytes longer than ``plaintext``; random nonce."""
        return bytes(self._boxes[0].encrypt(plaintext))

    def open(self, sealed: bytes) -> bytes | None:
        """The plaintext if any key authenticates ``sealed``, else ``None`` (never raises)."""
        if len(sealed) < SEAL_OVERHEAD_BYTES:
            return None
        for box in self._boxes:
            try:
                return bytes(box.decrypt(sealed))
            except (nacl.exceptions.CryptoError, ValueError, TypeError):
                continue
        return None

    def derive(self, purpose: bytes) -> list[bytes]:
        """One 32-byte subkey per key, in key order: BLAKE2b(purpose, key=k, person=purpose[:16]).

        Used e.g. to authenticate peer RPC with HMAC without reusing the sealing key.
        """
        return [
            nacl.hash.blake2b(
                purpose,
                digest_size=32,
                key=key,
                person=purpose[:16],
                encoder=nacl.encoding.RawEncoder,
            )
            for key in self._keys
        ]

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never print key material
        return f"Keyring({len(self._keys)} keys)"
