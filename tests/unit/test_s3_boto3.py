"""The S3 API with real boto3 against a real in-process Peer (S3 on its own port), plus
the AWS SigV4 test vectors and the S3 <-> native API round trip."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.request
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from multidict import CIMultiDict

from dfspeer.access.principals import ADMIN
from dfspeer.api.s3 import auth
from dfspeer.api.s3.credentials import S3Key
from dfspeer.api.s3.errors import S3Error
from tests.unit.s3_harness import AK, ROOT_DOMAIN, SK, PeerThread, error_code, send, signed

# The documented "GET Object" example of the AWS Signature Version 4 pages ("Example: GET
# Object", Authenticating Requests: Using the Authorization Header).
VECTOR_HEADERS = {
    "Host": "examplebucket.s3.amazonaws.com",
    "Range": "bytes=0-9",
    "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "x-amz-date": "20130524T000000Z",
}
VECTOR_SIGNED = ("host", "range", "x-amz-content-sha256", "x-amz-date")
VECTOR_CANONICAL = "\n".join(
    [
        "GET",
        "/test.txt",
        "",
        "host:examplebucket.s3.amazonaws.com",
        "range:bytes=0-9",
        "x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "x-amz-date:20130524T000000Z",
        "",
        "host;range;x-amz-content-sha256;x-amz-date",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ]
)
VECTOR_STRING_TO_SIGN = (
    "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
    "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
)
VECTOR_SIGNATURE = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
VECTOR_TIME = dt.datetime(2013, 5, 24, tzinfo=dt.UTC).timestamp()

ODD_KEYS = [
    "a b/c d.txt",
    "plus+sign",
    "amp&er&sand",
    "per%cent%20",
    "quote'\"s",
    "<tag>&amp;",
    "ünïcødé/ключ/鍵",
    "dir//double/./dot",
]


class DictStore:
    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys

    async def lookup(self, access_key_id: str) -> S3Key | None:
        secret = self.keys.get(access_key_id)
        return None if secret is None else S3Key(secret, ADMIN)


# ---------------------------------------------------------------------- SigV4 vectors
def test_sigv4_documented_get_example() -> None:
    headers = CIMultiDict(VECTOR_HEADERS)
    canonical = auth.canonical_request(
        "GET", "/test.txt", [], headers, VECTOR_SIGNED, VECTOR_HEADERS["x-amz-content-sha256"]
    )
    assert canonical == VECTOR_CANONICAL
    to_sign = auth.string_to_sign(canonical, "20130524T000000Z", "us-east-1")
    assert to_sign == VECTOR_STRING_TO_SIGN
    assert auth.sign(SK, "20130524T000000Z", "us-east-1", to_sign) == VECTOR_SIGNATURE


def _vector_request(**changes: str) -> CIMultiDict[str]:
    headers = CIMultiDict(VECTOR_HEADERS)
    headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={AK}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={';'.join(VECTOR_SIGNED)},Signature={VECTOR_SIGNATURE}"
    )
    headers.update(changes)
    return headers


async def test_verifier_accepts_the_vector_and_names_each_failure() -> None:
    def verifier(now: float, keys: dict[str, str] | None = None) -> auth.SigV4Verifier:
        store = DictStore({AK: SK} if keys is None else keys)
        return auth.SigV4Verifier(store, "us-east-1", open_mode=False, now=lambda: now)

    ok = await verifier(VECTOR_TIME + 60).verify("GET", "/test.txt", "", _vector_request())
    assert ok.access_key == AK
    assert ok.payload == VECTOR_HEADERS["x-amz-content-sha256"]

    async def code(v: auth.SigV4Verifier, headers: CIMultiDict[str], method: str = "GET") -> str:
        with pytest.raises(S3Error) as info:
            await v.verify(method, "/test.txt", "", headers)
        return info.value.s3code

    good = verifier(VECTOR_TIME)
    assert await code(good, _vector_request(Range="bytes=0-10")) == "SignatureDoesNotMatch"
    assert await code(good, _vector_request(), method="PUT") == "SignatureDoesNotMatch"
    assert await code(verifier(VECTOR_TIME, {}), _vector_request()) == "InvalidAccessKeyId"
    late = verifier(VECTOR_TIME + 16 * 60)
    assert await code(late, _vector_request()) == "RequestTimeTooSkewed"
    other_region = auth.SigV4Verifier(
        DictStore({AK: SK}), "eu-west-1", open_mode=False, now=lambda: VECTOR_TIME
    )
    assert await code(other_region, _vector_request()) == "AuthorizationHeaderMalformed"
    unsigned = CIMultiDict(VECTOR_HEADERS)
    assert await code(good, unsigned) == "AccessDenied"


# ---------------------------------------------------------------------- a real peer
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PeerThread]:
    base = tmp_path_factory.mktemp("s3")
    creds = base / "s3.credentials"
    creds.write_text(f"# test keys\n{AK}:{SK}\nAKOTHER:othersecret\n")
    running = PeerThread(base / "p", s3_credentials_file=creds, s3_root_domain=ROOT_DOMAIN)
    yield running
    running.close()


@pytest.fixture(scope="module")
def s3(node: PeerThread) -> Any:
    return node.client()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def native(node: PeerThread, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(node.peer.api_url + path, **kw)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def test_buckets(s3: Any) -> None:
    s3.create_bucket(Bucket="alpha")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="alpha")
    assert _code(exc) == "BucketAlreadyOwnedByYou"
    assert "alpha" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.head_bucket(Bucket="alpha")["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="nowhere")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert s3.get_bucket_location(Bucket="alpha").get("LocationConstraint") is None
    assert "Status" not in s3.get_bucket_versioning(Bucket="alpha")
    s3.put_bucket_versioning(Bucket="alpha", VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket="alpha")["Status"] == "Enabled"
    s3.put_bucket_versioning(Bucket="alpha", VersioningConfiguration={"Status": "Suspended"})
    assert s3.get_bucket_versioning(Bucket="alpha")["Status"] == "Suspended"
    s3.put_object(Bucket="alpha", Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="alpha")
    assert _code(exc) == "BucketNotEmpty"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="nowhere", Key="k")
    assert _code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket="nowhere", Key="k", Body=b"x")
    assert _code(exc) == "NoSuchBucket"
    s3.create_bucket(Bucket="empty-one")
    s3.delete_bucket(Bucket="empty-one")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="empty-one")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket="beta", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
    assert _code(exc) == "InvalidLocationConstraint"


def test_objects_round_trip_metadata_ranges_and_conditions(s3: Any) -> None:
    s3.create_bucket(Bucket="objs")
    data = bytes(range(256)) * 1000
    put = s3.put_object(
        Bucket="objs",
        Key="a/file.bin",
        Body=data,
        ContentType="image/png",
        Metadata={"author": "ada", "Mixed-Case": "v"},
    )
    md5 = hashlib.md5(data).hexdigest()
    assert put["ETag"] == f'"{md5}"'
    got = s3.get_object(Bucket="objs", Key="a/file.bin")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{md5}"'
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"author": "ada", "mixed-case": "v"}
    assert got["ContentLength"] == len(data)
    head = s3.head_object(Bucket="objs", Key="a/file.bin")
    assert head["ContentLength"] == len(data) and head["ETag"] == f'"{md5}"'
    part = s3.get_object(Bucket="objs", Key="a/file.bin", Range="bytes=10-19")
    assert part["Body"].read() == data[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(data)}"
    tail = s3.get_object(Bucket="objs", Key="a/file.bin", Range="bytes=-5")
    assert tail["Body"].read() == data[-5:]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin", Range=f"bytes={len(data)}-")
    assert _code(exc) == "InvalidRange"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin", IfMatch='"0000"')
    assert _code(exc) == "PreconditionFailed"
    assert s3.get_object(Bucket="objs", Key="a/file.bin", IfMatch=f'"{md5}"')["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin", IfNoneMatch=f'"{md5}"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    past = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin", IfModifiedSince=future)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.get_object(Bucket="objs", Key="a/file.bin", IfModifiedSince=past)["ETag"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin", IfUnmodifiedSince=past)
    assert _code(exc) == "PreconditionFailed"
    over = s3.get_object(
        Bucket="objs",
        Key="a/file.bin",
        ResponseContentType="text/plain",
        ResponseContentDisposition="attachment; filename=x.bin",
        ResponseCacheControl="no-cache",
    )
    assert over["ContentType"] == "text/plain"
    assert over["ContentDisposition"] == "attachment; filename=x.bin"
    assert over["CacheControl"] == "no-cache"
    s3.put_object(Bucket="objs", Key="empty", Body=b"")
    assert s3.get_object(Bucket="objs", Key="empty")["Body"].read() == b""
    assert (
        s3.delete_object(Bucket="objs", Key="a/file.bin")["ResponseMetadata"]["HTTPStatusCode"]
        == 204
    )
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="objs", Key="a/file.bin")
    assert _code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="objs", Key="a/file.bin")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    never = s3.delete_object(Bucket="objs", Key="never-there")  # idempotent
    assert never["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert "DeleteMarker" not in never and "VersionId" not in never


def test_delete_objects_quiet_and_verbose(s3: Any) -> None:
    s3.create_bucket(Bucket="bulk")
    for i in range(6):
        s3.put_object(Bucket="bulk", Key=f"k{i}", Body=b"x")
    out = s3.delete_objects(
        Bucket="bulk", Delete={"Objects": [{"Key": "k0"}, {"Key": "k1"}, {"Key": "none"}]}
    )
    assert sorted(d["Key"] for d in out["Deleted"]) == ["k0", "k1", "none"]
    assert next(d for d in out["Deleted"] if d["Key"] == "none") == {"Key": "none"}
    quiet = s3.delete_objects(
        Bucket="bulk", Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}], "Quiet": True}
    )
    assert "Deleted" not in quiet and "Errors" not in quiet
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="bulk")["Contents"]]
    assert left == ["k4", "k5"]


def test_odd_keys_round_trip_and_list(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="odd")
    for key in ODD_KEYS:
        s3.put_object(Bucket="odd", Key=key, Body=key.encode())
    for key in ODD_KEYS:
        assert s3.get_object(Bucket="odd", Key=key)["Body"].read() == key.encode()
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket="odd")["Contents"]]
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode())
    v1 = [o["Key"] for o in s3.list_objects(Bucket="odd")["Contents"]]
    assert v1 == listed
    # without encoding-type=url the keys travel as (escaped) XML text, still well-formed
    status, _, body = send(signed("GET", f"{node.s3_url}/odd?list-type=2"))
    assert status == 200
    import xml.etree.ElementTree as ET

    ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    keys = [e.text for e in ET.fromstring(body).iter(f"{ns}Key")]
    assert keys == listed
    s3.put_object(Bucket="odd", Key="ctl\x01char", Body=b"x")
    status, _, body = send(signed("GET", f"{node.s3_url}/odd?list-type=2"))
    assert status == 400 and error_code(body) == "InvalidArgument"
    assert "ctl\x01char" in [o["Key"] for o in s3.list_objects_v2(Bucket="odd")["Contents"]]


def test_list_pagination_prefix_delimiter(s3: Any) -> None:
    s3.create_bucket(Bucket="pages")
    keys = [f"dir{d}/file{i:02d}" for d in range(2) for i in range(5)] + ["top1", "top2"]
    for key in keys:
        s3.put_object(Bucket="pages", Key=key, Body=b"-")
    seen: list[str] = []
    token = None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        page = s3.list_objects_v2(Bucket="pages", MaxKeys=3, **kw)
        seen += [o["Key"] for o in page.get("Contents", [])]
        assert page["KeyCount"] == len(page.get("Contents", []))
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == sorted(keys)
    rolled = s3.list_objects_v2(Bucket="pages", Delimiter="/")
    assert [p["Prefix"] for p in rolled["CommonPrefixes"]] == ["dir0/", "dir1/"]
    assert [o["Key"] for o in rolled["Contents"]] == ["top1", "top2"]
    under = s3.list_objects_v2(Bucket="pages", Prefix="dir1/", StartAfter="dir1/file02")
    assert [o["Key"] for o in under["Contents"]] == ["dir1/file03", "dir1/file04"]
    v1 = s3.list_objects(Bucket="pages", Marker="dir1/file04", MaxKeys=1)
    assert [o["Key"] for o in v1["Contents"]] == ["top1"] and v1["IsTruncated"]
    assert s3.list_objects_v2(Bucket="pages", MaxKeys=0)["KeyCount"] == 0
    plain = s3.list_objects_v2(Bucket="pages", MaxKeys=1)["Contents"][0]
    owned = s3.list_objects_v2(Bucket="pages", MaxKeys=1, FetchOwner=True)["Contents"][0]
    assert "Owner" not in plain and owned["Owner"]["ID"]


def test_auth_errors(node: PeerThread, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.create_bucket(Bucket="authz")
    url = f"{node.s3_url}/authz/obj"
    with pytest.raises(ClientError) as exc:
        node.client(secret="wrong").list_buckets()
    assert _code(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        node.client(key="AKNOBODY").list_buckets()
    assert _code(exc) == "InvalidAccessKeyId"
    assert node.client(key="AKOTHER", secret="othersecret").list_buckets()["Buckets"]
    with pytest.raises(ClientError) as exc:
        node.client(unsigned=True).list_buckets()
    assert _code(exc) == "AccessDenied"
    # a signed SHA-256 that is not the body's: refused, nothing stored
    status, headers, body = send(signed("PUT", url, body=b"good body"), body=b"evil body")
    assert status == 400 and error_code(body) == "XAmzContentSHA256Mismatch"
    assert headers.get("x-amz-request-id")
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket="authz", Key="obj")
    # a request signed 20 minutes ago
    then = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(minutes=20)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: then)
    status, _, body = send(signed("GET", f"{node.s3_url}/"))
    assert status == 403 and error_code(body) == "RequestTimeTooSkewed"


def test_not_implemented_and_request_ids(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="misc")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_acl(Bucket="misc")
    assert _code(exc) == "NotImplemented"
    assert exc.value.response["ResponseMetadata"]["RequestId"]
    status, headers, body = send(signed("GET", f"{node.s3_url}/misc?tagging"))
    assert status == 501 and error_code(body) == "NotImplemented"
    assert headers["x-amz-request-id"]


def test_virtual_host_style(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="vhost")
    s3.put_object(Bucket="vhost", Key="in/side", Body=b"virtual")
    port = node.s3_url.rsplit(":", 1)[1]
    host = f"vhost.{ROOT_DOMAIN}:{port}"
    request = signed("GET", f"{node.s3_url}/in/side", headers={"Host": host})
    status, _, body = send(request, host=host)
    assert (status, body) == (200, b"virtual")


def test_s3_and_native_api_read_each_other(node: PeerThread, s3: Any) -> None:
    s3.create_bucket(Bucket="both")
    s3.put_object(
        Bucket="both",
        Key="from-s3",
        Body=b"s3 bytes",
        ContentType="text/x-a",
        Metadata={"color": "blue"},
    )
    status, headers, body = native(node, "/v1/objects/both/from-s3")
    assert (status, body) == (200, b"s3 bytes")
    assert headers["Content-Type"] == "text/x-a"
    assert headers["X-Meta-color"] == "blue"
    assert not any("dfs:" in name.lower() for name in headers)
    status, _, body = native(node, "/v1/objects/both?prefix=from")
    assert json.loads(body)["objects"][0]["key"] == "from-s3"
    assert b"dfs:" not in body
    req_headers = {"Content-Type": "text/x-b", "X-Meta-shape": "round"}
    status, _, _ = native(
        node,
        "/v1/objects/both/from-native",
        data=b"native bytes",
        method="PUT",
        headers=req_headers,
    )
    assert status == 201
    got = s3.get_object(Bucket="both", Key="from-native")
    assert got["Body"].read() == b"native bytes"
    assert got["Metadata"] == {"shape": "round"} and got["ContentType"] == "text/x-b"
    assert got["ETag"] == '"' + hashlib.sha256(b"native bytes").hexdigest() + '"'
    assert node.run(node.peer.read_object("both", "from-s3")) == b"s3 bytes"


def test_open_mode_accepts_unsigned_requests(tmp_path: Path) -> None:
    node = PeerThread(tmp_path / "open")
    try:
        client = node.client(unsigned=True)
        client.create_bucket(Bucket="anon")
        client.put_object(Bucket="anon", Key="k", Body=b"open")
        assert client.get_object(Bucket="anon", Key="k")["Body"].read() == b"open"
        with pytest.raises(ClientError) as exc:  # a signature is still checked
            node.client().list_buckets()
        assert _code(exc) == "InvalidAccessKeyId"
    finally:
        node.close()


def test_last_modified_is_http_date(s3: Any) -> None:
    s3.create_bucket(Bucket="dates")
    s3.put_object(Bucket="dates", Key="k", Body=b"x")
    head = s3.head_object(Bucket="dates", Key="k")
    assert abs(head["LastModified"].timestamp() - dt.datetime.now(dt.UTC).timestamp()) < 60
    assert formatdate  # the header is RFC 1123, which botocore parsed


def test_versions_and_delete_markers(s3: Any) -> None:
    s3.create_bucket(Bucket="vers")
    s3.put_bucket_versioning(Bucket="vers", VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket="vers", Key="k", Body=b"one")["VersionId"]
    second = s3.put_object(Bucket="vers", Key="k", Body=b"two")["VersionId"]
    assert first != second
    assert s3.get_object(Bucket="vers", Key="k", VersionId=first)["Body"].read() == b"one"
    assert s3.head_object(Bucket="vers", Key="k", VersionId=first)["ContentLength"] == 3
    gone = s3.delete_object(Bucket="vers", Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="vers", Key="k")
    assert _code(exc) == "NoSuchKey"
    listed = s3.list_object_versions(Bucket="vers")
    assert [v["VersionId"] for v in listed["Versions"]] == [second, first]
    assert listed["Versions"][0]["ETag"] == '"' + hashlib.md5(b"two").hexdigest() + '"'
    assert [m["VersionId"] for m in listed["DeleteMarkers"]] == [gone["VersionId"]]
    assert listed["DeleteMarkers"][0]["IsLatest"] is True
    undo = s3.delete_object(Bucket="vers", Key="k", VersionId=gone["VersionId"])
    assert undo["DeleteMarker"] is True and undo["VersionId"] == gone["VersionId"]
    assert s3.get_object(Bucket="vers", Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket="vers", Key="k", VersionId=second)
    assert s3.get_object(Bucket="vers", Key="k")["Body"].read() == b"one"


def test_multipart_round_trip(s3: Any) -> None:
    """(Every multipart operation and error: tests/unit/test_s3_multipart.py.)"""
    s3.create_bucket(Bucket="multi")
    uid = s3.create_multipart_upload(Bucket="multi", Key="big")["UploadId"]
    first, last = b"a" * (5 * 1024 * 1024), b"tail"
    etags = [
        s3.upload_part(Bucket="multi", Key="big", UploadId=uid, PartNumber=n, Body=body)["ETag"]
        for n, body in ((1, first), (2, last))
    ]
    done = s3.complete_multipart_upload(
        Bucket="multi",
        Key="big",
        UploadId=uid,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etags[0]}, {"PartNumber": 2, "ETag": etags[1]}]
        },
    )
    md5s = hashlib.md5(first).digest() + hashlib.md5(last).digest()
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    assert s3.get_object(Bucket="multi", Key="big")["Body"].read() == first + last
