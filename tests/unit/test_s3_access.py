"""Per-bucket permissions on the S3 API: keys of the ``keys`` table get, through boto3, the
decision the native API gives them; ``s3_credentials_file`` keys keep full access."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from dfspeer.access.credentials import new_admin_token, write_secret_file
from dfspeer.access.permissions import Action
from dfspeer.api.s3.access import ACTIONS, action_of
from dfspeer.api.s3.service import route
from dfspeer.gossip.keyring import generate_key
from tests.unit.s3_harness import AK, SK, PeerThread

BUCKET = "granted"


@dataclass
class Secured:
    node: PeerThread
    token: str

    def native(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """JSON answer of a native API call as the admin."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.node.peer.api_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def new_key(self, name: str, *, create: bool = False) -> Any:
        """A boto3 client of a new ``keys`` table key, and the key's id."""
        made = self.native("POST", "/v1/keys", {"name": name, "allow_create_bucket": create})
        return self.node.client(made["id"], made["secret"]), made["id"]

    def grant(self, key_id: str, **flags: bool) -> None:
        self.native("PUT", f"/v1/buckets/{BUCKET}/permissions", {"key": key_id, **flags})


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("s3-access")
    token = new_admin_token()
    write_secret_file(root / "admin.token", token)
    write_secret_file(root / "cluster.key", generate_key() + "\n")
    creds = root / "s3.credentials"
    creds.write_text(f"{AK}:{SK}\n")
    node = PeerThread(
        root / "p1",
        insecure=False,
        admin_token_file=root / "admin.token",
        cluster_key_file=root / "cluster.key",
        s3_credentials_file=creds,
    )
    try:
        yield Secured(node, token)
    finally:
        node.close()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _status(exc: pytest.ExceptionInfo[ClientError]) -> int:
    return int(exc.value.response["ResponseMetadata"]["HTTPStatusCode"])


def test_every_operation_has_the_native_action() -> None:
    handlers = set()
    for method, bucket, key, query in [
        ("GET", None, None, {}),
        *[(m, "b", None, {}) for m in ("GET", "PUT", "HEAD", "DELETE")],
        ("GET", "b", None, {"uploads": ""}),
        ("GET", "b", None, {"versions": ""}),
        ("GET", "b", None, {"location": ""}),
        ("GET", "b", None, {"versioning": ""}),
        ("PUT", "b", None, {"versioning": ""}),
        ("POST", "b", None, {"delete": ""}),
        ("POST", "b", "k", {"uploads": ""}),
        *[(m, "b", "k", {"uploadId": "u"}) for m in ("PUT", "GET", "POST", "DELETE")],
        *[(m, "b", "k", {}) for m in ("GET", "HEAD", "PUT", "DELETE")],
    ]:
        handlers.add(route(method, bucket, key, query))
    assert handlers == set(ACTIONS)
    assert action_of(route("GET", "b", "k", {})) is Action.READ
    assert action_of(route("PUT", "b", "k", {})) is Action.WRITE
    assert action_of(route("DELETE", "b", None, {})) is Action.OWNER
    assert action_of(route("PUT", "b", None, {"versioning": ""})) is Action.OWNER
    assert action_of(route("PUT", "b", None, {})) is Action.CREATE_BUCKET


def test_keys_get_their_grants_and_file_keys_everything(secured: Secured) -> None:
    admin_s3 = secured.node.client()  # s3_credentials_file: full access
    admin_s3.create_bucket(Bucket=BUCKET)
    admin_s3.put_object(Bucket=BUCKET, Key="doc.txt", Body=b"shared")

    reader, reader_id = secured.new_key("reader")
    secured.grant(reader_id, read=True)
    assert reader.get_object(Bucket=BUCKET, Key="doc.txt")["Body"].read() == b"shared"
    assert reader.head_object(Bucket=BUCKET, Key="doc.txt")["ContentLength"] == 6
    listed = reader.list_objects_v2(Bucket=BUCKET)
    assert [o["Key"] for o in listed["Contents"]] == ["doc.txt"]
    with pytest.raises(ClientError) as denied:
        reader.put_object(Bucket=BUCKET, Key="new.txt", Body=b"no")
    assert _code(denied) == "AccessDenied" and _status(denied) == 403
    with pytest.raises(ClientError) as denied:
        reader.delete_object(Bucket=BUCKET, Key="doc.txt")
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        reader.create_multipart_upload(Bucket=BUCKET, Key="big.bin")
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        reader.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    assert _code(denied) == "AccessDenied"
    assert [b["Name"] for b in reader.list_buckets()["Buckets"]] == [BUCKET]

    stranger, _ = secured.new_key("stranger")
    with pytest.raises(ClientError) as denied:
        stranger.list_objects_v2(Bucket=BUCKET)
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        stranger.get_object(Bucket=BUCKET, Key="doc.txt")
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:  # cannot tell missing from forbidden
        stranger.head_bucket(Bucket="no-such-bucket")
    assert _status(denied) == 403
    with pytest.raises(ClientError) as denied:
        stranger.create_bucket(Bucket="stranger-bucket")
    assert _code(denied) == "AccessDenied"
    assert stranger.list_buckets()["Buckets"] == []

    writer, writer_id = secured.new_key("writer")
    secured.grant(writer_id, write=True)
    writer.put_object(Bucket=BUCKET, Key="w.txt", Body=b"written")
    with pytest.raises(ClientError) as denied:  # write without read
        writer.get_object(Bucket=BUCKET, Key="w.txt")
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:  # a copy needs read on its source
        writer.copy_object(Bucket=BUCKET, Key="c.txt", CopySource=f"{BUCKET}/doc.txt")
    assert _code(denied) == "AccessDenied"
    writer.delete_object(Bucket=BUCKET, Key="w.txt")

    owner, owner_id = secured.new_key("owner", create=True)
    owner.create_bucket(Bucket="owned")
    assert [b["Name"] for b in owner.list_buckets()["Buckets"]] == ["owned"]
    owner.put_object(Bucket="owned", Key="mine.txt", Body=b"mine")
    assert owner.get_object(Bucket="owned", Key="mine.txt")["Body"].read() == b"mine"
    owner.put_bucket_versioning(Bucket="owned", VersioningConfiguration={"Status": "Enabled"})
    with pytest.raises(ClientError) as exists:
        owner.create_bucket(Bucket="owned")
    assert _code(exists) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as denied:  # another key's bucket
        owner.list_objects_v2(Bucket=BUCKET)
    assert _code(denied) == "AccessDenied"
    with pytest.raises(ClientError) as denied:
        reader.get_object(Bucket="owned", Key="mine.txt")
    assert _code(denied) == "AccessDenied"
    secured.grant(owner_id, read=True)  # now a reader of BUCKET: may copy from it
    owner.copy_object(Bucket="owned", Key="copy.txt", CopySource=f"{BUCKET}/doc.txt")
    assert owner.get_object(Bucket="owned", Key="copy.txt")["Body"].read() == b"shared"

    # the file key sees and reaches every bucket
    names = sorted(b["Name"] for b in admin_s3.list_buckets()["Buckets"])
    assert names == ["granted", "owned"]
    assert admin_s3.get_object(Bucket="owned", Key="mine.txt")["Body"].read() == b"mine"

    # a revoked grant is refused at once
    secured.grant(reader_id, read=False)
    with pytest.raises(ClientError) as denied:
        reader.get_object(Bucket=BUCKET, Key="doc.txt")
    assert _code(denied) == "AccessDenied"
