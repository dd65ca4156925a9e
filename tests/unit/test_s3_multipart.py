"""S3 multipart uploads and copies with real boto3 against a real in-process Peer:
every multipart operation and its error codes, ``upload_file`` / ``download_file`` across
the multipart threshold, CopyObject (same and cross bucket, COPY / REPLACE) and
UploadPartCopy, and the native API's view of a multipart object (its SHA-256)."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRefsSchema
from tests.unit.s3_harness import PeerThread, keyed_peer

MiB = 1024 * 1024
PART = 5 * MiB


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerThread]:
    running = keyed_peer(tmp_path_factory.mktemp("s3mp"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def s3(node: PeerThread) -> Any:
    return node.client()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _data(n: int, seed: int) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB pattern
    return (block * (n // len(block) + 1))[:n]


def _etag(parts: list[bytes]) -> str:
    md5s = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"'


def _native_json(node: PeerThread, path: str) -> Any:
    with urllib.request.urlopen(node.peer.api_url + path, timeout=30) as resp:
        return json.loads(resp.read())


def test_multipart_round_trip_list_and_etag(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="mpb")
    up = s3.create_multipart_upload(
        Bucket="mpb", Key="big.bin", ContentType="text/x-big", Metadata={"who": "me"}
    )
    uid = up["UploadId"]
    bodies = [_data(PART, 1), _data(PART + 123, 2), _data(1000, 3)]
    # gaps are allowed: parts 1, 3, 7
    numbers = [1, 3, 7]
    etags = []
    for n, body in zip(numbers, bodies, strict=True):
        out = s3.upload_part(Bucket="mpb", Key="big.bin", UploadId=uid, PartNumber=n, Body=body)
        assert out["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        etags.append(out["ETag"])
    # a part sent again replaces the first one
    again = s3.upload_part(Bucket="mpb", Key="big.bin", UploadId=uid, PartNumber=3, Body=bodies[1])
    assert again["ETag"] == etags[1]
    listed = s3.list_parts(Bucket="mpb", Key="big.bin", UploadId=uid)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (n, e, len(b)) for n, e, b in zip(numbers, etags, bodies, strict=True)
    ]
    page = s3.list_parts(Bucket="mpb", Key="big.bin", UploadId=uid, MaxParts=1, PartNumberMarker=1)
    assert [p["PartNumber"] for p in page["Parts"]] == [3] and page["IsTruncated"]
    uploads = s3.list_multipart_uploads(Bucket="mpb")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("big.bin", uid)]
    # the native API does not list S3 sessions among its own
    assert _native_json(node, "/v1/uploads?bucket=mpb")["uploads"] == []
    done = s3.complete_multipart_upload(
        Bucket="mpb",
        Key="big.bin",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip(numbers, etags, strict=True)]
        },
    )
    whole = b"".join(bodies)
    assert done["ETag"] == _etag(bodies)
    got = s3.get_object(Bucket="mpb", Key="big.bin")
    assert got["Body"].read() == whole
    assert got["ETag"] == _etag(bodies) and got["ContentType"] == "text/x-big"
    assert got["Metadata"] == {"who": "me"}
    ranged = s3.get_object(Bucket="mpb", Key="big.bin", Range=f"bytes={PART - 5}-{PART + 4}")
    assert ranged["Body"].read() == whole[PART - 5 : PART + 5]
    # the native API shows the object's SHA-256, computed at completion
    info = _native_json(node, "/v1/objects/mpb?prefix=big.bin")["objects"][0]
    assert info["sha256"] == hashlib.sha256(whole).hexdigest() and info["size"] == len(whole)
    # completing again answers the same object; the upload is no longer listed
    again_done = s3.complete_multipart_upload(
        Bucket="mpb",
        Key="big.bin",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etags[0]}]},
    )
    assert again_done["ETag"] == done["ETag"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket="mpb")
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket="mpb", Key="big.bin", UploadId=uid)
    assert _code(exc) == "NoSuchUpload"


def test_complete_errors(s3: Any) -> None:
    s3.create_bucket(Bucket="mperr")
    uid = s3.create_multipart_upload(Bucket="mperr", Key="k")["UploadId"]
    small = s3.upload_part(Bucket="mperr", Key="k", UploadId=uid, PartNumber=1, Body=b"tiny")
    last = s3.upload_part(Bucket="mperr", Key="k", UploadId=uid, PartNumber=2, Body=b"end")

    def complete(parts: list[tuple[int, str]]) -> str:
        with pytest.raises(ClientError) as exc:
            s3.complete_multipart_upload(
                Bucket="mperr",
                Key="k",
                UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]},
            )
        return _code(exc)

    assert complete([(1, small["ETag"]), (2, last["ETag"])]) == "EntityTooSmall"
    assert complete([(2, last["ETag"]), (1, small["ETag"])]) == "InvalidPartOrder"
    assert complete([(1, '"' + "0" * 32 + '"')]) == "InvalidPart"
    assert complete([(5, small["ETag"])]) == "InvalidPart"
    # the small part alone is the last part: allowed
    one = s3.complete_multipart_upload(
        Bucket="mperr",
        Key="k",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small["ETag"]}]},
    )
    assert one["ETag"] == _etag([b"tiny"])
    assert s3.get_object(Bucket="mperr", Key="k")["Body"].read() == b"tiny"
    for number in (0, 10001):
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket="mperr", Key="k", UploadId=uid, PartNumber=number, Body=b"x")
        assert _code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket="mperr", Key="k", UploadId="f" * 32, PartNumber=1, Body=b"x")
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket="nowhere", Key="k")
    assert _code(exc) == "NoSuchBucket"


def test_abort_releases_blocks(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="mpabort")
    uid = s3.create_multipart_upload(Bucket="mpabort", Key="k")["UploadId"]
    body = os.urandom(3 * MiB)
    s3.upload_part(Bucket="mpabort", Key="k", UploadId=uid, PartNumber=1, Body=body)
    session = node.run(node.peer.uploads.get(uid))
    digests = session.part_digests()
    assert len(digests) == 3  # a 3 MiB part is three 1 MiB blocks
    s3.abort_multipart_upload(Bucket="mpabort", Key="k", UploadId=uid)
    refs = BlockRefsSchema()
    for d in digests:
        record = node.run(
            node.peer.objects.replicator.read_record(BLOCK_REFS_TABLE, d + session.version.encode())
        )
        assert record is not None and refs.decode(record).deleted
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket="mpabort", Key="k", UploadId=uid)
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="mpabort", Key="k")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_upload_and_download_file_cross_the_threshold(s3: Any, tmp_path: Path) -> None:
    s3.create_bucket(Bucket="files")
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(20 * MiB + 17))
    config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
    s3.upload_file(str(src), "files", "dir/src.bin", Config=config)
    head = s3.head_object(Bucket="files", Key="dir/src.bin")
    assert head["ContentLength"] == src.stat().st_size and head["ETag"].endswith('-3"')
    dst = tmp_path / "dst.bin"
    s3.download_file("files", "dir/src.bin", str(dst), Config=config)
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_copy_object_and_upload_part_copy(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="cpa")
    s3.create_bucket(Bucket="cpb")
    data = _data(2 * MiB + 5, 4)
    s3.put_object(Bucket="cpa", Key="src", Body=data, ContentType="text/x-src", Metadata={"a": "1"})
    md5 = f'"{hashlib.md5(data).hexdigest()}"'
    same = s3.copy_object(Bucket="cpa", Key="dup", CopySource={"Bucket": "cpa", "Key": "src"})
    assert same["CopyObjectResult"]["ETag"] == md5
    cross = s3.copy_object(
        Bucket="cpb",
        Key="moved",
        CopySource="cpa/src",
        MetadataDirective="REPLACE",
        ContentType="text/x-new",
        Metadata={"b": "2"},
    )
    assert cross["CopyObjectResult"]["ETag"] == md5
    got = s3.get_object(Bucket="cpa", Key="dup")
    assert got["Body"].read() == data and got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "text/x-src"
    moved = s3.get_object(Bucket="cpb", Key="moved")
    assert moved["Body"].read() == data and moved["Metadata"] == {"b": "2"}
    assert moved["ContentType"] == "text/x-new"
    # no data copied: both versions name the same blocks, each with its own reference
    pairs = [("cpa", "src"), ("cpb", "moved")]
    entries = [node.run(node.peer.objects._version(b, k, None)) for b, k in pairs]
    assert entries[0].chunks == entries[1].chunks and len(entries[0].chunks) == 3
    for d, _ in entries[1].chunks:
        record = node.run(
            node.peer.objects.replicator.read_record(BLOCK_REFS_TABLE, d + entries[1].id.encode())
        )
        assert record is not None and BlockRefsSchema().decode(record).live
    # the source deleted: the copy still reads
    s3.delete_object(Bucket="cpa", Key="src")
    assert s3.get_object(Bucket="cpb", Key="moved")["Body"].read() == data
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="cpb", Key="moved", CopySource="cpb/moved")
    assert _code(exc) == "InvalidRequest"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="cpb", Key="x", CopySource="cpa/src")
    assert _code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="cpb", Key="x", CopySource="cpb/moved", CopySourceIfMatch='"0"')
    assert _code(exc) == "PreconditionFailed"
    # UploadPartCopy: a whole object and a range
    big = _data(PART + 10, 5)
    s3.put_object(Bucket="cpb", Key="part-src", Body=big)
    uid = s3.create_multipart_upload(Bucket="cpb", Key="assembled")["UploadId"]
    p1 = s3.upload_part_copy(
        Bucket="cpb", Key="assembled", UploadId=uid, PartNumber=1, CopySource="cpb/part-src"
    )["CopyPartResult"]["ETag"]
    p2 = s3.upload_part_copy(
        Bucket="cpb",
        Key="assembled",
        UploadId=uid,
        PartNumber=2,
        CopySource="cpb/moved",
        CopySourceRange="bytes=10-109",
    )["CopyPartResult"]["ETag"]
    s3.complete_multipart_upload(
        Bucket="cpb",
        Key="assembled",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]},
    )
    assert s3.get_object(Bucket="cpb", Key="assembled")["Body"].read() == big + data[10:110]


def test_part_of_an_ended_upload_writes_nothing(node: PeerThread, s3: Any) -> None:
    """The peer knows the upload (its fixed fields are kept), so a part's body starts at
    once; the upload's state is still read before its first block: a part sent after an
    abort or a completion is NoSuchUpload with no block referenced."""
    s3.create_bucket(Bucket="mpended")
    for end in ("abort", "complete"):
        uid = s3.create_multipart_upload(Bucket="mpended", Key=end)["UploadId"]
        first = s3.upload_part(Bucket="mpended", Key=end, UploadId=uid, PartNumber=1, Body=b"1")
        site = node.peer._s3
        assert site is not None and site.ctx.multipart.known.get(uid) is not None
        if end == "abort":
            s3.abort_multipart_upload(Bucket="mpended", Key=end, UploadId=uid)
        else:
            parts = [{"PartNumber": 1, "ETag": first["ETag"]}]
            s3.complete_multipart_upload(
                Bucket="mpended", Key=end, UploadId=uid, MultipartUpload={"Parts": parts}
            )
        late = os.urandom(300_000)
        with pytest.raises(ClientError) as exc:
            s3.upload_part(Bucket="mpended", Key=end, UploadId=uid, PartNumber=2, Body=late)
        assert _code(exc) == "NoSuchUpload"
        session = node.run(node.peer.uploads.header(uid))
        record = node.run(
            node.peer.objects.replicator.read_record(
                BLOCK_REFS_TABLE, hashlib.sha256(late).digest() + session.version.encode()
            )
        )
        assert record is None
