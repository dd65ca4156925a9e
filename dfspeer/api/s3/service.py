"""The S3 sub-app: its own aiohttp application, router, auth and XML error renderer, on its
own port (``s3_port``).

Addressing: path style ``/bucket/key`` and, when ``s3_root_domain`` is set, virtual-host
style (``Host: bucket.<s3_root_domain>``, path = key). The path is taken raw and
percent-decoded once, so keys keep ``+``, ``%``, ``//`` and non-ASCII exactly. One
catch-all route hands every request to :func:`dispatch`, which picks the operation from
the method, whether a bucket and a key are named, and the query's sub-resource (as S3 and
Garage's ``api/s3/router.rs`` do); an operation this server does not have answers
``NotImplemented`` (501).

Middlewares, outermost first: request context (request id in logs), the S3 error renderer
(every :class:`~dfspeer.errors.DfsError` and aiohttp error leaves as S3 XML with
``x-amz-request-id``, see :mod:`.errors`), the peer's shutdown gate. Authentication
(:mod:`.auth`), the rate limits and in-flight cap (:mod:`dfspeer.access.limits`, the same
:class:`~dfspeer.access.limits.Limits` as the native port's, so a principal has one budget
and the peer one cap across both ports; a refusal is ``SlowDown`` 503 with
``Retry-After``) and the per-bucket permission check (:mod:`.access`) run in
:func:`dispatch`, in that order, before any body is read. The access key and the bucket
the check needs are read through the native API's auth cache (:mod:`dfspeer.access.cache`,
:func:`s3_site`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry

from dfspeer.access.audit import AuditLog, Describe, Target
from dfspeer.access.limits import Limits
from dfspeer.access.middleware import PRINCIPAL_KEY, BucketLookup
from dfspeer.api.middleware import request_id
from dfspeer.api.observability import request_context_middleware
from dfspeer.api.s3 import buckets, listing, multipart, objects
from dfspeer.api.s3.access import action_of, authorize
from dfspeer.api.s3.auth import Identity, SigV4Verifier
from dfspeer.api.s3.context import S3_KEY, S3Context, S3Handler, S3Request
from dfspeer.api.s3.credentials import (
    ChainedCredentials,
    CredentialStore,
    FileCredentials,
    KeysTableCredentials,
    RecordReader,
)
from dfspeer.api.s3.errors import (
    REQUEST_ID_HEADER,
    S3Error,
    not_implemented,
    render,
)
from dfspeer.api.s3.metrics import S3_METRICS_KEY, S3Metrics
from dfspeer.api.shutdown import ShutdownGate
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError
from dfspeer.gossip import Keyring
from dfspeer.objects.service import ObjectService
from dfspeer.objects.sessions import UploadService

log = logging.getLogger("dfspeer.api.s3")

NOT_IMPLEMENTED_SUBRESOURCES = frozenset(
    [
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "tagging",
        "torrent",
        "website",
    ]
)


@web.middleware
async def s3_error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as S3 XML (see :mod:`.errors`) and stamp ``x-amz-request-id``."""
    rid = request_id(request)
    try:
        response = await handler(request)
    except DfsError as exc:
        return render(request, exc, rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {
            405: "MethodNotAllowed",
            413: "EntityTooLarge",
            411: "MissingContentLength",
        }.get(exc.status, "InvalidRequest")
        return render(request, S3Error(code, exc.status, exc.reason or code), rid)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected s3 error id=%s %s %s", rid, request.method, request.path)
        return render(request, S3Error("InternalError", 500, "internal error"), rid)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = rid
    return response


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    response.headers[REQUEST_ID_HEADER] = request_id(request)
    response.headers.setdefault("Server", "dfspeer")


def split_target(raw_path: str, host: str, root_domain: str) -> tuple[str | None, str | None]:
    """``(bucket, key)`` of a request (None where absent): virtual-host style when
    ``host`` (port dropped) is ``<bucket>.<root_domain>``, else path style. Raises
    S3Error ``InvalidURI`` for a path that is not percent-encoded UTF-8."""
    try:
        path = unquote(raw_path.split("?", 1)[0], errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI", 400, "the path is not percent-encoded UTF-8") from None
    name = host.rsplit(":", 1)[0].lower() if not host.startswith("[") else ""
    if root_domain and name.endswith("." + root_domain):
        bucket = name[: -len(root_domain) - 1]
        key = path[1:] if path.startswith("/") else path
        return bucket, key or None
    rest = path[1:] if path.startswith("/") else path
    if not rest:
        return None, None
    bucket, _, key = rest.partition("/")
    return bucket, key or None


def route(method: str, bucket: str | None, key: str | None, query: Mapping[str, str]) -> S3Handler:
    """The handler of one S3 operation (module docstring). Raises NotImplemented (501) or
    MethodNotAllowed (405)."""
    for name in query:
        if name in NOT_IMPLEMENTED_SUBRESOURCES:
            raise not_implemented(f"the ?{name} sub-resource")
    table: dict[str, S3Handler]
    if bucket is None:
        table = {"GET": buckets.list_buckets}
    elif key is None:
        if "uploads" in query:
            table = {"GET": multipart.list_uploads}
        elif "versions" in query:
            table = {"GET": listing.list_object_versions}
        elif "location" in query:
            table = {"GET": buckets.get_location}
        elif "versioning" in query:
            table = {"GET": buckets.get_versioning, "PUT": buckets.put_versioning}
        elif "delete" in query:
            table = {"POST": objects.delete_objects}
        else:
            table = {
                "GET": listing.list_objects,
                "PUT": buckets.create_bucket,
                "HEAD": buckets.head_bucket,
                "DELETE": buckets.delete_bucket,
            }
    elif "uploads" in query:
        table = {"POST": multipart.create_upload}
    elif "uploadId" in query:
        table = {
            "PUT": multipart.upload_part,
            "GET": multipart.list_parts,
            "POST": multipart.complete_upload,
            "DELETE": multipart.abort_upload,
        }
    else:
        table = {
            "GET": objects.get_object,
            "HEAD": objects.head_object,
            "PUT": objects.put_object,
            "DELETE": objects.delete_object,
        }
    handler = table.get(method)
    if handler is None:
        raise S3Error(
            "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
        )
    return handler


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Authenticate, resolve the target and run its operation."""
    ctx: S3Context = request.app[S3_KEY]
    raw = request.raw_path
    raw_query = raw.split("?", 1)[1] if "?" in raw else ""
    identity: Identity = await ctx.verifier.verify(request.method, raw, raw_query, request.headers)
    request[PRINCIPAL_KEY] = identity.principal  # for the audit log
    if ctx.limits is None:
        return await _run(request, ctx, raw, identity)
    refused = ctx.limits.refusal(identity.principal.name, request.method, request.content_length)
    if refused is not None:
        raise refused
    with ctx.limits.slot(ctx.limits.reservation(request.method, request.content_length)):
        return await _run(request, ctx, raw, identity)


async def _run(
    request: web.Request, ctx: S3Context, raw: str, identity: Identity
) -> web.StreamResponse:
    bucket, key = split_target(raw, request.host, ctx.config.s3_root_domain)
    query = {k: v for k, v in request.query.items()}
    handler = route(request.method, bucket, key, query)
    s3 = S3Request(request, ctx, bucket, key, query, identity, request_id(request))
    await authorize(s3, action_of(handler), bucket)
    return await handler(s3)


def s3_target(root_domain: str) -> Describe:
    """The audit log's description of an S3 request (:mod:`dfspeer.access.audit`): the
    operation's action and name, its bucket and key."""

    def describe(request: web.Request) -> Target:
        try:
            bucket, key = split_target(request.raw_path, request.host, root_domain)
        except DfsError:
            return Target("", "unknown")
        try:
            handler = route(request.method, bucket, key, dict(request.query))
        except DfsError:
            return Target("", "unknown", bucket, key)
        return Target(action_of(handler).value, handler.__name__, bucket, key)

    return describe


def build_s3_app(
    ctx: S3Context,
    *,
    gate: ShutdownGate | None = None,
    audit: AuditLog | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The S3 application over ``ctx`` (see the module docstring). Bodies are streamed
    (objects, parts) or read whole up to 2 MiB (XML documents). ``audit``: record every
    mutating or refused request (outside the error renderer: it sees the status sent).
    ``registry``: where the S3 request metrics go (:mod:`.metrics`; None: none). Raises
    ValueError when ``registry`` already holds them."""
    describe = s3_target(ctx.config.s3_root_domain)
    metrics = S3Metrics(registry, describe) if registry is not None else None
    app = web.Application(
        middlewares=[
            request_context_middleware,
            *([metrics.middleware] if metrics is not None else []),
            *([audit.middleware("s3", describe)] if audit is not None else []),
            s3_error_middleware,
            *([gate.middleware] if gate is not None else []),
        ],
        client_max_size=2 * 1024 * 1024,
    )
    app[S3_KEY] = ctx
    if metrics is not None:
        app[S3_METRICS_KEY] = metrics
    app.on_response_prepare.append(_stamp)
    if audit is not None:
        audit.install(app, "s3", describe)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


class S3Site:
    """The S3 listener of one peer: ``start()`` binds ``host:s3_port`` (0 in the config
    means off: :meth:`start` is then not called by the peer), ``close()`` stops it.
    ``port`` is the bound port once started; ``audit``: the peer's audit log, if any;
    ``registry``: where its request metrics go, if anywhere."""

    def __init__(
        self,
        ctx: S3Context,
        *,
        gate: ShutdownGate | None = None,
        audit: AuditLog | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.ctx = ctx
        self.gate = gate
        self.audit = audit
        self.registry = registry
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        shutdown_timeout_s: float = 20.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Bind and serve (HTTPS with ``ssl_context``). Raises OSError when the port is
        taken."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=1024)
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(
            build_s3_app(self.ctx, gate=self.gate, audit=self.audit, registry=self.registry),
            handle_signals=False,
            access_log=logging.getLogger("dfspeer.api.access"),
            shutdown_timeout=shutdown_timeout_s,
        )
        try:
            await self._runner.setup()
            await web.SockSite(self._runner, sock, ssl_context=ssl_context).start()
        except BaseException:
            sock.close()
            await self._runner.cleanup()
            raise

    async def close(self) -> None:
        """Stop serving (requests in flight get ``shutdown_timeout_s``)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def s3_site(
    config: PeerConfig,
    objects: ObjectService,
    uploads: UploadService,
    keyring: Keyring,
    *,
    gate: ShutdownGate | None = None,
    limits: Limits | None = None,
    audit: AuditLog | None = None,
    key_records: RecordReader | None = None,
    bucket_lookup: BucketLookup | None = None,
    registry: CollectorRegistry | None = None,
) -> S3Site:
    """The S3 site of one peer: credentials from ``s3_credentials_file`` (if set, full
    access) then the ``keys`` table (the buckets' grants, as on the native API); open
    mode (unsigned requests accepted) only when ``insecure`` and no credentials file is
    set. ``limits``: the native port's rate limits and in-flight cap, applied here too
    (None: no limit is set). ``audit``: the peer's audit log (None: none).
    ``key_records`` and ``bucket_lookup``: how the ``keys`` table and the buckets are read
    for authentication and the permission checks; a peer passes its native API's, cached
    (:func:`dfspeer.access.cache.cached_lookups`), so both ports share one cache (None:
    uncached quorum reads through ``objects``). ``registry``: where the S3 request metrics
    go (:mod:`.metrics`; a peer passes its own, None: none)."""
    stores: list[CredentialStore] = []
    if config.s3_credentials_file is not None:
        stores.append(FileCredentials(config.s3_credentials_file))
    records: RecordReader = key_records if key_records is not None else objects.replicator
    stores.append(KeysTableCredentials(records, keyring, enforce=not config.insecure))
    verifier = SigV4Verifier(
        ChainedCredentials(*stores),
        config.s3_region,
        open_mode=config.insecure and config.s3_credentials_file is None,
    )
    ctx = S3Context(config, objects, uploads, verifier, limits, bucket_lookup=bucket_lookup)
    return S3Site(ctx, gate=gate, audit=audit, registry=registry)
