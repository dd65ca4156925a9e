"""Fixtures for the data-path integration tests: real ``dfspeer agent`` processes.

Each cluster is module-scoped (started once per test module) and uses its own loopback
addresses and port ranges so it never clashes with the gossip tests (127.0.0.11..15,
ports 17946+):

- ``data_cluster``:    127.0.0.21..23, HTTP 19070.., gossip 19946.., 256 KiB chunks
- ``failure_cluster``: 127.0.0.24..26, HTTP 19080.., gossip 19956.., default chunk size,
  short gossip timers so a SIGKILLed agent is declared dead within a few seconds.

Agents run in their own process groups and are always stopped (SIGTERM, then SIGKILL)
in the fixture's finalizer; they also die with the test process (PR_SET_PDEATHSIG).

Every cluster started here shares one admin token (:data:`ADMIN_TOKEN_FILE`, made per
session), which is also ``$DFSPEER_ADMIN_TOKEN`` for the session, so ``dfspeer.Client(url)``
and ``dfspeer.client.auth_headers()`` authenticate as the admin; ``cluster.admin_token`` and
``cluster.headers`` give it explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dfspeer.access.credentials import (
    ADMIN_TOKEN_ENV,
    load_admin_token,
    new_admin_token,
    write_secret_file,
)
from dfspeer.demo_corpus import build_big_file
from dfspeer.localcluster import LocalCluster, LocalClusterError, busy_ports, host_bindable

DATA_CHUNK_BYTES = 256 * 1024
DATA_SETTINGS: dict[str, object] = {
    "chunk_size_bytes": DATA_CHUNK_BYTES,
    "default_chunking": "fixed",  # the data-path tests count fixed-size chunks
    "map_size_bytes": 1024 * 1024 * 1024,
    "log_level": "info",
}
FAILURE_SETTINGS: dict[str, object] = {
    "default_chunking": "fixed",  # the failure tests count fixed-size chunks
    "map_size_bytes": 1024 * 1024 * 1024,
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "suspicion_max_timeout_mult": 2,
    "push_pull_interval_s": 5.0,
    "request_timeout_s": 10.0,
    "log_level": "info",
}
START_TIMEOUT_S = 60.0
ADMIN_TOKEN_FILE: Path | None = None
"""The session's admin token file (set by :func:`admin_token_file`)."""


@pytest.fixture(scope="session")
def admin_token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One admin token file for every cluster of the session."""
    global ADMIN_TOKEN_FILE
    path = tmp_path_factory.mktemp("access") / "admin.token"
    write_secret_file(path, new_admin_token())
    ADMIN_TOKEN_FILE = path
    return path


@pytest.fixture(scope="module", autouse=True)
def admin_token_env(admin_token_file: Path) -> Iterator[str]:
    """``$DFSPEER_ADMIN_TOKEN`` = the session's token while an integration module runs."""
    token = load_admin_token(admin_token_file)
    before = os.environ.get(ADMIN_TOKEN_ENV)
    os.environ[ADMIN_TOKEN_ENV] = token
    try:
        yield token
    finally:
        if before is None:
            os.environ.pop(ADMIN_TOKEN_ENV, None)
        else:
            os.environ[ADMIN_TOKEN_ENV] = before


def start_cluster(
    base_dir: Path,
    *,
    host_base: int,
    base_port: int,
    gossip_base_port: int,
    settings: dict[str, object],
    peers: int = 3,
    ca_file: Path | None = None,
) -> Iterator[LocalCluster]:
    """Start ``peers`` agents, wait until all are ready and see each other, yield, stop.
    ``ca_file``: the CA the cluster's own polling verifies TLS agents with."""
    hosts = [f"127.0.0.{host_base + i}" for i in range(1, peers + 1)]
    unbindable = [h for h in hosts if not host_bindable(h)]
    if unbindable:
        pytest.skip(f"cannot bind loopback addresses {unbindable} (needs 127.0.0.0/8 on lo)")
    for i, host in enumerate(hosts):
        if busy_ports(host, [base_port + i, gossip_base_port + i]):
            pytest.skip(f"ports {base_port + i}/{gossip_base_port + i} on {host} are taken")
    cluster = LocalCluster(
        base_dir,
        peers,
        base_port=base_port,
        gossip_base_port=gossip_base_port,
        host_base=host_base,
        settings=settings,
        admin_token_file=ADMIN_TOKEN_FILE,
        ca_file=ca_file,
    )
    try:
        cluster.start()
        cluster.wait_ready(START_TIMEOUT_S)
        cluster.wait_view(range(1, peers + 1), timeout_s=START_TIMEOUT_S)
    except LocalClusterError:
        cluster.stop(timeout_s=5.0)
        raise
    try:
        yield cluster
    finally:
        cluster.stop(timeout_s=5.0)


def start_s3_cluster(
    base_dir: Path,
    *,
    access_key: str,
    secret: str,
    host_base: int,
    base_port: int,
    gossip_base_port: int,
    map_size_bytes: int,
) -> Iterator[LocalCluster]:
    """:func:`start_cluster` whose agents accept S3 requests signed with ``access_key`` /
    ``secret`` (an ``s3_credentials_file`` written under ``base_dir``)."""
    creds = base_dir / "s3.credentials"
    creds.write_text(f"{access_key}:{secret}\n")
    creds.chmod(0o600)
    yield from start_cluster(
        base_dir / "cluster",
        host_base=host_base,
        base_port=base_port,
        gossip_base_port=gossip_base_port,
        settings={
            "map_size_bytes": map_size_bytes,
            "log_level": "info",
            "s3_credentials_file": creds,
        },
    )


@pytest.fixture(scope="module")
def data_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three agents with 256 KiB chunks (N=3, W=2, R=2)."""
    yield from start_cluster(
        tmp_path_factory.mktemp("data-cluster"),
        host_base=20,
        base_port=19070,
        gossip_base_port=19946,
        settings=DATA_SETTINGS,
    )


@pytest.fixture(scope="module")
def failure_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three agents at the default chunk size with fast failure detection."""
    yield from start_cluster(
        tmp_path_factory.mktemp("failure-cluster"),
        host_base=23,
        base_port=19080,
        gossip_base_port=19956,
        settings=FAILURE_SETTINGS,
    )


@pytest.fixture(scope="module")
def machine_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~50 MB file concatenated from this machine's own large files."""
    path = tmp_path_factory.mktemp("corpus") / "machine.bin"
    build_big_file(path, 50 * 1000 * 1000 + 12345)
    return path
