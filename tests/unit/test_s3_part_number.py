"""GetObject / HeadObject with ``partNumber`` (dfspeer.api.s3.parts), with real boto3
against a real in-process Peer: multipart objects part by part, single-part objects as one
part, and S3's errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dfspeer.model.objects import OBJECTS_TABLE, ObjectsSchema, table_key
from tests.unit.s3_harness import PeerThread, keyed_peer, send, signed

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerThread]:
    running = keyed_peer(tmp_path_factory.mktemp("s3parts"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def s3(node: PeerThread) -> Any:
    client = node.client()
    client.create_bucket(Bucket="parts")
    return client


def multipart(s3: Any, key: str, bodies: list[bytes], numbers: list[int]) -> None:
    uid = s3.create_multipart_upload(Bucket="parts", Key=key)["UploadId"]
    done = []
    for number, body in zip(numbers, bodies, strict=True):
        etag = s3.upload_part(Bucket="parts", Key=key, UploadId=uid, PartNumber=number, Body=body)
        done.append({"PartNumber": number, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(
        Bucket="parts", Key=key, UploadId=uid, MultipartUpload={"Parts": done}
    )


def code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    error = exc.value.response
    return str(error["Error"]["Code"]), int(error["ResponseMetadata"]["HTTPStatusCode"])


def test_each_part_of_a_multipart_object_reads_back(node: PeerThread, s3: Any) -> None:
    bodies = [os.urandom(5 * MiB + 7), os.urandom(5 * MiB), os.urandom(1000)]
    multipart(s3, "mp", bodies, [2, 5, 9])  # counted in order, whatever the numbers
    whole = b"".join(bodies)
    start = 0
    for n, body in enumerate(bodies, start=1):
        got = s3.get_object(Bucket="parts", Key="mp", PartNumber=n)
        assert got["Body"].read() == body
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["PartsCount"] == 3
        assert got["ContentRange"] == f"bytes {start}-{start + len(body) - 1}/{len(whole)}"
        head = s3.head_object(Bucket="parts", Key="mp", PartNumber=n)
        assert (head["ContentLength"], head["PartsCount"]) == (len(body), 3)
        assert head["ETag"] == got["ETag"]  # the object's ETag, as S3
        start += len(body)
    assert "PartsCount" not in s3.get_object(Bucket="parts", Key="mp")  # only when asked
    with pytest.raises(ClientError) as past:
        s3.get_object(Bucket="parts", Key="mp", PartNumber=4)
    assert code(past) == ("InvalidPartNumber", 416)
    key = table_key("parts", "mp")
    record = node.peer.store.table(OBJECTS_TABLE).get(key)
    live = ObjectsSchema().decode(record).live()
    assert live is not None and live.parts == tuple(len(b) for b in bodies)


def test_a_single_part_object_is_one_part(s3: Any) -> None:
    body = os.urandom(3 * MiB)
    s3.put_object(Bucket="parts", Key="single", Body=body)
    got = s3.get_object(Bucket="parts", Key="single", PartNumber=1)
    assert got["Body"].read() == body and "PartsCount" not in got
    assert got["ContentRange"] == f"bytes 0-{len(body) - 1}/{len(body)}"
    with pytest.raises(ClientError) as past:
        s3.head_object(Bucket="parts", Key="single", PartNumber=2)
    assert past.value.response["ResponseMetadata"]["HTTPStatusCode"] == 416
    s3.put_object(Bucket="parts", Key="empty", Body=b"")
    empty = s3.get_object(Bucket="parts", Key="empty", PartNumber=1)
    assert empty["Body"].read() == b"" and empty["ResponseMetadata"]["HTTPStatusCode"] == 200


@pytest.mark.parametrize("number", ["0", "10001", "x", "-1", "1.5", "%C2%B2"])  # last: "²"
def test_a_bad_part_number_is_invalid_argument(node: PeerThread, s3: Any, number: str) -> None:
    s3.put_object(Bucket="parts", Key="k", Body=b"data")
    status, _, body = send(signed("GET", f"{node.s3_url}/parts/k?partNumber={number}"))
    assert status == 400 and b"<Code>InvalidArgument</Code>" in body


def test_part_number_with_a_range_is_invalid_request(s3: Any) -> None:
    s3.put_object(Bucket="parts", Key="r", Body=b"data")
    with pytest.raises(ClientError) as both:
        s3.get_object(Bucket="parts", Key="r", PartNumber=1, Range="bytes=0-1")
    assert code(both) == ("InvalidRequest", 400)
