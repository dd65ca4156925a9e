"""``--log-format``: text by default, JSON lines carrying the id of the request being served."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.api.app import build_app
from dfspeer.commands import agent
from dfspeer.config import PeerConfig
from dfspeer.logsetup import (
    TEXT_FORMAT,
    JsonFormatter,
    configure_logging,
    current_request_id,
    make_formatter,
)
from tests.unit.api_fakes import FakeObjects, FakeState


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("dfspeer.test", logging.WARNING, __file__, 1, msg, args, exc_info)


def test_json_line_has_every_key() -> None:
    line = JsonFormatter().format(record("hello %s\nsecond line", "world"))
    assert "\n" not in line
    entry = json.loads(line)
    assert set(entry) == {"time", "level", "logger", "message", "request_id", "trace_id"}
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "dfspeer.test"
    assert entry["message"] == "hello world\nsecond line"
    assert entry["request_id"] is None
    assert entry["trace_id"] is None
    assert entry["time"].endswith("Z") and "T" in entry["time"]


def test_json_line_takes_the_request_id_from_the_context() -> None:
    token = current_request_id.set("req-7")
    try:
        entry = json.loads(JsonFormatter().format(record("x")))
    finally:
        current_request_id.reset(token)
    assert entry["request_id"] == "req-7"


def test_json_line_carries_the_traceback() -> None:
    entry = json.loads(JsonFormatter().format(record("failed", exc=True)))
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["exception"].startswith("Traceback")


def test_text_stays_the_default_format() -> None:
    assert PeerConfig().log_format == "text"
    formatter = make_formatter("text")
    assert not isinstance(formatter, JsonFormatter)
    assert formatter._fmt == TEXT_FORMAT
    with pytest.raises(ValueError, match="log format"):
        make_formatter("xml")


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest's capture included), restored afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield root
    finally:
        root.handlers = saved
        root.setLevel(level)


def test_configure_logging_installs_one_json_handler() -> None:
    out = io.StringIO()
    with bare_root() as root:
        handler = configure_logging("warning", "json", stream=out)
        assert root.handlers == [handler]
        assert root.level == logging.WARNING
        logging.getLogger("dfspeer.x").warning("disk %d%% full", 90)
        logging.getLogger("dfspeer.x").info("not shown")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["message"] == "disk 90% full"


def test_agent_flag_sets_the_format() -> None:
    parser = argparse.ArgumentParser()
    agent.register(parser.add_subparsers())
    args = parser.parse_args(["agent", "--log-format", "json", "--insecure"])
    assert agent.config_from_args(args, environ={}).log_format == "json"
    args = parser.parse_args(["agent", "--insecure"])
    assert agent.config_from_args(args, environ={"DFSPEER_LOG_FORMAT": "json"}).log_format == (
        "json"
    )
    assert agent.config_from_args(args, environ={}).log_format == "text"


async def test_log_line_of_a_request_carries_its_request_id() -> None:
    """A record made while serving a request (the error middleware's) has that request's id."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    api_log = logging.getLogger("dfspeer.api")
    saved_level = api_log.level
    api_log.addHandler(handler)
    api_log.setLevel(logging.DEBUG)  # 4xx errors are logged at debug
    try:
        app = build_app(FakeObjects(), FakeState(), PeerConfig(), registry=CollectorRegistry())
        async with TestClient(TestServer(app)) as client:
            mine = await client.put("/v1/objects/b/k", data=b"x", headers={"X-Request-Id": "r-1"})
            fresh = await client.put("/v1/objects/b/k", data=b"x")
    finally:
        api_log.removeHandler(handler)
        api_log.setLevel(saved_level)
    assert mine.status == fresh.status == 400  # "b": invalid bucket name
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    failures = [e for e in entries if e["message"].startswith("request failed")]
    assert [e["request_id"] for e in failures] == ["r-1", fresh.headers["X-Request-Id"]]
    assert all(e["logger"] == "dfspeer.api" and e["level"] == "DEBUG" for e in failures)
