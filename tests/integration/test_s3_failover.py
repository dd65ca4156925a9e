"""A multipart upload through boto3 that outlives an agent: three real agents
(127.0.0.131..133, HTTP 29070.., gossip 29946.., S3 on each agent's ``LocalCluster`` S3
port; N=3 W=2 R=2, short gossip timers), one SIGKILLed in the middle of the upload.

Parts go through every peer before the kill (the killed one included), the kill comes
with no warning (SIGKILL: no leave, no flush), then the remaining parts and the
completion go through the surviving peers. The object must read back byte-identical
(SHA-256 of the whole body, and a ranged read across a part boundary) from every
surviving peer, with S3's multipart ETag; then the killed agent restarts and serves the
same bytes too.

Before that, on the whole cluster: boto3's own full-object checksum (``put_object`` with
``ChecksumAlgorithm="CRC32C"``, computed and sent by botocore) is stored with the version
and returned by every peer to ``get_object(ChecksumMode="ENABLED")``, whose body botocore
validates against it as it is read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.httpchecksum import CrtCrc32cChecksum, StreamingChecksumBody

from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import FAILURE_SETTINGS, start_cluster

pytestmark = pytest.mark.integration

AK = "AKIDFSPEERFAILOVER01"
SK = "failover-secret/0123456789abcdefghijklmno"
MiB = 1024 * 1024
PART = 5 * MiB
BUCKET = "failover"
SUMS_BUCKET = "checksums"
KEY = "through/a/kill.bin"
VICTIM = 3
DETECT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base: Path = tmp_path_factory.mktemp("s3-failover")
    creds = base / "s3.credentials"
    creds.write_text(f"{AK}:{SK}\n")
    creds.chmod(0o600)
    yield from start_cluster(
        base / "cluster",
        host_base=130,
        base_port=29070,
        gossip_base_port=29946,
        settings={**FAILURE_SETTINGS, "s3_credentials_file": creds},
    )


def client(cluster: LocalCluster, index: int) -> Any:
    """A boto3 client of peer ``index``'s S3 port (path style, a few retries)."""
    url = cluster.peer(index).s3_url
    assert url is not None
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=AK,
        aws_secret_access_key=SK,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            read_timeout=60,
        ),
    )


def read_back(s3: Any) -> tuple[str, str, bytes]:
    """``(SHA-256 hex of the object, its ETag, bytes PART-8 .. PART+8)``."""
    got = s3.get_object(Bucket=BUCKET, Key=KEY)
    digest = hashlib.sha256()
    for piece in got["Body"].iter_chunks(MiB):
        digest.update(piece)
    ranged = s3.get_object(Bucket=BUCKET, Key=KEY, Range=f"bytes={PART - 8}-{PART + 7}")
    return digest.hexdigest(), got["ETag"], ranged["Body"].read()


def test_boto3_crc32c_is_stored_and_validated_on_every_peer(cluster: LocalCluster) -> None:
    clients = {i: client(cluster, i) for i in (1, 2, 3)}
    clients[1].create_bucket(Bucket=SUMS_BUCKET)
    data = os.urandom(3 * MiB + 17)  # several blocks, not inline
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        value = request.headers.get("x-amz-checksum-crc32c")
        if value is not None:
            sent["crc32c"] = value.decode() if isinstance(value, bytes) else value

    clients[1].meta.events.register("before-send.s3.PutObject", capture)
    put = clients[1].put_object(
        Bucket=SUMS_BUCKET, Key="crc32c.bin", Body=data, ChecksumAlgorithm="CRC32C"
    )
    expected = CrtCrc32cChecksum()  # botocore's own implementation, not the server's
    expected.update(data)
    assert sent["crc32c"] == expected.b64digest()  # what boto3 computed went out
    assert put["ChecksumCRC32C"] == sent["crc32c"]
    for via in (1, 2, 3):
        got = clients[via].get_object(Bucket=SUMS_BUCKET, Key="crc32c.bin", ChecksumMode="ENABLED")
        assert got["ChecksumCRC32C"] == sent["crc32c"], f"peer {via}"
        assert got["ChecksumType"] == "FULL_OBJECT"
        assert isinstance(got["Body"], StreamingChecksumBody)  # validated while read
        assert got["Body"].read() == data, f"peer {via}"


def test_multipart_upload_survives_a_sigkilled_peer(cluster: LocalCluster) -> None:
    clients = {i: client(cluster, i) for i in (1, 2, 3)}
    clients[1].create_bucket(Bucket=BUCKET)
    bodies = [os.urandom(PART) for _ in range(4)] + [os.urandom(MiB + 12345)]
    uid = clients[VICTIM].create_multipart_upload(Bucket=BUCKET, Key=KEY)["UploadId"]
    etags: dict[int, str] = {}

    def put_part(number: int, via: int) -> None:
        out = clients[via].upload_part(
            Bucket=BUCKET, Key=KEY, UploadId=uid, PartNumber=number, Body=bodies[number - 1]
        )
        assert out["ETag"] == f'"{hashlib.md5(bodies[number - 1]).hexdigest()}"'
        etags[number] = out["ETag"]

    for number, via in ((1, 1), (2, 2), (3, VICTIM)):  # before the kill: every peer
        put_part(number, via)
    assert cluster.kill(VICTIM) == -9  # SIGKILL, in the middle of the upload
    for number, via in ((4, 1), (5, 2)):  # after it: the survivors
        put_part(number, via)
    put_part(2, 1)  # a part sent again after the kill replaces the first copy
    listed = clients[2].list_parts(Bucket=BUCKET, Key=KEY, UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in listed] == sorted(etags.items())
    done = clients[1].complete_multipart_upload(
        Bucket=BUCKET,
        Key=KEY,
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in sorted(etags.items())]},
    )
    whole = b"".join(bodies)
    md5s = b"".join(hashlib.md5(b).digest() for b in bodies)
    want = (
        hashlib.sha256(whole).hexdigest(),
        f'"{hashlib.md5(md5s).hexdigest()}-{len(bodies)}"',
        whole[PART - 8 : PART + 8],
    )
    assert done["ETag"] == want[1]
    for survivor in (1, 2):
        assert read_back(clients[survivor]) == want, f"peer {survivor}"
    cluster.start_peer(VICTIM)
    cluster.wait_ready(60.0, indices=[VICTIM])
    cluster.wait_view([1, 2, 3], timeout_s=60.0)
    assert read_back(client(cluster, VICTIM)) == want
    head = clients[VICTIM].head_object(Bucket=BUCKET, Key=KEY)
    assert head["ContentLength"] == len(whole)
