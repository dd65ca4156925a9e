"""aws-chunked bodies (``STREAMING-*`` payload modes), checksum trailers and presigned URLs
against a real in-process Peer: what botocore sends by default (over HTTP: a signed
payload and an ``x-amz-checksum-crc32`` header; over HTTPS: an unsigned aws-chunked body
with a checksum trailer, exercised here by making botocore believe the URL is HTTPS),
hand-framed signed chunks (AWS's documented example signatures, then real requests,
with a bad chunk signature refused), and presigned GET / PUT with plain urllib. Every
mode stores the decoded bytes only: read back byte-identical."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import google_crc32c
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HAS_CRT
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from dfspeer.api.s3.auth import Identity, Scope
from dfspeer.api.s3.chunked import EMPTY_SHA256, ChunkSigner
from tests.unit.s3_harness import AK, SK, PeerThread, error_code, keyed_peer

MiB = 1024 * 1024
SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerThread]:
    running = keyed_peer(tmp_path_factory.mktemp("s3stream"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def s3(node: PeerThread) -> Any:
    client = node.client()
    client.create_bucket(Bucket="stream")
    return client


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def checksum(alg: str, data: bytes) -> str:
    if alg == "crc32":
        return _b64(zlib.crc32(data).to_bytes(4, "big"))
    if alg == "crc32c":
        return _b64(google_crc32c.value(data).to_bytes(4, "big"))
    return _b64(hashlib.sha256(data).digest())


# ---------------------------------------------------------------------- AWS's example
def test_chunk_signatures_match_the_aws_documented_example() -> None:
    """AWS SigV4 "Example Calculations" for STREAMING-AWS4-HMAC-SHA256-PAYLOAD: 66560
    bytes of 'a' in chunks of 65536 and 1024, then the final chunk."""
    scope = Scope(
        AK,
        "20130524",
        "us-east-1",
        "s3",
        ("host",),
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        "20130524T000000Z",
    )
    signer = ChunkSigner.of(Identity(AK, SIGNED, scope, SK))
    assert signer is not None
    expected = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]
    for data, want in zip([b"a" * 65536, b"a" * 1024, b""], expected, strict=True):
        signer.check_chunk(hashlib.sha256(data).hexdigest(), want)


# ---------------------------------------------------------------------- a hand-made client
class _StreamingAuth(S3SigV4Auth):  # type: ignore[misc]
    mode = SIGNED

    def payload(self, request: AWSRequest) -> str:
        return self.mode


def _key(date: str) -> bytes:
    key = ("AWS4" + SK).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def framed_put(
    url: str,
    data: bytes,
    mode: str,
    *,
    chunk: int = 64 * 1024,
    trailer: tuple[str, str] | None = None,
    spoil_chunk: int | None = None,
) -> tuple[int, bytes]:
    """PUT ``data`` as an aws-chunked body in ``mode``; ``(status, body)``."""
    headers = {
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
    }
    if trailer is not None:
        headers["x-amz-trailer"] = trailer[0]
    request = AWSRequest(method="PUT", url=url, headers=headers)
    auth = _StreamingAuth(Credentials(AK, SK), "s3", "us-east-1")
    auth.mode = mode
    auth.add_auth(request)
    amz_date = request.headers["X-Amz-Date"]
    previous = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    key, scope = _key(amz_date[:8]), f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    signed = mode != UNSIGNED_TRAILER
    out = b""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for i, piece in enumerate(pieces):
        ext = b""
        if signed:
            to_sign = "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    amz_date,
                    scope,
                    previous,
                    EMPTY_SHA256,
                    hashlib.sha256(piece).hexdigest(),
                ]
            )
            previous = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            sig = "0" * 64 if i == spoil_chunk else previous
            ext = b";chunk-signature=" + sig.encode()
        out += f"{len(piece):x}".encode() + ext + b"\r\n" + piece
        out += b"\r\n" if piece else b""
    if trailer is not None:
        line = f"{trailer[0]}:{trailer[1]}"
        out += line.encode() + b"\r\n"
        if mode == SIGNED_TRAILER:
            digest = hashlib.sha256((line + "\n").encode()).hexdigest()
            to_sign = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous, digest])
            sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            out += f"x-amz-trailer-signature:{sig}\r\n".encode()
    out += b"\r\n"
    sent = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
    req = urllib.request.Request(url, data=out, headers=sent, method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.parametrize(
    ("mode", "trailer_alg"),
    [
        (SIGNED, None),
        (SIGNED_TRAILER, "crc32"),
        (UNSIGNED_TRAILER, "crc32"),
        (UNSIGNED_TRAILER, "crc32c"),
        (UNSIGNED_TRAILER, "sha256"),
    ],
)
def test_framed_modes_store_the_decoded_bytes(
    node: PeerThread, s3: Any, mode: str, trailer_alg: str | None
) -> None:
    data = os.urandom(MiB + 4321)
    key = f"framed-{mode}-{trailer_alg}"
    trailer = None
    if trailer_alg is not None:
        trailer = (f"x-amz-checksum-{trailer_alg}", checksum(trailer_alg, data))
    status, body = framed_put(f"{node.s3_url}/stream/{key}", data, mode, trailer=trailer)
    assert status == 200, body
    got = s3.get_object(Bucket="stream", Key=key)
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'


def test_bad_chunk_signature_and_bad_trailer_are_refused(node: PeerThread, s3: Any) -> None:
    data = os.urandom(300 * 1024)
    url = f"{node.s3_url}/stream/refused"
    status, body = framed_put(url, data, SIGNED, spoil_chunk=2)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    status, body = framed_put(url, data, SIGNED, spoil_chunk=5)  # the final, empty chunk
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    wrong = ("x-amz-checksum-crc32", checksum("crc32", b"other"))
    status, body = framed_put(url, data, UNSIGNED_TRAILER, trailer=wrong)
    assert status == 400 and error_code(body) == "BadDigest"
    wrong = ("x-amz-checksum-crc32c", checksum("crc32c", b"other"))
    status, body = framed_put(url, data, SIGNED_TRAILER, trailer=wrong)
    assert status == 400 and error_code(body) == "BadDigest"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="stream", Key="refused")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_framed_upload_part(node: PeerThread, s3: Any) -> None:
    uid = s3.create_multipart_upload(Bucket="stream", Key="mp")["UploadId"]
    data = os.urandom(6 * MiB)
    url = f"{node.s3_url}/stream/mp?partNumber=1&uploadId={uid}"
    status, body = framed_put(url, data, SIGNED, chunk=MiB)
    assert status == 200, body
    tail = os.urandom(1000)
    trailer = ("x-amz-checksum-sha256", checksum("sha256", tail))
    url2 = f"{node.s3_url}/stream/mp?partNumber=2&uploadId={uid}"
    assert framed_put(url2, tail, UNSIGNED_TRAILER, trailer=trailer)[0] == 200
    parts = s3.list_parts(Bucket="stream", Key="mp", UploadId=uid)["Parts"]
    s3.complete_multipart_upload(
        Bucket="stream",
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{k: p[k] for k in ("PartNumber", "ETag")} for p in parts]},
    )
    assert s3.get_object(Bucket="stream", Key="mp")["Body"].read() == data + tail


# ---------------------------------------------------------------------- botocore itself
def test_botocore_defaults_over_http(s3: Any) -> None:
    data = os.urandom(100_000)
    put = s3.put_object(Bucket="stream", Key="plain", Body=data)  # crc32 header, signed body
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    for alg in ("CRC32", "SHA1", "SHA256"):  # CRC32C needs botocore[crt]
        s3.put_object(Bucket="stream", Key=f"plain-{alg}", Body=data, ChecksumAlgorithm=alg)
        assert s3.get_object(Bucket="stream", Key=f"plain-{alg}")["Body"].read() == data


def test_botocore_trailer_mode(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sends aws-chunked with a checksum trailer over HTTPS only: make it see
    the endpoint as HTTPS (the request still goes over HTTP)."""
    import botocore.httpchecksum as hc

    def as_https(url: str) -> Any:
        return urlparse(url.replace("http://", "https://", 1))

    monkeypatch.setattr(hc, "urlparse", as_https)
    seen: list[str] = []

    def record(request: Any, **_: Any) -> None:
        seen.append(request.headers.get("x-amz-content-sha256", b"").decode())

    s3.meta.events.register("before-send.s3.*", record)
    data = os.urandom(3 * MiB + 7)
    for alg in ("CRC32", "SHA1", "SHA256"):  # CRC32C needs botocore[crt]
        s3.put_object(Bucket="stream", Key=f"trail-{alg}", Body=data, ChecksumAlgorithm=alg)
        got = s3.get_object(Bucket="stream", Key=f"trail-{alg}")
        assert got["Body"].read() == data
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    uid = s3.create_multipart_upload(Bucket="stream", Key="trail-mp")["UploadId"]
    etag = s3.upload_part(Bucket="stream", Key="trail-mp", UploadId=uid, PartNumber=1, Body=data)
    s3.complete_multipart_upload(
        Bucket="stream",
        Key="trail-mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag["ETag"]}]},
    )
    assert s3.get_object(Bucket="stream", Key="trail-mp")["Body"].read() == data
    assert UNSIGNED_TRAILER in seen


# ---------------------------------------------------------------------- presigned URLs
def _urlopen(req: urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_presigned_get_and_put_with_urllib(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(70_000)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "stream", "Key": "pre/signed"}, ExpiresIn=300
    )
    status, _ = _urlopen(urllib.request.Request(put_url, data=data, method="PUT"))
    assert status == 200
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "stream", "Key": "pre/signed"}, ExpiresIn=300
    )
    assert _urlopen(urllib.request.Request(get_url)) == (200, data)
    status, body = _urlopen(urllib.request.Request(get_url.replace("Signature=", "Signature=0")))
    assert status in (400, 403)
    tampered = get_url.replace("pre/signed", "pre/other")
    status, body = _urlopen(urllib.request.Request(tampered))
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"
    # signed two hours ago for one hour: expired
    signed_at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)

    def then(remove_tzinfo: bool = True) -> dt.datetime:
        return signed_at.replace(tzinfo=None) if remove_tzinfo else signed_at

    monkeypatch.setattr("botocore.auth.get_current_datetime", then)
    if HAS_CRT:  # botocore then signs with the CRT's SigV4, on its own import of the clock
        monkeypatch.setattr("botocore.crt.auth.get_current_datetime", then)
    old = s3.generate_presigned_url(
        "get_object", Params={"Bucket": "stream", "Key": "pre/signed"}, ExpiresIn=3600
    )
    status, body = _urlopen(urllib.request.Request(old))
    assert status == 403 and error_code(body) == "AccessDenied"
    old_put = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "stream", "Key": "pre/late"}, ExpiresIn=3600
    )
    status, body = _urlopen(urllib.request.Request(old_put, data=b"late", method="PUT"))
    assert status == 403 and error_code(body) == "AccessDenied"
