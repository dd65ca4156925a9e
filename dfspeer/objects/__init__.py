"""dfspeer.objects: the coordinator (chunking, manifests, uploads, ranged reads, listing)."""

from dfspeer.objects.hlc import HybridLogicalClock, Version
from dfspeer.objects.listing import ListResult
from dfspeer.objects.manifest import MANIFEST_TABLE, Manifest, ObjectInfo, merge_manifest
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.service import ObjectService

__all__ = [
    "MANIFEST_TABLE",
    "HybridLogicalClock",
    "ListResult",
    "Manifest",
    "ObjectInfo",
    "ObjectService",
    "Version",
    "merge_manifest",
    "validate_bucket",
    "validate_key",
]
