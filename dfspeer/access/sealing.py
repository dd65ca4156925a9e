"""Sealing access key secrets for the replicated ``keys`` table.

Secrets are sealed with NaCl SecretBox (XSalsa20-Poly1305) under a subkey derived from
each cluster key (:meth:`dfspeer.gossip.Keyring.derive` with purpose
:data:`SECRET_PURPOSE`): the first key seals, any key opens, so the cluster key rotates as
it does for gossip. A peer must keep the secret (not a hash of it) because request
signatures (presigned links) are HMACs keyed by it.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.secret

from dfspeer.gossip import Keyring

SECRET_PURPOSE = b"dfspeer-access-key-secret-v1"


class SecretSealer:
    """Seal and open access key secrets under ``keyring``'s derived subkeys."""

    __slots__ = ("_boxes",)

    def __init__(self, keyring: Keyring) -> None:
        self._boxes = tuple(nacl.secret.SecretBox(k) for k in keyring.derive(SECRET_PURPOSE))

    def seal(self, secret: str) -> bytes:
        """``nonce (24) || ciphertext+MAC`` of the UTF-8 ``secret``, random nonce."""
        return bytes(self._boxes[0].encrypt(secret.encode("utf-8")))

    def open(self, sealed: bytes) -> str | None:
        """The secret, or None if no subkey authenticates ``sealed`` (never raises)."""
        for box in self._boxes:
            try:
                return bytes(box.decrypt(sealed)).decode("utf-8")
            except (nacl.exceptions.CryptoError, ValueError, TypeError, UnicodeDecodeError):
                continue
        return None

    def __repr__(self) -> str:  # never print key material
        return f"SecretSealer({len(self._boxes)} keys)"
