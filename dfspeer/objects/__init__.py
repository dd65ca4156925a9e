"""dfspeer.objects: the coordinator (chunking, versions, uploads, ranged reads, listing,
buckets)."""

from dfspeer.objects.buckets import BucketService
from dfspeer.objects.hlc import HybridLogicalClock, Version
from dfspeer.objects.info import ObjectInfo, VersionInfo
from dfspeer.objects.listing import ListResult, VersionPage
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.service import ObjectService

__all__ = [
    "BucketService",
    "HybridLogicalClock",
    "ListResult",
    "ObjectInfo",
    "ObjectService",
    "Version",
    "VersionInfo",
    "VersionPage",
    "validate_bucket",
    "validate_key",
]
