"""Per-bucket permissions on the S3 API: the native API's decision
(:func:`dfspeer.access.permissions.decide`) for every S3 operation.

The principal comes with the request's :class:`~dfspeer.api.s3.auth.Identity`: a key of
the ``keys`` table acts as that key (its buckets' ``read`` / ``write`` / ``owner``
grants, its ``allow_create_bucket``); a key of ``s3_credentials_file`` acts as the admin,
and so does an anonymous request of a peer in open mode (``OPEN``). Every operation needs
the :class:`~dfspeer.access.permissions.Action` its native counterpart needs
(:data:`ACTIONS`; :mod:`dfspeer.access.routes`):

- ``READ``: GetObject, HeadObject, HeadBucket, ListObjects (v1, v2), ListObjectVersions,
  GetBucketLocation, GetBucketVersioning; and the source of CopyObject / UploadPartCopy;
- ``WRITE``: PutObject, CopyObject (the destination), every multipart operation,
  ListParts and ListMultipartUploads included (the native ``GET /v1/uploads`` needs
  ``write`` too);
- ``DELETE`` (granted by ``write``): DeleteObject, DeleteObjects;
- ``OWNER``: DeleteBucket, PutBucketVersioning;
- ``CREATE_BUCKET``: CreateBucket — a missing bucket if the key has
  ``allow_create_bucket`` (the bucket is then owned by the key), an existing one only as
  its owner (then ``BucketAlreadyOwnedByYou``);
- ListBuckets: any key, filtered to the buckets the key owns or has a grant on
  (:func:`~dfspeer.access.permissions.visible`).

The bucket is read as the native middleware reads it (a quorum read reused for the auth
cache's TTL, :mod:`dfspeer.access.cache`; a bucket written through this peer is read
afresh) before the operation runs, so a refused request reads no body and changes nothing.
A refusal is ``AccessDenied`` (403); a key cannot tell a missing bucket from one it may
not see. Unlike the native ``PUT`` of an object, S3 does not create a missing bucket on a
write: a key that could create it gets ``NoSuchBucket`` (S3's answer), any other
``AccessDenied``.
"""

from __future__ import annotations

import logging

from dfspeer.access.permissions import Action, Decision, decide
from dfspeer.access.principals import Principal
from dfspeer.api.s3 import buckets, listing, multipart, objects
from dfspeer.api.s3.context import S3Handler, S3Request
from dfspeer.api.s3.errors import access_denied
from dfspeer.model.buckets import Bucket

log = logging.getLogger("dfspeer.api.s3")

ACTIONS: dict[S3Handler, Action] = {
    buckets.list_buckets: Action.AUTHENTICATED,
    buckets.create_bucket: Action.CREATE_BUCKET,
    buckets.head_bucket: Action.READ,
    buckets.delete_bucket: Action.OWNER,
    buckets.get_location: Action.READ,
    buckets.get_versioning: Action.READ,
    buckets.put_versioning: Action.OWNER,
    listing.list_objects: Action.READ,
    listing.list_object_versions: Action.READ,
    objects.get_object: Action.READ,
    objects.head_object: Action.READ,
    objects.put_object: Action.WRITE,
    objects.delete_object: Action.DELETE,
    objects.delete_objects: Action.DELETE,
    multipart.list_uploads: Action.WRITE,
    multipart.create_upload: Action.WRITE,
    multipart.upload_part: Action.WRITE,
    multipart.list_parts: Action.WRITE,
    multipart.complete_upload: Action.WRITE,
    multipart.abort_upload: Action.WRITE,
}
"""S3 operation (its handler) -> the action it needs (module docstring). An operation
missing here needs the admin."""


def action_of(handler: S3Handler) -> Action:
    """The action ``handler``'s operation needs (:data:`ACTIONS`; else ``ADMIN``)."""
    return ACTIONS.get(handler, Action.ADMIN)


async def authorize(s3: S3Request, action: Action, bucket_name: str | None) -> Decision:
    """Allow ``s3``'s principal to do ``action`` on ``bucket_name`` (read through the auth
    cache, :attr:`~dfspeer.api.s3.context.S3Context.access_buckets`) or raise
    AccessDenied. ``Decision.CREATE``: allowed, the bucket is missing and the key may
    create it (the operation answers as it does for a missing bucket, or creates it)."""
    principal: Principal = s3.identity.principal
    bucket: Bucket | None = None
    if principal.is_admin:
        return Decision.ALLOW
    if action.on_bucket and bucket_name is not None:
        bucket = await s3.ctx.access_buckets.read(bucket_name)
    decision = decide(principal, action, bucket)
    if decision is Decision.DENY:
        log.debug(
            "s3 access denied principal=%s action=%s bucket=%s",
            principal.name,
            action.value,
            bucket_name,
        )
        raise access_denied("Access Denied")
    return decision
