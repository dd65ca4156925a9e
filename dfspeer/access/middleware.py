"""The access middleware of the native API: authenticate, then authorize, before the
handler runs (so a refused request changes nothing and its body is never read).

For each request outside ``/internal/`` (peer RPC has its own HMAC):

1. the route's :class:`~dfspeer.access.routes.Rule` (:func:`~dfspeer.access.routes.rule_for`);
   a ``PUBLIC`` route goes straight to its handler;
2. the principal: ``OPEN`` on a peer run with ``--insecure``; else the ``Authorization:
   Bearer`` credential checked by :class:`~dfspeer.access.keystore.KeyService` -> 401
   ``unauthenticated`` when missing, malformed, unknown, wrong or disabled; or, for a
   request with a ``signature=`` query parameter, the share link checked by
   :class:`~dfspeer.access.share.ShareLinks` (its signer; GET and HEAD only);
3. the decision (:func:`~dfspeer.access.permissions.decide`) on the bucket the route names,
   read with quorum -> 403 ``access_denied``; a key that may create buckets and writes
   into a missing one creates it first, as its owner.

The principal is left in ``request[PRINCIPAL_KEY]`` for handlers (bucket owner, bucket
list filter). Errors are raised as :class:`~dfspeer.errors.DfsError` and rendered by the
API's error middleware, which runs outside this one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web
from aiohttp.typedefs import Handler

from dfspeer.access.credentials import (
    AUTHORIZATION_HEADER,
    MalformedCredential,
    parse_authorization,
)
from dfspeer.access.keystore import KeyService
from dfspeer.access.permissions import Action, Decision, decide
from dfspeer.access.principals import OPEN, Principal
from dfspeer.access.routes import Rule, rule_for
from dfspeer.access.share import SIGNATURE_PARAM, ShareLinks
from dfspeer.errors import AccessDenied, InvalidArgument, Unauthenticated
from dfspeer.model.buckets import Bucket

log = logging.getLogger("dfspeer.access")

PRINCIPAL_KEY = web.RequestKey("dfspeer.principal", Principal)
INTERNAL_PREFIX = "/internal/"


class BucketLookup(Protocol):
    """The bucket operations the access checks need (``BucketService``'s)."""

    async def read(self, name: str) -> Bucket | None: ...

    async def create(
        self, name: str, versioning: str | None = None, *, owner: str = ""
    ) -> tuple[Bucket, bool]: ...


UploadBucket = Callable[[str], Awaitable[str]]
"""The bucket of resumable upload session ``upload_id`` (raises NoSuchUpload)."""


class AccessControl:
    """Authentication and authorization of the native API (module docstring).

    ``enforce``: False on an ``--insecure`` peer (every request is ``OPEN``);
    ``metrics_public``: ``GET /metrics`` without a credential; ``upload_bucket``: how to
    find the bucket of an upload session (None: upload routes need the admin); ``links``:
    the share links (None: a ``signature=`` parameter is not looked at).
    """

    def __init__(
        self,
        keys: KeyService,
        buckets: BucketLookup,
        *,
        enforce: bool,
        metrics_public: bool = True,
        upload_bucket: UploadBucket | None = None,
        links: ShareLinks | None = None,
    ) -> None:
        self.keys = keys
        self.links = links
        self.buckets = buckets
        self.enforce = enforce
        self.metrics_public = metrics_public
        self.upload_bucket = upload_bucket

    def rule(self, request: web.Request) -> Rule:
        """The rule of ``request``'s matched route."""
        info = request.match_info
        pattern = None if info.http_exception is not None else _pattern(info)
        return rule_for(request.method, pattern, metrics_public=self.metrics_public)

    async def authenticate(self, request: web.BaseRequest) -> Principal:
        """The request's principal. Raises Unauthenticated."""
        if not self.enforce:
            return OPEN
        if self.links is not None and SIGNATURE_PARAM in request.query:
            if request.headers.get(AUTHORIZATION_HEADER):
                raise InvalidArgument("give a share link or an Authorization header, not both")
            return await self.links.verify(request.method, request.path, request.query.items())
        try:
            credential = parse_authorization(request.headers.get(AUTHORIZATION_HEADER))
        except MalformedCredential as exc:
            raise Unauthenticated(f"malformed credential: {exc}") from None
        if credential is None:
            raise Unauthenticated(
                "this route needs a credential: Authorization: Bearer <key_id>.<secret> "
                "or the admin token"
            )
        return await self.keys.authenticate(credential)

    async def check(self, request: web.Request) -> Principal | None:
        """Authenticate and authorize ``request`` once (later calls return the same
        principal); None for a public route. Raises Unauthenticated, AccessDenied,
        InvalidBucketName (creating a bucket), NoSuchUpload."""
        if PRINCIPAL_KEY in request:
            return request[PRINCIPAL_KEY]
        rule = self.rule(request)
        if rule.action is Action.PUBLIC:
            return None
        principal = await self.authenticate(request)
        request[PRINCIPAL_KEY] = principal
        if principal.is_admin or rule.bucket_from == "body":
            return principal  # a body-named bucket is checked by the handler
        bucket_name: str | None = None
        if rule.bucket_from == "path":
            bucket_name = request.match_info.get("bucket")
        elif rule.bucket_from == "query":
            bucket_name = request.query.get("bucket", "")
            if not bucket_name:
                raise InvalidArgument("?bucket= is required")
        elif rule.bucket_from == "upload":
            if self.upload_bucket is None:
                raise AccessDenied("upload sessions need the admin on this peer")
            bucket_name = await self.upload_bucket(request.match_info["upload_id"])
        await self.authorize(principal, rule.action, bucket_name)
        return principal

    async def authorize(
        self, principal: Principal, action: Action, bucket_name: str | None
    ) -> None:
        """Allow ``principal`` to do ``action`` on ``bucket_name`` (read with quorum), or
        raise AccessDenied; a :data:`Decision.CREATE` on a write creates the bucket, owned
        by the key. Raises InvalidBucketName when that name is not a valid bucket name."""
        bucket = None
        if action.on_bucket and bucket_name is not None and not principal.is_admin:
            bucket = await self.buckets.read(bucket_name)
        decision = decide(principal, action, bucket)
        if decision is Decision.DENY:
            log.debug(
                "access denied principal=%s action=%s bucket=%s",
                principal.name,
                action.value,
                bucket_name,
            )
            where = f" on bucket {bucket_name}" if bucket_name else ""
            raise AccessDenied(f"{principal.name} may not {action.value}{where}")
        if decision is Decision.CREATE and action is Action.WRITE and bucket_name:
            await self.buckets.create(bucket_name, owner=principal.owner_id)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """aiohttp middleware: :meth:`check`, then the handler (``/internal/`` untouched)."""
        if not request.path.startswith(INTERNAL_PREFIX):
            await self.check(request)
        return await handler(request)


ACCESS_KEY = web.AppKey("dfspeer.access", AccessControl)


def principal_of(request: web.Request) -> Principal:
    """The principal the access middleware found; ``OPEN`` when the app runs without
    access control (an app built without it, as tests do)."""
    principal: Principal = request.get(PRINCIPAL_KEY, OPEN)
    return principal


async def require_bucket(request: web.Request, bucket: str, action: Action) -> None:
    """For routes whose bucket is in the body (``POST /v1/uploads``): check ``action`` on
    ``bucket`` after the small body was read and before anything changes. Raises
    AccessDenied. Does nothing in an app without access control."""
    access = request.app.get(ACCESS_KEY)
    if access is None:
        return
    await access.authorize(principal_of(request), action, bucket)


def _pattern(info: web.UrlMappingMatchInfo) -> str | None:
    """The route pattern (``/v1/objects/{bucket}/{key}``) of a matched route."""
    route = info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else None
