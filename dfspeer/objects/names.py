"""Bucket and key validation (S3 naming rules).

Buckets (S3 general purpose bucket rules): 3..63 characters of lowercase letters, digits,
hyphens and dots; starting and ending with a letter or digit; no two adjacent dots; not
shaped like an IPv4 address; not starting with ``xn--`` nor ending with ``-s3alias``.
Keys: 1..1024 bytes of UTF-8 (any text, including ``/``; no lone surrogates).
"""

from __future__ import annotations

import re

from dfspeer.errors import InvalidBucketName, InvalidKey

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def validate_bucket(name: str) -> None:
    """Raise :class:`InvalidBucketName` unless ``name`` follows S3's bucket naming rules."""
    if not isinstance(name, str) or not _BUCKET_RE.match(name):
        raise InvalidBucketName(
            f"invalid bucket name {name!r}: use 3-63 lowercase letters, digits, '-' or '.', "
            "starting and ending with a letter or digit"
        )
    if ".." in name:
        raise InvalidBucketName(f"invalid bucket name {name!r}: two adjacent dots")
    if _IPV4_RE.match(name):
        raise InvalidBucketName(f"invalid bucket name {name!r}: looks like an IP address")
    if name.startswith("xn--") or name.endswith("-s3alias"):
        raise InvalidBucketName(f"invalid bucket name {name!r}: reserved prefix or suffix")


def validate_key(key: str) -> None:
    """Raise :class:`InvalidKey` unless ``key`` is 1..1024 bytes of valid UTF-8 text."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key must not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("object key is not valid UTF-8 text") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is {size} bytes of UTF-8; the limit is {MAX_KEY_BYTES}")
