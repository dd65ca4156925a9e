"""dfspeer.model: the schemas of the replicated tables, one module each.

:func:`default_schemas` is the list a peer registers (:class:`dfspeer.cluster.table.
TableRegistry`, built in :mod:`dfspeer.peer`); :data:`LOCAL_TABLES` are this peer's own
tables, never compared with other peers (no Merkle summary).
"""

from typing import Any

from dfspeer.cluster.table import TableSchema
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRef, BlockRefsSchema
from dfspeer.model.buckets import BUCKETS_TABLE, Bucket, BucketsSchema, Grant
from dfspeer.model.keys import KEYS_TABLE, AccessKey, KeysSchema
from dfspeer.model.objects import (
    OBJECTS_TABLE,
    RELEASES_TABLE,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
)
from dfspeer.model.upload_parts import UploadPartsSchema
from dfspeer.model.uploads import UploadKeysSchema, UploadsSchema

LOCAL_TABLES = ("hints", "quarantine", "scrub", RELEASES_TABLE)
"""Tables local by nature: hinted-handoff hints, quarantined blocks, the scrub cursor and
the queue of block references to release."""


def default_schemas() -> list[TableSchema[Any]]:
    """The replicated tables every peer runs."""
    return [
        ObjectsSchema(),
        BlockRefsSchema(),
        BucketsSchema(),
        UploadsSchema(),
        UploadKeysSchema(),
        UploadPartsSchema(),
        KeysSchema(),
    ]


__all__ = [
    "BLOCK_REFS_TABLE",
    "BUCKETS_TABLE",
    "KEYS_TABLE",
    "LOCAL_TABLES",
    "OBJECTS_TABLE",
    "RELEASES_TABLE",
    "AccessKey",
    "BlockRef",
    "BlockRefsSchema",
    "Bucket",
    "BucketsSchema",
    "Grant",
    "KeysSchema",
    "ObjectEntry",
    "ObjectVersion",
    "ObjectsSchema",
    "default_schemas",
]
