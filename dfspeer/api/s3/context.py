"""What every S3 handler gets: :class:`S3Context` (the peer's services, set once) and
:class:`S3Request` (one request, its target and who sent it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from dfspeer.access.limits import Limits
from dfspeer.access.middleware import BucketLookup
from dfspeer.api.s3.auth import Identity, SigV4Verifier
from dfspeer.config import PeerConfig
from dfspeer.objects.multipart import MultipartService
from dfspeer.objects.service import ObjectService
from dfspeer.objects.sessions import UploadService


@dataclass(frozen=True)
class S3Context:
    """The S3 API's collaborators: objects (and buckets), upload sessions (multipart), the
    signature verifier, the peer's settings and its rate limits / in-flight cap (the
    native API's :class:`~dfspeer.access.limits.Limits`, shared: None when all are off);
    ``bucket_lookup``: how the permission checks read a bucket (the native API's, through
    the auth cache; None: ``objects.buckets``, quorum reads); ``multipart``: the site's
    multipart service (made here, one per site)."""

    config: PeerConfig
    objects: ObjectService
    uploads: UploadService
    verifier: SigV4Verifier
    limits: Limits | None = None
    bucket_lookup: BucketLookup | None = None
    multipart: MultipartService = field(init=False)

    def __post_init__(self) -> None:
        # one per site: it keeps the fixed fields of the upload sessions it has seen
        object.__setattr__(self, "multipart", MultipartService(self.uploads))

    @property
    def access_buckets(self) -> BucketLookup:
        """Where the permission checks read buckets (``bucket_lookup`` or the service)."""
        return self.bucket_lookup if self.bucket_lookup is not None else self.objects.buckets


S3_KEY = web.AppKey("dfspeer_s3", S3Context)


@dataclass(frozen=True)
class S3Request:
    """One S3 request: the aiohttp request, its bucket and key (None where the URL names
    none), its query (decoded; first value of each name), the sender and the request id."""

    http: web.Request
    ctx: S3Context
    bucket: str | None
    key: str | None
    query: Mapping[str, str]
    identity: Identity
    request_id: str

    @property
    def bucket_name(self) -> str:
        """The bucket (a bucket operation always has one)."""
        assert self.bucket is not None
        return self.bucket

    @property
    def key_name(self) -> str:
        """The key (an object operation always has one)."""
        assert self.key is not None
        return self.key


S3Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]
"""The handler of one S3 operation."""
