"""JWTs and share links on 3 real ``dfspeer agent`` processes (127.0.0.151..153, HTTP
31070.., gossip 31946..) started with a cluster key, an admin token and
``--jwt-public-key-file`` / ``jwt_issuer``: a JWT acts as its subject key on every peer
and an expired one is refused, as is one whose key was disabled (at once by the peer the
change went through, by the others within the auth cache's TTL); a share link made
through one peer opens the object with a plain GET (no ``Authorization``) on every peer
until it expires, never for a PUT; the ``dfspeer share`` command prints a URL that works,
and one pinned with ``--version`` serves that version on every peer; no token, secret or
signature reaches an agent's log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dfspeer.access.credentials import ADMIN_TOKEN_ENV, KEY_ENV
from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.localcluster import LocalCluster
from tests.integration._propagation import until_refused
from tests.integration.conftest import start_cluster

ISSUER = "https://idp.test"
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
LEAKS: list[str] = []  # tokens, secrets and link signatures looked for in the agents' logs


@pytest.fixture(scope="module")
def jwt_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    base = tmp_path_factory.mktemp("jwt-share-cluster")
    pem = base / "jwt.pem"
    pem.write_bytes(
        SIGNING_KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    yield from start_cluster(
        base / "cluster",
        host_base=150,
        base_port=31070,
        gossip_base_port=31946,
        settings={
            "map_size_bytes": 256 * 1024 * 1024,
            "log_level": "info",
            "jwt_public_key_file": pem,
            "jwt_issuer": ISSUER,
        },
    )


def make_jwt(sub: str, *, exp_in_s: float = 300.0, iss: str = ISSUER) -> str:
    claims = {"sub": sub, "iss": iss, "exp": int(time.time() + exp_in_s)}
    text = jwt.encode(claims, SIGNING_KEY, algorithm="ES256")
    LEAKS.append(text.rsplit(".", 1)[1])
    return text


def admin(cluster: LocalCluster, index: int = 1) -> Client:
    return Client(cluster.peer(index).url, timeout_s=30.0, token=cluster.admin_token)


async def reader_key(cluster: LocalCluster, bucket: str, data: bytes) -> dict[str, Any]:
    """A new key allowed to read ``bucket`` (created by the admin, holding ``obj``)."""
    async with admin(cluster) as c:
        await c.put_object(bucket, "obj", data)
        key = await c.create_key(f"reader-of-{bucket}")
        await c.set_bucket_permissions(bucket, key["id"], read=True)
    LEAKS.append(key["secret"])
    return key


def plain(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    """One request with urllib and no credential at all: (status, body)."""
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def on_peer(url: str, peer_url: str) -> str:
    """``url`` with its scheme and host:port replaced by ``peer_url``'s."""
    parts, peer = urlsplit(url), urlsplit(peer_url)
    return urlunsplit((peer.scheme, peer.netloc, parts.path, parts.query, ""))


def error_of(body: bytes) -> dict[str, Any]:
    error: dict[str, Any] = json.loads(body)["error"]
    return error


async def test_a_jwt_acts_as_its_key_and_an_expired_one_does_not(
    jwt_cluster: LocalCluster,
) -> None:
    key = await reader_key(jwt_cluster, "jwt-bucket", b"by jwt")
    good = make_jwt(key["id"])
    for i in (1, 2, 3):
        async with Client(jwt_cluster.peer(i).url, timeout_s=30.0, token=good) as c:
            assert await c.get_object("jwt-bucket", "obj") == b"by jwt"
            with pytest.raises(DfsError) as denied:
                await c.put_object("jwt-bucket", "obj", b"overwritten")
            assert denied.value.status == 403 and denied.value.code == "access_denied"
    for bad, why in (
        (make_jwt(key["id"], exp_in_s=-3600), "expired"),
        (make_jwt(key["id"], iss="https://other.test"), "iss"),
        (make_jwt("DK" + "0" * 24), "not an access key"),
    ):
        for i in (1, 2, 3):
            async with Client(jwt_cluster.peer(i).url, timeout_s=30.0, token=bad) as c:
                with pytest.raises(DfsError) as refused:
                    await c.get_object("jwt-bucket", "obj")
                assert refused.value.status == 401 and refused.value.code == "unauthenticated"
                assert why in refused.value.message
    async with admin(jwt_cluster, 2) as c:
        await c.disable_key(key["id"])
        assert await c.get_object("jwt-bucket", "obj") == b"by jwt"
    async with Client(jwt_cluster.peer(2).url, timeout_s=30.0, token=good) as c:
        with pytest.raises(DfsError) as refused:  # the peer it went through: at once
            await c.get_object("jwt-bucket", "obj")
        assert refused.value.status == 401 and "disabled" in refused.value.message
    for i in (1, 3):  # the others: once their cached read of the key expires
        async with Client(jwt_cluster.peer(i).url, timeout_s=30.0, token=good) as c:
            error = await until_refused(lambda: c.get_object("jwt-bucket", "obj"), f"peer {i}")
            assert error.status == 401 and error.code == "unauthenticated"
            assert "disabled" in error.message


async def test_a_share_link_opens_the_object_until_it_expires(jwt_cluster: LocalCluster) -> None:
    key = await reader_key(jwt_cluster, "share-bucket", b"shared bytes")
    credentials = f"{key['id']}.{key['secret']}"
    async with Client(jwt_cluster.peer(1).url, timeout_s=30.0, credentials=credentials) as c:
        url = await c.share_url("share-bucket", "obj", 2)
    LEAKS.append(url.rsplit("signature=", 1)[1])
    expires = int(url.split("expires=")[1].split("&")[0])
    assert urlsplit(url).path == "/v1/objects/share-bucket/obj"
    for peer in jwt_cluster.peers:
        assert plain("GET", on_peer(url, peer.url)) == (200, b"shared bytes")
    status, body = plain("PUT", url, data=b"overwritten")
    assert status == 403 and error_of(body)["reason"] == "method_not_allowed"
    status, body = plain("DELETE", on_peer(url, jwt_cluster.peer(2).url))
    assert status == 403
    tampered = url.replace(f"expires={expires}", f"expires={expires + 3600}")
    status, body = plain("GET", tampered)
    assert status == 401 and error_of(body)["reason"] == "signature_mismatch"
    async with admin(jwt_cluster) as c:
        assert await c.get_object("share-bucket", "obj") == b"shared bytes"
    while time.time() < expires + 1.0:  # the link's own deadline, then one more second
        await asyncio.sleep(0.25)
    for peer in jwt_cluster.peers:
        status, body = plain("GET", on_peer(url, peer.url))
        assert status == 401 and error_of(body)["reason"] == "link_expired"


def test_the_share_command_prints_a_url_that_works(
    jwt_cluster: LocalCluster, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, ADMIN_TOKEN_ENV)}
    env[ADMIN_TOKEN_ENV] = jwt_cluster.admin_token or ""
    source = tmp_path / "cli.txt"
    source.write_bytes(b"from the command line")
    peer = jwt_cluster.peer(2).url
    put = [sys.executable, "-m", "dfspeer", "put", str(source), "cli-bucket/dir/cli.txt"]
    subprocess.run([*put, "--peer", peer], env=env, check=True, capture_output=True)
    share = [sys.executable, "-m", "dfspeer", "share", "cli-bucket/dir/cli.txt"]
    done = subprocess.run(
        [*share, "--expires", "30m", "--peer", peer],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    url = done.stdout.strip()
    LEAKS.append(url.rsplit("signature=", 1)[1])
    assert url.startswith(f"{peer}/v1/objects/cli-bucket/dir/cli.txt?expires=")
    assert "key=admin&signature=" in url and "valid until" in done.stderr
    assert plain("GET", on_peer(url, jwt_cluster.peer(3).url)) == (200, b"from the command line")
    assert plain("PUT", url, data=b"x")[0] == 403
    too_long = subprocess.run(
        [*share, "--expires", "8d", "--peer", peer], env=env, capture_output=True, text=True
    )
    assert too_long.returncode == 2 and "at most 7d" in too_long.stderr


async def test_a_share_command_pinned_to_a_version_serves_it_on_every_peer(
    jwt_cluster: LocalCluster,
) -> None:
    async with admin(jwt_cluster) as c:
        await c.create_bucket("pinned-bucket", versioning="enabled")
        first = (await c.put_object("pinned-bucket", "doc.txt", b"first words"))["version"]
        await c.put_object("pinned-bucket", "doc.txt", b"second words")
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, ADMIN_TOKEN_ENV)}
    env[ADMIN_TOKEN_ENV] = jwt_cluster.admin_token or ""
    share = [sys.executable, "-m", "dfspeer", "share", "pinned-bucket/doc.txt", "--json"]
    done = subprocess.run(
        [*share, "--version", first, "--peer", jwt_cluster.peer(1).url],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    url = json.loads(done.stdout)["url"]
    LEAKS.append(url.rsplit("signature=", 1)[1])
    assert f"version={first}&" in url
    for peer in jwt_cluster.peers:
        assert plain("GET", on_peer(url, peer.url)) == (200, b"first words")
    status, body = plain("GET", url.replace(f"version={first}&", ""))
    assert status == 401 and error_of(body)["reason"] == "signature_mismatch"
    bad = subprocess.run([*share, "--version", ""], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "--version" in bad.stderr


def test_no_token_secret_or_signature_in_any_agent_log(jwt_cluster: LocalCluster) -> None:
    assert len(LEAKS) >= 6, "runs after the tests above"
    for peer in jwt_cluster.peers:
        text = Path(peer.log_path).read_text(errors="replace")
        for leak in LEAKS:
            assert leak not in text
