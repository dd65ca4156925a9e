"""TLS: settings checks, context loading, and one real in-process peer serving its API,
console, peer RPC and S3 port over HTTPS (certificates made here with ``cryptography``)."""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dfspeer import errors, tls
from dfspeer.cli import build_parser, main
from dfspeer.client import Client, PeerUnreachable
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.gossip import Keyring
from dfspeer.loopback import free_port
from dfspeer.peer import Peer
from tests.tls_certs import Pki, make_pki
from tests.unit.test_peer_single import config_for


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ["127.0.0.1"])


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("other-pki"), ["127.0.0.1"], name="stranger")


@pytest.fixture(autouse=True)
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tls.CA_FILE_ENV, raising=False)


# ------------------------------------------------------------------ settings and contexts
def test_cert_and_key_come_together(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="give both"):
        PeerConfig(tls_cert_file=pki.cert_file)
    with pytest.raises(ConfigError, match="give both"):
        PeerConfig(tls_key_file=pki.key_file)
    config = PeerConfig(tls_cert_file=str(pki.cert_file), tls_key_file=str(pki.key_file))
    assert config.tls_cert_file == pki.cert_file and not config.internal_tls
    assert tls.scheme(config) == "https" and tls.scheme(PeerConfig()) == "http"


def test_internal_tls_needs_a_certificate_and_ca_needs_internal_tls(pki: Pki) -> None:
    with pytest.raises(ConfigError, match="internal_tls: needs tls_cert_file"):
        PeerConfig(internal_tls=True)
    with pytest.raises(ConfigError, match="tls_ca_file: only used with internal_tls"):
        PeerConfig(tls_cert_file=pki.cert_file, tls_key_file=pki.key_file, tls_ca_file=pki.ca_file)
    config = PeerConfig.from_sources(
        {"internal_tls": "true", "tls_ca_file": str(pki.ca_file)},
        environ={
            "DFSPEER_TLS_CERT_FILE": str(pki.cert_file),
            "DFSPEER_TLS_KEY_FILE": str(pki.key_file),
        },
    )
    assert config.internal_tls and config.tls_ca_file == pki.ca_file
    assert isinstance(tls.rpc_context(config), type(tls.client_context(None)))
    assert tls.rpc_context(PeerConfig()) is None


def test_agent_flags_reach_the_tls_settings(pki: Pki, tmp_path: Path) -> None:
    from dfspeer.commands.agent import config_from_args

    args = build_parser().parse_args(
        [
            "agent",
            "--tls-cert-file",
            str(pki.cert_file),
            "--tls-key-file",
            str(pki.key_file),
            "--tls-ca-file",
            str(pki.ca_file),
            "--internal-tls",
            "--audit-log",
            str(tmp_path / "audit.log"),
        ]
    )
    config = config_from_args(args, environ={})
    assert config.tls_cert_file == pki.cert_file and config.tls_key_file == pki.key_file
    assert config.tls_ca_file == pki.ca_file and config.internal_tls
    assert config.audit_log_file == tmp_path / "audit.log"


def test_agent_with_half_a_tls_setup_exits_2(pki: Pki, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["agent", "--tls-cert-file", str(pki.cert_file)]) == 2
    err = capsys.readouterr().err
    assert "tls_cert_file, tls_key_file: give both" in err and "Traceback" not in err


def test_server_context_refuses_bad_files_clearly(pki: Pki, other_pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load"):
        tls.server_context(tmp_path / "missing.pem", pki.key_file)
    with pytest.raises(ConfigError, match="cannot load"):  # the key of another certificate
        tls.server_context(pki.cert_file, other_pki.key_file)
    locked = make_pki(tmp_path / "locked", ["127.0.0.1"], key_password=b"hunter2hunter2")
    with pytest.raises(ConfigError, match="encrypted"):  # refused, never prompted for
        tls.server_context(locked.cert_file, locked.key_file)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="tls_cert_file"):
        tls.server_context(garbage, pki.key_file)


def test_client_ca_file_comes_from_argument_then_environment(pki: Pki) -> None:
    assert tls.client_ca_file("a.pem", {tls.CA_FILE_ENV: "b.pem"}) == "a.pem"
    assert tls.client_ca_file(None, {tls.CA_FILE_ENV: "b.pem"}) == "b.pem"
    assert tls.client_ca_file(None, {tls.CA_FILE_ENV: " "}) is None
    with pytest.raises(ConfigError, match="ca_file: cannot load CA certificates"):
        Client("https://127.0.0.1:1", ca_file=pki.ca_file.with_name("nope.pem"))


def test_cli_ca_file_is_global_and_per_command() -> None:
    parser = build_parser()
    assert parser.parse_args(["--ca-file", "g.pem", "ls", "b"]).ca_file == "g.pem"
    assert parser.parse_args(["ls", "b", "--ca-file", "c.pem"]).ca_file == "c.pem"
    assert parser.parse_args(["ls", "b"]).ca_file is None


def test_cli_missing_ca_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--ca-file", "/nonexistent/ca.pem", "ls", "b"]) == 2
    assert "cannot load CA certificates" in capsys.readouterr().err


# ------------------------------------------------------------------ a peer serving TLS
@pytest.fixture
async def tls_peer(tmp_path: Path, pki: Pki) -> AsyncIterator[Peer]:
    config = config_for(
        tmp_path / "p1",
        tls_cert_file=pki.cert_file,
        tls_key_file=pki.key_file,
        internal_tls=True,
        tls_ca_file=pki.ca_file,
        s3_port=free_port("127.0.0.1"),
    )
    async with Peer(config) as running:
        await running.wait_ready(10)
        yield running


async def test_api_console_and_s3_over_https(tls_peer: Peer, pki: Pki) -> None:
    assert tls_peer.api_url.startswith("https://127.0.0.1:")
    assert tls_peer.s3_url is not None and tls_peer.s3_url.startswith("https://")
    data = os.urandom(100_000)
    async with Client(tls_peer.api_url, ca_file=pki.ca_file) as c:
        await c.put_object("secure", "obj.bin", data)
        assert await c.get_object("secure", "obj.bin") == data
    context = tls.client_context(pki.ca_file)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as http:
        async with http.get(f"{tls_peer.api_url}/ui/") as resp:
            assert resp.status == 200 and "html" in resp.content_type
        async with http.get(f"{tls_peer.s3_url}/secure/obj.bin") as resp:
            assert resp.status == 200 and await resp.read() == data


async def test_client_without_the_ca_refuses_the_server(tls_peer: Peer) -> None:
    async with Client(tls_peer.api_url, max_attempts=1) as c:
        with pytest.raises(PeerUnreachable, match="not trusted") as info:
            await c.list_buckets()
    assert "--ca-file" in info.value.message


async def test_client_with_another_ca_refuses_the_server(tls_peer: Peer, other_pki: Pki) -> None:
    async with Client(tls_peer.api_url, ca_file=other_pki.ca_file) as c:
        with pytest.raises(PeerUnreachable, match="not trusted"):
            await c.list_buckets()


async def test_plain_http_to_the_tls_port_fails_cleanly(tls_peer: Peer, pki: Pki) -> None:
    plain = tls_peer.api_url.replace("https://", "http://")
    async with Client(plain, max_attempts=1) as c:
        with pytest.raises(PeerUnreachable, match="use an https:// URL"):
            await c.list_buckets()
    async with aiohttp.ClientSession() as http:  # any plain client: no answer, no hang
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{plain}/health") as resp:
                await resp.read()
    async with Client(tls_peer.api_url, ca_file=pki.ca_file) as c:  # the peer still serves
        assert await c.list_buckets() == []


async def test_peer_rpc_verifies_the_peer_certificate(
    tls_peer: Peer, pki: Pki, other_pki: Pki
) -> None:
    keyring = tls_peer.keyring
    assert isinstance(keyring, Keyring)
    address = tls_peer.api_address
    trusting = PeerRpcClient(keyring, "tester", timeout_s=5.0, tls=tls.client_context(pki.ca_file))
    stranger = PeerRpcClient(
        keyring, "tester", timeout_s=5.0, tls=tls.client_context(other_pki.ca_file)
    )
    plain = PeerRpcClient(keyring, "tester", timeout_s=5.0)
    try:
        assert (await trusting.status(address))["id"] == tls_peer.peer_id
        with pytest.raises(errors.PeerUnreachable, match="certificate verify failed"):
            await stranger.status(address)
        with pytest.raises(errors.PeerUnreachable, match="ServerDisconnectedError"):
            await plain.status(address)
    finally:
        for client in (trusting, stranger, plain):
            await client.close()


def test_tls_without_internal_tls_encrypts_peer_rpc_unverified(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = PeerConfig(tls_cert_file=pki.cert_file, tls_key_file=pki.key_file)
    with caplog.at_level("WARNING", logger="dfspeer.tls"):
        context = tls.rpc_context(config)
    assert context is not None and not context.check_hostname
    assert context.verify_mode == ssl.CERT_NONE
    assert "not verified" in caplog.text
    verifying = tls.rpc_context(config.replace(internal_tls=True))
    assert verifying is not None and verifying.check_hostname
    assert verifying.verify_mode == ssl.CERT_REQUIRED
