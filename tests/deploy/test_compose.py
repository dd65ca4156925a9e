"""docker-compose.yml for real: build the image, start 3 peers + Prometheus + Grafana, write
and read an object through peer1, stop peer2, read again, and check Prometheus scrapes every
peer. Skips (the whole module) where no Docker engine answers ``docker info``."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest


def _docker_engine_problem() -> str | None:
    """Why no Docker engine can run the compose cluster here, or None if one answers."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`docker info` failed: {exc}"
    if probe.returncode != 0:
        last = (probe.stderr.strip() or probe.stdout.strip()).splitlines()[-1:]
        return f"no Docker engine answers `docker info`: {' '.join(last) or 'no output'}"
    return None


_PROBLEM = _docker_engine_problem()
if _PROBLEM is not None:
    pytest.skip(_PROBLEM, allow_module_level=True)

from testcontainers.compose import DockerCompose  # noqa: E402  (only with an engine)

from dfspeer.access.credentials import new_admin_token, write_secret_file  # noqa: E402
from dfspeer.commands.agent import write_key_file  # noqa: E402
from dfspeer.gossip import generate_key  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
PEERS = ("peer1", "peer2", "peer3")
OBJECT_URL_PATH = "/v1/objects/deploy-test/hello.bin"
PAYLOAD = bytes(range(256)) * 4096 + b"tail"  # 1 MiB + 4 bytes
DEADLINE_S = 120.0
T = TypeVar("T")


def poll(what: str, attempt: Callable[[], T | None], timeout_s: float = DEADLINE_S) -> T:
    """Call ``attempt`` until it returns a value (not None); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = attempt()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error, value = exc, None
        if value is not None:
            return value
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what} (last error: {last_error})")


ADMIN_TOKEN = new_admin_token()


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One HTTP request as the admin; returns (status, body) for any status."""
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCompose]:
    """The compose cluster with a throwaway cluster key; torn down with its volumes."""
    secrets = tmp_path_factory.mktemp("secrets")
    key_file = secrets / "cluster.key"
    write_key_file(key_file, generate_key())
    key_file.chmod(0o644)  # read through the secret bind mount by the image's uid 10001
    token_file = secrets / "admin.token"
    write_secret_file(token_file, ADMIN_TOKEN)
    token_file.chmod(0o644)
    env_file = secrets / "compose.env"
    env_file.write_text(
        f"DFSPEER_CLUSTER_KEY_FILE_HOST={key_file}\nDFSPEER_ADMIN_TOKEN_FILE_HOST={token_file}\n"
    )
    compose = DockerCompose(
        REPO,
        compose_file_name="docker-compose.yml",
        build=True,
        wait=True,  # every peer's HEALTHCHECK (GET /ready) passes
        env_file=str(env_file),
    )
    with compose:
        yield compose


def base_url(compose: DockerCompose, service: str, port: int) -> str:
    host, mapped = compose.get_service_host_and_port(service, port)
    return f"http://{host or '127.0.0.1'}:{mapped}"


def test_object_survives_a_stopped_peer_and_prometheus_sees_every_peer(
    cluster: DockerCompose,
) -> None:
    api = base_url(cluster, "peer1", 7070)
    prometheus = base_url(cluster, "prometheus", 9090)

    def members_alive() -> bool | None:
        status, body = http("GET", api + "/v1/cluster/members")
        states = [m["state"] for m in json.loads(body)["members"]] if status == 200 else []
        return True if states.count("alive") == len(PEERS) else None

    poll("3 alive members in peer1's view", members_alive)

    status, body = http("PUT", api + OBJECT_URL_PATH, PAYLOAD)
    assert status == 201, body
    assert json.loads(body)["size"] == len(PAYLOAD)
    status, body = http("GET", api + OBJECT_URL_PATH)
    assert (status, body) == (200, PAYLOAD)

    def targets_up() -> list[dict[str, Any]] | None:
        status, body = http("GET", prometheus + "/api/v1/targets")
        active = json.loads(body)["data"]["activeTargets"] if status == 200 else []
        peers = [t for t in active if t["labels"].get("job") == "dfspeer"]
        up = {t["labels"]["instance"] for t in peers if t["health"] == "up"}
        return peers if up == {f"{p}:7070" for p in PEERS} else None

    targets = poll("Prometheus scraping every peer", targets_up)
    assert all(t["scrapeUrl"].endswith("/metrics") for t in targets)

    peer2 = cluster.get_container("peer2")
    subprocess.run(["docker", "stop", "--time", "30", peer2.ID], check=True, timeout=90)

    def read_back() -> bytes | None:
        status, body = http("GET", api + OBJECT_URL_PATH)
        return body if status == 200 else None

    assert poll("the object through peer1 with peer2 stopped", read_back) == PAYLOAD
