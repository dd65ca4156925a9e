"""The route -> action table of the native API: every public route, by method and route
pattern (aiohttp's ``resource.canonical``), to the :class:`~dfspeer.access.permissions.
Action` it needs and where its bucket comes from.

``bucket_from``: ``"path"`` (the ``{bucket}`` of the route), ``"query"`` (``?bucket=``),
``"upload"`` (the bucket of the resumable upload session ``{upload_id}``), ``"body"`` (the
JSON body names it: the handler checks it after reading the small body, through
:func:`dfspeer.access.middleware.require_bucket`), or None.

A route missing here needs the admin (default deny); a request that matches no route
(404/405) needs any valid principal. ``/internal/`` (peer RPC, signed with the cluster key)
is not in this table: the access middleware never looks at it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dfspeer.access.permissions import Action

BucketSource = Literal["path", "query", "upload", "body"]


@dataclass(frozen=True)
class Rule:
    """What a route needs: ``action``, and where the bucket it acts on is named."""

    action: Action
    bucket_from: BucketSource | None = None


_OBJECT = "/v1/objects/{bucket}/{key:.+}"
_BUCKET_OBJECTS = "/v1/objects/{bucket}"

ROUTE_RULES: dict[tuple[str, str], Rule] = {
    # public
    ("GET", "/health"): Rule(Action.PUBLIC),
    ("HEAD", "/health"): Rule(Action.PUBLIC),
    ("GET", "/ready"): Rule(Action.PUBLIC),
    ("HEAD", "/ready"): Rule(Action.PUBLIC),
    # any valid principal
    ("GET", "/v1/cluster/members"): Rule(Action.AUTHENTICATED),
    ("GET", "/v1/cluster/ring"): Rule(Action.AUTHENTICATED),
    ("GET", "/v1/cluster/status"): Rule(Action.AUTHENTICATED),
    ("GET", "/v1/buckets"): Rule(Action.AUTHENTICATED),  # filtered to the key's buckets
    # objects
    ("GET", _OBJECT): Rule(Action.READ, "path"),
    ("HEAD", _OBJECT): Rule(Action.READ, "path"),
    ("PUT", _OBJECT): Rule(Action.WRITE, "path"),
    ("DELETE", _OBJECT): Rule(Action.DELETE, "path"),
    ("GET", _BUCKET_OBJECTS): Rule(Action.READ, "path"),
    # buckets
    ("PUT", "/v1/buckets/{bucket}"): Rule(Action.CREATE_BUCKET, "path"),
    ("GET", "/v1/buckets/{bucket}"): Rule(Action.READ, "path"),
    ("DELETE", "/v1/buckets/{bucket}"): Rule(Action.OWNER, "path"),
    ("PUT", "/v1/buckets/{bucket}/versioning"): Rule(Action.OWNER, "path"),
    ("PUT", "/v1/buckets/{bucket}/permissions"): Rule(Action.OWNER, "path"),
    ("GET", "/v1/buckets/{bucket}/permissions"): Rule(Action.OWNER, "path"),
    # a share link to one object (dfspeer.access.share): a reader of the body's bucket
    ("POST", "/v1/share"): Rule(Action.READ, "body"),
    # resumable uploads
    ("POST", "/v1/uploads"): Rule(Action.WRITE, "body"),
    ("GET", "/v1/uploads"): Rule(Action.WRITE, "query"),
    ("PUT", "/v1/uploads/{upload_id}/chunks/{index}"): Rule(Action.WRITE, "upload"),
    ("GET", "/v1/uploads/{upload_id}"): Rule(Action.WRITE, "upload"),
    ("GET", "/v1/uploads/{upload_id}/missing-chunks"): Rule(Action.WRITE, "upload"),
    ("POST", "/v1/uploads/{upload_id}/complete"): Rule(Action.WRITE, "upload"),
    ("DELETE", "/v1/uploads/{upload_id}"): Rule(Action.WRITE, "upload"),
    # the web console (dfspeer.api.console): its page and assets are public (they hold no
    # data; the page logs in against /v1), a download link is minted for a reader of the
    # bucket and is itself the credential of /ui/dl (an HMAC signature checked there)
    ("GET", "/ui"): Rule(Action.PUBLIC),
    ("GET", "/ui/"): Rule(Action.PUBLIC),
    ("GET", "/ui/static/{name}"): Rule(Action.PUBLIC),
    ("GET", "/ui/dl"): Rule(Action.PUBLIC),
    ("GET", "/ui/api/download-link"): Rule(Action.READ, "query"),
    # console sessions (log in / who am I / log out: the handler checks the credential),
    # share links for owners, version restore for writers, other peers' figures
    ("POST", "/ui/api/session"): Rule(Action.PUBLIC),
    ("GET", "/ui/api/session"): Rule(Action.PUBLIC),
    ("DELETE", "/ui/api/session"): Rule(Action.PUBLIC),
    ("GET", "/ui/api/share-link"): Rule(Action.OWNER, "query"),
    ("POST", "/ui/api/restore"): Rule(Action.WRITE, "query"),
    ("GET", "/ui/api/peers"): Rule(Action.AUTHENTICATED),
    # another member's drain and block reference recount, handed on to the member's own
    # admin routes (dfspeer.api.console.members): admin only, like those
    ("POST", "/ui/api/members/{id}/drain"): Rule(Action.ADMIN),
    ("GET", "/ui/api/members/{id}/drain"): Rule(Action.ADMIN),
    ("POST", "/ui/api/members/{id}/repair/block-refs"): Rule(Action.ADMIN),
    # admin only: drain, repair, member removal, access keys
    ("POST", "/v1/cluster/drain"): Rule(Action.ADMIN),
    ("GET", "/v1/cluster/drain"): Rule(Action.ADMIN),
    ("POST", "/v1/cluster/repair/block-refs"): Rule(Action.ADMIN),
    ("POST", "/v1/cluster/members/{id}/remove"): Rule(Action.ADMIN),
    ("POST", "/v1/keys"): Rule(Action.ADMIN),
    ("GET", "/v1/keys"): Rule(Action.ADMIN),
    ("DELETE", "/v1/keys/{id}"): Rule(Action.ADMIN),
    ("POST", "/v1/keys/{id}/disable"): Rule(Action.ADMIN),
}
"""(method, route pattern) -> rule. ``GET /metrics`` is decided by :func:`rule_for`."""

METRICS_PATH = "/metrics"
ADMIN_RULE = Rule(Action.ADMIN)
UNMATCHED_RULE = Rule(Action.AUTHENTICATED)


def rule_for(method: str, pattern: str | None, *, metrics_public: bool) -> Rule:
    """The rule of a request. ``pattern``: the matched route's pattern, None when no route
    matched (then :data:`UNMATCHED_RULE`, so a 404/405 is only told to a principal).
    ``/metrics`` is public when ``metrics_public``, else admin. ``HEAD`` takes the rule of
    ``GET`` unless it has its own. An unknown route: admin."""
    if pattern is None:
        return UNMATCHED_RULE
    method = method.upper()
    if pattern == METRICS_PATH and method in ("GET", "HEAD"):
        return Rule(Action.PUBLIC) if metrics_public else ADMIN_RULE
    if pattern.startswith("/v1/objects/{bucket}/"):
        pattern = _OBJECT  # whatever the key's regex is spelt as
    rule = ROUTE_RULES.get((method, pattern))
    if rule is None and method == "HEAD":  # aiohttp serves HEAD wherever it serves GET
        rule = ROUTE_RULES.get(("GET", pattern))
    return rule if rule is not None else ADMIN_RULE
