"""Who may do what: actions, bucket permissions and the one pure decision function.

A route asks for one :class:`Action` (see :mod:`dfspeer.access.routes`). The admin (and an
``--insecure`` peer) may do everything. An access key may:

- ``AUTHENTICATED`` routes (cluster members, ring, status, its own bucket list): always;
- ``READ`` (get, head, list a bucket's objects and versions, the bucket's usage): with
  the bucket's ``read`` flag;
- ``WRITE`` / ``DELETE`` (put, delete objects and versions, resumable uploads): with
  ``write``;
- ``OWNER`` (versioning, delete the bucket, change its permissions): with ``owner``;
- ``CREATE_BUCKET`` (``PUT /v1/buckets/{b}``): a missing bucket if the key has
  ``allow_create_bucket``; an existing one only as its owner;
- ``ADMIN`` routes: never.

The key that created a bucket is its ``owner`` (the bucket's ``owner`` field), which
implies ``read``, ``write`` and ``owner``. An object ``PUT`` into a missing bucket by a key
that may create buckets creates it first, owned by the key (:data:`Decision.CREATE`).
"""

from __future__ import annotations

import enum

from dfspeer.access.principals import Principal
from dfspeer.model.buckets import Bucket, Grant


class Action(enum.Enum):
    """What a route needs (the route table maps every route to one)."""

    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    READ = "read"
    WRITE = "write"
    DELETE = "delete"
    OWNER = "owner"
    CREATE_BUCKET = "create_bucket"
    ADMIN = "admin"

    @property
    def on_bucket(self) -> bool:
        """True when the decision depends on a bucket's permissions."""
        return self in (
            Action.READ,
            Action.WRITE,
            Action.DELETE,
            Action.OWNER,
            Action.CREATE_BUCKET,
        )


class Decision(enum.Enum):
    """The outcome of :func:`decide`."""

    ALLOW = "allow"
    DENY = "deny"
    CREATE = "create"  # allowed, once the missing bucket is created owned by the key


NO_GRANT = Grant()
OWNER_GRANT = Grant(read=True, write=True, owner=True)


def grant_of(bucket: Bucket, key_id: str) -> Grant:
    """What ``key_id`` may do on ``bucket``: its owner gets everything, else its entry of
    ``bucket.permissions`` (``owner`` implies ``read`` and ``write``), else nothing."""
    if key_id and bucket.owner == key_id:
        return OWNER_GRANT
    grant = bucket.permissions.get(key_id, NO_GRANT)
    if grant.owner:
        return OWNER_GRANT
    return grant


def decide(principal: Principal, action: Action, bucket: Bucket | None) -> Decision:
    """Whether ``principal`` may do ``action``; ``bucket`` is the live bucket the request
    names (None: missing, or the route names none). Pure."""
    if action is Action.PUBLIC or principal.is_admin:
        return Decision.ALLOW
    if action is Action.AUTHENTICATED:
        return Decision.ALLOW
    if action is Action.ADMIN:
        return Decision.DENY
    if bucket is None:
        # A key cannot tell a missing bucket from one it may not see, except where it may
        # create it.
        if principal.allow_create_bucket and action in (Action.CREATE_BUCKET, Action.WRITE):
            return Decision.CREATE
        return Decision.DENY
    grant = grant_of(bucket, principal.key_id)
    allowed = {
        Action.READ: grant.read,
        Action.WRITE: grant.write,
        Action.DELETE: grant.write,
        Action.OWNER: grant.owner,
        Action.CREATE_BUCKET: grant.owner,
    }.get(action, False)
    return Decision.ALLOW if allowed else Decision.DENY


def visible(principal: Principal, bucket: Bucket) -> bool:
    """True if ``principal`` sees ``bucket`` in ``GET /v1/buckets``: the admin sees all, a
    key the buckets it owns or has any permission on."""
    if principal.is_admin:
        return True
    grant = grant_of(bucket, principal.key_id)
    return grant.read or grant.write or grant.owner


def with_grant(
    permissions: dict[str, Grant] | None, key_id: str, change: dict[str, bool]
) -> dict[str, Grant]:
    """``permissions`` with ``key_id``'s flags updated by ``change`` (names ``read``,
    ``write``, ``owner``; a flag not named keeps its value); a key left with no flag is
    removed. Pure. Raises ValueError for another name."""
    unknown = set(change) - {"read", "write", "owner"}
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(sorted(unknown))}")
    out = dict(permissions or {})
    old = out.get(key_id, NO_GRANT)
    new = Grant(
        read=change.get("read", old.read),
        write=change.get("write", old.write),
        owner=change.get("owner", old.owner),
    )
    if new == NO_GRANT:
        out.pop(key_id, None)
    else:
        out[key_id] = new
    return out
