"""Bucket and key validation follows S3's naming rules."""

from __future__ import annotations

import pytest

from dfspeer.errors import InvalidBucketName, InvalidKey
from dfspeer.objects.names import validate_bucket, validate_key


@pytest.mark.parametrize(
    "name", ["abc", "my-bucket", "my.bucket.v2", "0bucket9", "a" * 63, "a-b.c-d", "1-2"]
)
def test_valid_buckets(name: str) -> None:
    validate_bucket(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",
        "a" * 64,
        "Abc",
        "my_bucket",
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a..b",
        "192.168.1.10",
        "xn--abc",
        "abc-s3alias",
        "ab c",
        "abc/def",
        "bücket",
    ],
)
def test_invalid_buckets(name: str) -> None:
    with pytest.raises(InvalidBucketName) as info:
        validate_bucket(name)
    assert info.value.status == 400 and info.value.code == "invalid_bucket_name"


@pytest.mark.parametrize("key", ["a", "dir/sub/file.txt", "ü" * 512, "x" * 1024, " spaces ok "])
def test_valid_keys(key: str) -> None:
    validate_key(key)


@pytest.mark.parametrize("key", ["", "x" * 1025, "ü" * 513, "bad\udc80surrogate"])
def test_invalid_keys(key: str) -> None:
    with pytest.raises(InvalidKey) as info:
        validate_key(key)
    assert info.value.status == 400 and info.value.code == "invalid_key"
