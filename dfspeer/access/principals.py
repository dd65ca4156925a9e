"""Principals: who a request acts as once its credential is checked.

- ``admin``: the bearer of the admin token; may do everything;
- ``key``: an access key (id, whether it may create buckets); may do what the buckets'
  permissions give it (:mod:`dfspeer.access.permissions`);
- ``open``: every request of a peer run with ``--insecure`` (no client authentication);
  allowed like ``admin``.

Unauthenticated requests have no principal: they reach only public routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PrincipalKind = Literal["admin", "key", "open"]


@dataclass(frozen=True)
class Principal:
    """An authenticated principal. ``key_id`` is "" unless ``kind == "key"``."""

    kind: PrincipalKind
    key_id: str = ""
    allow_create_bucket: bool = False

    @property
    def is_admin(self) -> bool:
        """True for the admin token and for ``--insecure`` peers (everything allowed)."""
        return self.kind in ("admin", "open")

    @property
    def owner_id(self) -> str:
        """What a bucket created by this principal records as its owner: the key id, or
        "" for the admin (an admin-created bucket is reachable by admin and grants only)."""
        return self.key_id if self.kind == "key" else ""

    @property
    def name(self) -> str:
        """For logs: ``admin``, ``open`` or the key id (never a secret)."""
        return self.key_id if self.kind == "key" else self.kind


ADMIN = Principal("admin")
OPEN = Principal("open")


def key_principal(key_id: str, *, allow_create_bucket: bool) -> Principal:
    """The principal of access key ``key_id``."""
    return Principal("key", key_id, allow_create_bucket)
