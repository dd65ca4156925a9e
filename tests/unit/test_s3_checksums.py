"""Payload modes and checksums of S3 request bodies against a real in-process Peer.

Every checksum S3 has (``crc32``, ``crc32c``, ``crc64nvme``, ``sha1``, ``sha256``) is
computed and compared, in a header and in an aws-chunked trailer, for PutObject and
UploadPart; a wrong value is ``BadDigest`` with nothing written, a malformed declaration
``InvalidRequest`` before the body is read, as S3 answers. The checked value of a
PutObject is stored with the version and returned by GetObject / HeadObject with
``x-amz-checksum-mode: ENABLED`` for the whole object only (not without the mode, not for
a range), kept by CopyObject, absent for multipart and native objects; botocore's own
response validation reads it. boto3 (with the CRT, as
``botocore[crt]`` computes CRC32C and CRC64NVME) uploads with each algorithm in both of
its modes. A header-signed ``UNSIGNED-PAYLOAD`` body is stored as sent; a SigV2 URL is
refused."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import google_crc32c
import pytest
from awscrt import checksums as crt_checksums
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.httpchecksum import StreamingChecksumBody

from dfspeer.api.s3.auth import UNSIGNED_PAYLOAD
from dfspeer.api.s3.payload import Checksums
from tests.unit.s3_harness import AK, SK, PeerThread, error_code, keyed_peer, send, signed
from tests.unit.test_s3_streaming import SIGNED_TRAILER, UNSIGNED_TRAILER, framed_put

MiB = 1024 * 1024
ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


def digest(alg: str, data: bytes) -> str:
    """S3's form of ``alg`` over ``data``: base64 of the big-endian digest (reference
    implementations, not the server's)."""
    if alg == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    elif alg == "crc32c":
        raw = google_crc32c.value(data).to_bytes(4, "big")
    elif alg == "crc64nvme":
        raw = crt_checksums.crc64nvme(data).to_bytes(8, "big")
    else:
        raw = hashlib.new(alg, data).digest()
    return base64.b64encode(raw).decode()


def test_crc64nvme_check_value() -> None:
    """The CRC-64/NVME catalogue check value: CRC of ASCII "123456789"."""
    sums = Checksums({"crc64nvme"})
    for piece in (b"1234", b"56789"):  # running, across pieces
        sums.update(piece)
    raw = base64.b64decode(sums.values()["crc64nvme"])
    assert raw.hex() == "ae8b14860a799888"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerThread]:
    running = keyed_peer(tmp_path_factory.mktemp("s3sums"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def s3(node: PeerThread) -> Any:
    client = node.client()
    client.create_bucket(Bucket="sums")
    return client


def _missing(s3: Any, key: str) -> bool:
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="sums", Key=key)
    return bool(exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_header_checksum_is_checked(node: PeerThread, s3: Any, alg: str) -> None:
    data = os.urandom(300_000)
    url = f"{node.s3_url}/sums/header-{alg}"
    good = {f"x-amz-checksum-{alg}": digest(alg, data)}
    status, headers, body = send(signed("PUT", url, body=data, headers=good))
    assert status == 200, body
    assert headers[f"x-amz-checksum-{alg}"] == digest(alg, data)
    assert s3.get_object(Bucket="sums", Key=f"header-{alg}")["Body"].read() == data
    bad_url = f"{node.s3_url}/sums/bad-header-{alg}"
    wrong = {f"x-amz-checksum-{alg}": digest(alg, data + b"!")}
    status, _, body = send(signed("PUT", bad_url, body=data, headers=wrong))
    assert status == 400 and error_code(body) == "BadDigest"
    assert _missing(s3, f"bad-header-{alg}")


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_trailer_checksum_is_checked(node: PeerThread, s3: Any, alg: str) -> None:
    data = os.urandom(MiB + 99)
    trailer = (f"x-amz-checksum-{alg}", digest(alg, data))
    status, body = framed_put(
        f"{node.s3_url}/sums/trailer-{alg}", data, UNSIGNED_TRAILER, trailer=trailer
    )
    assert status == 200, body
    assert s3.get_object(Bucket="sums", Key=f"trailer-{alg}")["Body"].read() == data
    wrong = (trailer[0], digest(alg, b"other bytes"))
    for mode in (UNSIGNED_TRAILER, SIGNED_TRAILER):
        url = f"{node.s3_url}/sums/bad-trailer-{alg}"
        status, body = framed_put(url, data, mode, trailer=wrong)
        assert status == 400 and error_code(body) == "BadDigest", body
    assert _missing(s3, f"bad-trailer-{alg}")


def test_upload_part_checksum_is_checked(node: PeerThread, s3: Any) -> None:
    uid = s3.create_multipart_upload(Bucket="sums", Key="mp")["UploadId"]
    data = os.urandom(200_000)
    url = f"{node.s3_url}/sums/mp?partNumber=1&uploadId={uid}"
    wrong = {"x-amz-checksum-crc64nvme": digest("crc64nvme", b"not the part")}
    status, _, body = send(signed("PUT", url, body=data, headers=wrong))
    assert status == 400 and error_code(body) == "BadDigest"
    assert s3.list_parts(Bucket="sums", Key="mp", UploadId=uid).get("Parts", []) == []
    trailer = ("x-amz-checksum-crc64nvme", digest("crc64nvme", b"nor this"))
    assert framed_put(url, data, UNSIGNED_TRAILER, trailer=trailer)[0] == 400
    good = {"x-amz-checksum-crc64nvme": digest("crc64nvme", data)}
    status, _, body = send(signed("PUT", url, body=data, headers=good))
    assert status == 200, body
    parts = s3.list_parts(Bucket="sums", Key="mp", UploadId=uid)["Parts"]
    assert [p["Size"] for p in parts] == [len(data)]


def test_malformed_declarations_are_invalid_request(node: PeerThread, s3: Any) -> None:
    data = b"some bytes"
    url = f"{node.s3_url}/sums/malformed"
    cases = [
        {"x-amz-checksum-crc64nvme": "not base64!"},
        {"x-amz-checksum-crc32": digest("crc64nvme", data)},  # 8 bytes for a 4-byte CRC
        {
            "x-amz-checksum-crc32": digest("crc32", data),
            "x-amz-checksum-sha1": digest("sha1", data),
        },
        {"x-amz-sdk-checksum-algorithm": "CRC64NVME"},
        {"x-amz-trailer": "x-amz-checksum-crc32"},  # a trailer needs aws-chunked
    ]
    for headers in cases:
        status, _, body = send(signed("PUT", url, body=data, headers=headers))
        assert status == 400 and error_code(body) == "InvalidRequest", (headers, body)
    status, _, body = send(signed("PUT", url, body=data, headers={"Content-MD5": "AAAA"}))
    assert status == 400 and error_code(body) == "InvalidDigest"
    other_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, _, body = send(signed("PUT", url, body=data, headers={"Content-MD5": other_md5}))
    assert status == 400 and error_code(body) == "BadDigest"
    status, _, body = send(signed("PUT", url, body=data), body=b"other body")
    assert status == 400 and error_code(body) == "XAmzContentSHA256Mismatch"
    assert _missing(s3, "malformed")


@pytest.mark.parametrize("https", [False, True], ids=["header", "trailer"])
def test_boto3_sends_every_algorithm(s3: Any, monkeypatch: pytest.MonkeyPatch, https: bool) -> None:
    """boto3 with the CRT: over HTTP a checksum header, over HTTPS (made to believe the
    plain-HTTP endpoint is HTTPS) an aws-chunked body with a checksum trailer."""
    if https:
        import botocore.httpchecksum as hc

        monkeypatch.setattr(
            hc, "urlparse", lambda url: urlparse(url.replace("http://", "https://", 1))
        )
    data = os.urandom(2 * MiB + 3)
    for alg in ALGORITHMS:
        key = f"boto-{https}-{alg}"
        s3.put_object(Bucket="sums", Key=key, Body=data, ChecksumAlgorithm=alg.upper())
        got = s3.get_object(Bucket="sums", Key=key)  # asks for the checksum by default
        assert got[f"Checksum{alg.upper()}"] == digest(alg, data)
        assert isinstance(got["Body"], StreamingChecksumBody)  # botocore validates it
        assert got["Body"].read() == data
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_unsigned_payload_and_sigv2_urls(node: PeerThread, s3: Any) -> None:
    """A header-signed request with ``x-amz-content-sha256: UNSIGNED-PAYLOAD`` stores
    the body as sent; a SigV2 presigned URL is refused with S3's InvalidRequest."""
    s3.create_bucket(Bucket="unsigned")

    class Unsigned(S3SigV4Auth):  # type: ignore[misc]
        def payload(self, request: AWSRequest) -> str:
            return UNSIGNED_PAYLOAD

    url = f"{node.s3_url}/unsigned/body"
    request = AWSRequest(method="PUT", url=url, data=b"unsigned bytes")
    Unsigned(Credentials(AK, SK), "s3", "us-east-1").add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert send(request)[0] == 200
    assert s3.get_object(Bucket="unsigned", Key="body")["Body"].read() == b"unsigned bytes"
    v2 = f"{url}?AWSAccessKeyId={AK}&Expires=4102444800&Signature=abc%3D"
    status, _, body = send(AWSRequest(method="GET", url=v2))
    assert status == 400 and error_code(body) == "InvalidRequest"


def test_xml_bodies_are_checked_too(node: PeerThread, s3: Any) -> None:
    """DeleteObjects (what botocore sends a checksum with by default): a wrong declared
    checksum is BadDigest and deletes nothing; boto3's own request goes through."""
    s3.put_object(Bucket="sums", Key="keep", Body=b"x")
    doc = b"<Delete><Object><Key>keep</Key></Object></Delete>"
    url = f"{node.s3_url}/sums?delete"
    wrong = {"x-amz-checksum-crc64nvme": digest("crc64nvme", doc + b" ")}
    status, _, body = send(signed("POST", url, body=doc, headers=wrong))
    assert status == 400 and error_code(body) == "BadDigest"
    assert s3.get_object(Bucket="sums", Key="keep")["Body"].read() == b"x"
    right = {"x-amz-checksum-crc64nvme": digest("crc64nvme", doc)}
    assert send(signed("POST", url, body=doc, headers=right))[0] == 200
    s3.put_object(Bucket="sums", Key="again", Body=b"y")
    done = s3.delete_objects(Bucket="sums", Delete={"Objects": [{"Key": "again"}]})
    assert [d["Key"] for d in done["Deleted"]] == ["again"]
    assert _missing(s3, "keep") and _missing(s3, "again")


MODE = {"x-amz-checksum-mode": "ENABLED"}


def _sums(headers: dict[str, str]) -> dict[str, str]:
    """The ``x-amz-checksum-*`` headers of an answer (names lower-cased)."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-checksum-")}


@pytest.mark.parametrize("size", [100, 300_000], ids=["inline", "blocks"])
@pytest.mark.parametrize("how", ["header", "trailer"])
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_stored_checksum_is_returned_with_checksum_mode(
    node: PeerThread, s3: Any, alg: str, how: str, size: int
) -> None:
    data = os.urandom(size)
    key = f"stored-{alg}-{how}-{size}"
    url = f"{node.s3_url}/sums/{key}"
    want = digest(alg, data)
    if how == "header":
        declared = {f"x-amz-checksum-{alg}": want}
        status, _, body = send(signed("PUT", url, body=data, headers=declared))
    else:
        trailer = (f"x-amz-checksum-{alg}", want)
        status, body = framed_put(url, data, UNSIGNED_TRAILER, trailer=trailer)
    assert status == 200, body
    full = {f"x-amz-checksum-{alg}": want, "x-amz-checksum-type": "FULL_OBJECT"}
    for method in ("GET", "HEAD"):
        status, headers, body = send(signed(method, url, headers=MODE))
        assert status == 200 and _sums(headers) == full, (method, headers)
        assert body == (data if method == "GET" else b"")
        status, headers, _ = send(signed(method, url))  # not asked for: none
        assert status == 200 and _sums(headers) == {}, (method, headers)
        ranged = {**MODE, "Range": "bytes=0-9"}  # a range: none, as S3
        status, headers, body = send(signed(method, url, headers=ranged))
        assert status == 206 and _sums(headers) == {}, (method, headers)
        assert body == (data[:10] if method == "GET" else b"")
    field = f"Checksum{alg.upper()}"
    got = s3.get_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert got[field] == want and got["ChecksumType"] == "FULL_OBJECT"
    assert isinstance(got["Body"], StreamingChecksumBody)
    assert got["Body"].read() == data
    head = s3.head_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
    assert head[field] == want and head["ChecksumType"] == "FULL_OBJECT"


def test_boto3_default_crc32_is_stored_and_validated(node: PeerThread, s3: Any) -> None:
    """botocore (1.36+) sends a CRC32 with every PutObject and asks for a checksum on every
    GetObject by default; a client set to ``when_required`` does not ask, and gets none."""
    data = os.urandom(MiB + 5)
    s3.put_object(Bucket="sums", Key="default-crc32", Body=data)
    got = s3.get_object(Bucket="sums", Key="default-crc32")
    assert got["ChecksumCRC32"] == digest("crc32", data)
    assert isinstance(got["Body"], StreamingChecksumBody)
    assert got["Body"].read() == data
    quiet = node.client(response_checksum_validation="when_required")
    plain = quiet.get_object(Bucket="sums", Key="default-crc32")
    assert not any(name.startswith("Checksum") for name in plain)
    assert plain["Body"].read() == data
    ranged = s3.get_object(Bucket="sums", Key="default-crc32", Range="bytes=5-1000")
    assert not any(name.startswith("Checksum") for name in ranged)
    assert ranged["Body"].read() == data[5:1001]


@pytest.mark.parametrize("size", [100, 300_000], ids=["inline", "blocks"])
def test_copy_object_keeps_the_checksum(s3: Any, size: int) -> None:
    data = os.urandom(size)
    want = digest("crc64nvme", data)
    src = f"copy-src-{size}"
    s3.put_object(Bucket="sums", Key=src, Body=data, ChecksumAlgorithm="CRC64NVME")
    s3.create_bucket(Bucket=f"sums-copy-{size}")
    copied = s3.copy_object(
        Bucket=f"sums-copy-{size}", Key="copy", CopySource={"Bucket": "sums", "Key": src}
    )
    assert copied["CopyObjectResult"]["ChecksumCRC64NVME"] == want
    assert copied["CopyObjectResult"]["ChecksumType"] == "FULL_OBJECT"
    replaced = s3.copy_object(  # onto itself, REPLACE: the bytes, so the checksum, stay
        Bucket="sums",
        Key=src,
        CopySource={"Bucket": "sums", "Key": src},
        MetadataDirective="REPLACE",
        Metadata={"note": "replaced"},
    )
    assert replaced["CopyObjectResult"]["ChecksumCRC64NVME"] == want
    s3.delete_object(Bucket="sums", Key=src)  # the copy does not depend on its source
    got = s3.get_object(Bucket=f"sums-copy-{size}", Key="copy", ChecksumMode="ENABLED")
    assert got["ChecksumCRC64NVME"] == want
    assert got["Body"].read() == data


def test_multipart_and_native_objects_have_no_checksum(node: PeerThread, s3: Any) -> None:
    """A multipart object would need S3's composite checksum and a native one was never
    checked against a client's: neither is returned (documented as not supported)."""
    data = os.urandom(200_000)
    uid = s3.create_multipart_upload(Bucket="sums", Key="mp-whole")["UploadId"]
    part = s3.upload_part(
        Bucket="sums", Key="mp-whole", UploadId=uid, PartNumber=1, Body=data
    )  # botocore sends the part's CRC32: checked, echoed, not stored
    assert part["ChecksumCRC32"] == digest("crc32", data)
    s3.complete_multipart_upload(
        Bucket="sums",
        Key="mp-whole",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    node.run(node.peer.put_object("sums", "native", b"native bytes"))
    for key, body in (("mp-whole", data), ("native", b"native bytes")):
        status, headers, got = send(signed("GET", f"{node.s3_url}/sums/{key}", headers=MODE))
        assert status == 200 and got == body and _sums(headers) == {}, headers
        answer = s3.get_object(Bucket="sums", Key=key, ChecksumMode="ENABLED")
        assert not any(name.startswith("Checksum") for name in answer)
        assert answer["Body"].read() == body
