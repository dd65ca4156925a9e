"""TLS on 3 real ``dfspeer agent`` processes (127.0.0.141..143, HTTPS 29070.., gossip
29946..), with ``internal_tls``: the CLI uploads through one peer with ``--ca-file`` and
downloads through the others (every chunk crossed peer RPC over verified https), a client
without the CA refuses the peers, plain HTTP to a TLS port fails cleanly, and the AWS CLI
copies through the S3 ports (HTTPS 7080..) with ``--ca-bundle``. The agents
also run the auth cache (``auth_cache_ttl_s = 1``): a disabled key is refused by every
peer once the cached read expires."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dfspeer.cli import main
from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.localcluster import LocalCluster, http_get_json
from dfspeer.tls import CA_FILE_ENV, client_context
from tests.integration.conftest import start_cluster
from tests.tls_certs import Pki, make_pki

HOST_BASE = 140
CHUNK = 256 * 1024
AUTH_CACHE_TTL_S = 1.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ips = [f"127.0.0.{HOST_BASE + i}" for i in (1, 2, 3)]
    return make_pki(tmp_path_factory.mktemp("tls-pki"), ips)


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("tls-cluster"),
        host_base=HOST_BASE,
        base_port=29070,
        gossip_base_port=29946,
        settings={
            "map_size_bytes": 256 * 1024 * 1024,
            "chunk_size_bytes": CHUNK,
            "default_chunking": "fixed",
            "log_level": "info",
            "tls_cert_file": pki.cert_file,
            "tls_key_file": pki.key_file,
            "internal_tls": True,
            "tls_ca_file": pki.ca_file,
            "auth_cache_ttl_s": AUTH_CACHE_TTL_S,
        },
        ca_file=pki.ca_file,
    )


@pytest.fixture(autouse=True)
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CA_FILE_ENV, raising=False)


def _rpc_ok_calls(cluster: LocalCluster, index: int, ca_file: Path) -> float:
    """Peer ``index``'s successful peer RPC calls so far (its ``/metrics``)."""
    context = client_context(ca_file)
    url = cluster.peer(index).url + "/metrics"
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(url, timeout=10) as resp:
        text = resp.read().decode()
    pattern = re.compile(r'^dfspeer_rpc_duration_seconds_count\{.*outcome="ok".*\} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


def test_cli_upload_and_download_over_tls_with_internal_tls(
    tls_cluster: LocalCluster,
    pki: Pki,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert all(p.url.startswith("https://") for p in tls_cluster.peers)
    source = tmp_path / "secret-plans.bin"
    source.write_bytes(os.urandom(5 * CHUNK + 1234))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    first, second, third = (p.url for p in tls_cluster.peers)
    args = ["--ca-file", str(pki.ca_file), "put", str(source), "tls/plans.bin", "--peer", first]
    assert main(args) == 0, capsys.readouterr().err
    copy = tmp_path / "copy-2.bin"
    get = ["get", "tls/plans.bin", "-o", str(copy), "--peer", second, "--ca-file"]
    assert main([*get, str(pki.ca_file)]) == 0, capsys.readouterr().err
    assert hashlib.sha256(copy.read_bytes()).hexdigest() == digest
    monkeypatch.setenv(CA_FILE_ENV, str(pki.ca_file))  # the variable works as the flag
    copy3 = tmp_path / "copy-3.bin"
    assert main(["get", "tls/plans.bin", "-o", str(copy3), "--peer", third]) == 0
    assert copy3.read_bytes() == source.read_bytes()
    assert main(["members", "--peer", third]) == 0
    assert capsys.readouterr().out.count("alive") == 3
    # the chunks went to the replicas through peer RPC, which only speaks https here
    assert sum(_rpc_ok_calls(tls_cluster, i, pki.ca_file) for i in (1, 2, 3)) > 0


def test_a_client_without_the_ca_refuses_the_peer(
    tls_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["ls", "tls", "--peer", tls_cluster.peer(1).url]) == 1
    err = capsys.readouterr().err
    assert "TLS certificate is not trusted" in err and "--ca-file" in err
    assert "Traceback" not in err


def test_plain_http_to_a_tls_port_fails_cleanly(
    tls_cluster: LocalCluster, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tls_cluster.peer(2).url.replace("https://", "http://")
    assert main(["ls", "tls", "--peer", plain, "--ca-file", str(pki.ca_file)]) == 1
    err = capsys.readouterr().err
    assert "use an https:// URL" in err and "Traceback" not in err
    with pytest.raises(OSError):
        http_get_json(plain + "/health", timeout_s=5.0)
    status, doc = http_get_json(
        tls_cluster.peer(2).url + "/health", context=client_context(pki.ca_file)
    )
    assert status == 200 and doc is not None


async def test_a_disabled_key_is_refused_by_every_peer_once_the_cache_expires(
    tls_cluster: LocalCluster, pki: Pki
) -> None:
    async with Client(
        tls_cluster.peer(1).url, token=tls_cluster.admin_token, ca_file=pki.ca_file
    ) as c:
        doc = await c.create_key("cached")
    credentials = f"{doc['id']}.{doc['secret']}"
    clients = [
        Client(p.url, credentials=credentials, ca_file=pki.ca_file, max_attempts=1)
        for p in tls_cluster.peers
    ]
    try:
        for c in clients:
            assert await c.list_buckets() == []  # each peer now holds the key in its cache
        async with Client(
            tls_cluster.peer(2).url, token=tls_cluster.admin_token, ca_file=pki.ca_file
        ) as admin:
            await admin.disable_key(doc["id"])
        with pytest.raises(DfsError) as refused:  # the peer it went through: at once
            await clients[1].list_buckets()
        assert refused.value.status == 401
        for c in clients:  # the others: once their cached read is older than the TTL
            await _until_refused(c, deadline_s=20 * AUTH_CACHE_TTL_S)
    finally:
        for c in clients:
            await c.close()


async def _until_refused(client: Client, *, deadline_s: float) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    while True:
        try:
            await client.list_buckets()
        except DfsError as exc:
            assert exc.status == 401 and "disabled" in exc.message
            return
        assert loop.time() < give_up, f"{client.base_url} still accepts a disabled key"
        await asyncio.sleep(0.1)


def test_the_aws_cli_over_the_tls_s3_port(
    tls_cluster: LocalCluster, pki: Pki, tmp_path: Path
) -> None:
    if importlib.util.find_spec("awscli") is None:
        pytest.fail("the AWS CLI (awscli) is not installed: pip install -e '.[test]'")
    doc = asyncio.run(_new_key(tls_cluster, pki))
    config = tmp_path / "aws.config"
    config.write_text("[default]\nregion = us-east-1\ns3 =\n    addressing_style = path\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": doc["id"],
        "AWS_SECRET_ACCESS_KEY": doc["secret"],
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "absent"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    source = tmp_path / "s3.bin"
    source.write_bytes(os.urandom(300_000))

    def aws(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "awscli", "--endpoint-url", endpoint, *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    first, third = tls_cluster.peer(1).s3_url, tls_cluster.peer(3).s3_url
    assert first is not None and first.startswith("https://") and third is not None
    bundle = ("--ca-bundle", str(pki.ca_file))
    assert aws(first, *bundle, "s3", "mb", "s3://tls-s3").returncode == 0
    done = aws(first, *bundle, "s3", "cp", str(source), "s3://tls-s3/s3.bin")
    assert done.returncode == 0, done.stderr
    copy = tmp_path / "s3-copy.bin"
    done = aws(third, *bundle, "s3", "cp", "s3://tls-s3/s3.bin", str(copy))
    assert done.returncode == 0, done.stderr
    assert copy.read_bytes() == source.read_bytes()
    refused = aws(third, "s3", "ls", "s3://tls-s3")  # the system's CAs do not know ours
    assert refused.returncode != 0 and "SSL" in refused.stderr


async def _new_key(cluster: LocalCluster, pki: Pki) -> dict[str, Any]:
    async with Client(cluster.peer(1).url, token=cluster.admin_token, ca_file=pki.ca_file) as c:
        return await c.create_key("aws", allow_create_bucket=True)
