"""The S3 port's request metrics (dfspeer.api.s3.metrics), driven by real boto3 and urllib
against a real in-process Peer and read back from the peer's own ``GET /metrics``."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.s3_harness import PeerThread, keyed_peer, send, signed


@pytest.fixture
def node(tmp_path: Path) -> Iterator[PeerThread]:
    running = keyed_peer(tmp_path)
    yield running
    running.close()


def scrape(node: PeerThread) -> dict[tuple[str, str, str], float]:
    """``{(sample name, operation, status): value}`` of the ``dfspeer_s3_*`` samples in the
    peer's native ``GET /metrics`` (``""`` for a label a sample does not have)."""
    with urllib.request.urlopen(node.peer.api_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    samples: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("dfspeer_s3_") and "le" not in s.labels:
                labels = s.labels.get("operation", ""), s.labels.get("status", "")
                samples[(s.name, *labels)] = s.value
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
    assert got[("dfspeer_s3_object_bytes_received_total", "", "")] == 1001
    assert got[("dfspeer_s3_object_bytes_sent_total", "", "")] == 1000  # HEAD sends none


def test_payload_bytes_count_streamed_bodies_and_multipart_parts(node: PeerThread) -> None:
    s3 = node.client()
    s3.create_bucket(Bucket="met")
    big = os.urandom(3 * 1024 * 1024 + 5)  # streamed both ways, not read whole
    s3.put_object(Bucket="met", Key="big", Body=big)
    upload = s3.create_multipart_upload(Bucket="met", Key="mp")["UploadId"]
    parts = []
    for n, body in ((1, os.urandom(5 * 1024 * 1024)), (2, b"tail")):
        etag = s3.upload_part(Bucket="met", Key="mp", UploadId=upload, PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(
        Bucket="met", Key="mp", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert s3.get_object(Bucket="met", Key="big")["Body"].read() == big
    got = scrape(node)
    assert got[("dfspeer_s3_object_bytes_received_total", "", "")] == len(big) + 5 * 2**20 + 4
    assert got[("dfspeer_s3_object_bytes_sent_total", "", "")] == len(big)
    assert got[("dfspeer_s3_requests_total", "upload_part", "200")] == 2
