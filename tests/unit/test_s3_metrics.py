"""The S3 port's request metrics (dfspeer.api.s3.metrics), driven by real boto3 and urllib
against a real in-process Peer and read back from the peer's own ``GET /metrics``."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.s3_harness import AK, SK, PeerThread, send, signed


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PeerThread]:
    creds = tmp_path / "s3.credentials"
    creds.write_text(f"{AK}:{SK}\n")
    running = PeerThread(tmp_path / "p", s3_credentials_file=creds)
    yield running
    running.close()


def scrape(node: PeerThread) -> dict[tuple[str, str, str], float]:
    """``{(sample name, operation, status): value}`` of the ``dfspeer_s3_*`` samples in the
    peer's native ``GET /metrics``."""
    with urllib.request.urlopen(node.peer.api_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("dfspeer_s3_") and "le" not in s.labels:
                samples[(s.name, s.labels["operation"], s.labels["status"])] = s.value
    return samples


def test_requests_are_counted_and_timed_by_operation_and_status(node: PeerThread) -> None:
    s3 = node.client()
    s3.create_bucket(Bucket="met")
    s3.put_object(Bucket="met", Key="k", Body=b"x" * 1000)
    s3.put_object(Bucket="met", Key="k2", Body=b"y")
    assert s3.get_object(Bucket="met", Key="k")["Body"].read() == b"x" * 1000
    with pytest.raises(ClientError):
        s3.head_object(Bucket="met", Key="missing")
    with pytest.raises(ClientError) as denied:
        node.client(secret="wrong").get_object(Bucket="met", Key="k")
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    status, _, _ = send(signed("GET", node.s3_url + "/met/k?tagging"))
    assert status == 501

    got = scrape(node)
    count = "dfspeer_s3_requests_total"
    assert got[(count, "create_bucket", "200")] == 1
    assert got[(count, "put_object", "200")] == 2
    assert got[(count, "get_object", "200")] == 1
    assert got[(count, "head_object", "404")] == 1
    assert got[(count, "get_object", "403")] == 1  # refused before it ran: still named
    assert got[(count, "unknown", "501")] == 1  # a sub-resource this server does not have
    timed = "dfspeer_s3_request_duration_seconds_count"
    assert got[(timed, "put_object", "200")] == 2
    assert got[("dfspeer_s3_request_duration_seconds_sum", "put_object", "200")] > 0
    assert sum(v for (name, _, _), v in got.items() if name == count) == 7
