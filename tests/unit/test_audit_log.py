"""The audit log: one JSON line per mutating or refused request, on the native API (the
``Expect: 100-continue`` refusal and a write through a share link too) and the S3 port
(header-signed, presigned, bad signature), never a secret (keys' secrets, the admin token,
SigV4 and share-link signatures are looked for in the file); rotation at the size limit;
the refusal rules on a bare app (429, 503 ``overloaded``, a 503 that is not a refusal)."""

from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dfspeer.access.audit import AuditLog, Target, audit_entry, rfc3339
from dfspeer.access.credentials import new_admin_token, write_secret_file
from dfspeer.access.middleware import PRINCIPAL_KEY
from dfspeer.access.principals import ADMIN
from dfspeer.api.middleware import error_middleware
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import DataUnavailable, Overloaded, SlowDown
from dfspeer.gossip.keyring import generate_key
from tests.unit.s3_harness import AK, SK, PeerThread, send, signed

FIELDS = {
    "time",
    "api",
    "request_id",
    "principal",
    "remote",
    "action",
    "operation",
    "method",
    "path",
    "query",
    "bucket",
    "key",
    "status",
    "result",
    "code",
    "bytes",
}
RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
BODY = b"a" * 4096


@dataclass
class Scenario:
    """What the module's peer was asked, the secrets used, and the audit lines written."""

    lines: list[dict[str, Any]] = field(default_factory=list)
    raw: str = ""
    secrets: list[str] = field(default_factory=list)
    key_id: str = ""
    stranger_id: str = ""
    request_ids: dict[str, str] = field(default_factory=dict)


def _call(
    url: str, method: str, *, token: str | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _expect_continue_put(url: str, token: str) -> int:
    """A PUT that sends only its headers with ``Expect: 100-continue``: the status."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.putrequest("PUT", parts.path)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", str(len(BODY)))
        conn.putheader("Expect", "100-continue")
        conn.endheaders()
        return conn.getresponse().status
    finally:
        conn.close()


def _run_scenario(node: PeerThread, token: str, scenario: Scenario) -> None:
    api = node.peer.api_url
    obj = f"{api}/v1/objects/audited/a.txt"
    status, _, body = _call(
        f"{api}/v1/keys",
        "POST",
        token=token,
        body=json.dumps({"name": "writer", "allow_create_bucket": True}).encode(),
    )
    assert status == 201
    key = json.loads(body)
    status, _, body = _call(f"{api}/v1/keys", "POST", token=token, body=b'{"name": "stranger"}')
    stranger = json.loads(body)
    scenario.key_id, scenario.stranger_id = key["id"], stranger["id"]
    writer = f"{key['id']}.{key['secret']}"
    other = f"{stranger['id']}.{stranger['secret']}"
    scenario.secrets += [key["secret"], stranger["secret"], token, SK, writer, other]
    status, headers, _ = _call(obj + "?version=ignored", "PUT", token=writer, body=BODY)
    assert status == 201
    scenario.request_ids["put"] = headers["X-Request-Id"]
    assert _call(obj, "GET", token=writer)[0] == 200  # a read: not audited
    assert _call(obj, "GET")[0] == 401
    wrong = f"{key['id']}.{'x' * 43}"
    assert _call(obj, "PUT", token=wrong, body=BODY)[0] == 401
    assert _expect_continue_put(obj, other) == 403
    assert _call(obj, "GET", token=other)[0] == 403
    # S3: a key of the keys table (header-signed), a presigned PUT, a bad signature
    s3 = node.client(key["id"], key["secret"])
    s3.put_object(Bucket="audited", Key="s3.txt", Body=BODY)
    url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": "audited", "Key": "pre.txt"}, ExpiresIn=300
    )
    scenario.secrets.append(re.search(r"X-Amz-Signature=([0-9a-f]+)", url).group(1))  # type: ignore[union-attr]
    assert _call(url, "PUT", body=BODY)[0] == 200
    bad = signed("PUT", f"{node.s3_url}/audited/bad.txt", body=BODY, secret=SK[::-1])
    scenario.secrets.append(str(bad.headers["Authorization"]).rsplit("Signature=", 1)[1])
    assert send(bad)[0] == 403
    good = signed("PUT", f"{node.s3_url}/audited/admin.txt", body=BODY, key=AK, secret=SK)
    scenario.secrets.append(str(good.headers["Authorization"]).rsplit("Signature=", 1)[1])
    assert send(good)[0] == 200
    # a share link: reading it is not recorded, writing through it is refused and recorded
    status, _, body = _call(
        f"{api}/v1/share",
        "POST",
        token=writer,
        body=json.dumps({"bucket": "audited", "key": "a.txt", "expires_s": 300}).encode(),
    )
    assert status == 200
    link = json.loads(body)["url"]
    scenario.secrets.append(re.search(r"signature=([0-9a-f]+)", link).group(1))  # type: ignore[union-attr]
    assert _call(link, "GET")[0] == 200
    assert _call(link, "PUT", body=BODY)[0] == 403
    assert _call(obj, "DELETE", token=writer)[0] == 204


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    root = tmp_path_factory.mktemp("audit")
    token = new_admin_token()
    write_secret_file(root / "admin.token", token)
    write_secret_file(root / "cluster.key", generate_key() + "\n")
    creds = root / "s3.credentials"
    creds.write_text(f"{AK}:{SK}\n")
    audit_file = root / "audit.log"
    node = PeerThread(
        root / "p1",
        insecure=False,
        admin_token_file=root / "admin.token",
        cluster_key_file=root / "cluster.key",
        s3_credentials_file=creds,
        audit_log_file=audit_file,
    )
    result = Scenario()
    try:
        _run_scenario(node, token, result)
    finally:
        node.close()  # the peer's stop writes every queued line
    result.raw = audit_file.read_text(encoding="utf-8")
    result.lines = [json.loads(line) for line in result.raw.splitlines()]
    return result


def _find(lines: list[dict[str, Any]], **want: Any) -> list[dict[str, Any]]:
    return [e for e in lines if all(e.get(k) == v for k, v in want.items())]


def test_every_line_is_json_with_every_field(scenario: Scenario) -> None:
    assert scenario.lines
    for entry in scenario.lines:
        assert set(entry) == FIELDS, entry
        assert RFC3339_UTC.fullmatch(entry["time"]), entry["time"]
        assert entry["api"] in ("native", "s3") and entry["request_id"]
        assert entry["result"] in ("ok", "refused", "error")


def test_mutating_requests_are_recorded_with_principal_target_and_bytes(
    scenario: Scenario,
) -> None:
    (put,) = _find(scenario.lines, api="native", method="PUT", status=201)
    assert put["principal"] == scenario.key_id and put["action"] == "write"
    assert put["operation"] == "PUT /v1/objects/{bucket}/{key}"
    assert (put["bucket"], put["key"], put["bytes"]) == ("audited", "a.txt", len(BODY))
    assert put["request_id"] == scenario.request_ids["put"]
    assert put["query"] == {"version": "ignored"} and put["result"] == "ok"
    assert put["code"] is None and put["remote"] == "127.0.0.1"
    keys = _find(scenario.lines, api="native", method="POST", path="/v1/keys")
    assert [k["principal"] for k in keys] == ["admin", "admin"]
    assert all(k["action"] == "admin" and k["status"] == 201 for k in keys)
    (delete,) = _find(scenario.lines, method="DELETE")
    assert delete["status"] == 204 and delete["principal"] == scenario.key_id
    s3_puts = _find(scenario.lines, api="s3", method="PUT", result="ok")
    by_key = {e["key"]: e for e in s3_puts}
    assert by_key["s3.txt"]["principal"] == scenario.key_id
    assert by_key["s3.txt"]["operation"] == "put_object" and by_key["s3.txt"]["bytes"] > 0
    assert by_key["pre.txt"]["principal"] == scenario.key_id  # presigned
    assert by_key["pre.txt"]["query"] == {}
    assert by_key["admin.txt"]["principal"] == "admin"  # s3_credentials_file acts as admin


def test_reads_are_not_recorded_but_refusals_are(scenario: Scenario) -> None:
    gets = _find(scenario.lines, method="GET")
    assert {(g["principal"], g["status"]) for g in gets} == {
        ("anonymous", 401),
        (scenario.stranger_id, 403),
    }
    assert all(g["result"] == "refused" for g in gets)
    (wrong,) = _find(scenario.lines, api="native", method="PUT", status=401)
    assert wrong["principal"] == "anonymous" and wrong["code"] == "unauthenticated"
    assert wrong["bytes"] == len(BODY)  # what it declared (its body was never read)
    (bad_sig,) = _find(scenario.lines, api="s3", status=403)
    assert bad_sig["principal"] == "anonymous" and bad_sig["result"] == "refused"
    assert bad_sig["key"] == "bad.txt" and bad_sig["code"] == "SignatureDoesNotMatch"


def test_a_share_link_write_is_refused_and_recorded_without_its_signature(
    scenario: Scenario,
) -> None:
    (share,) = _find(scenario.lines, method="POST", operation="POST /v1/share")
    assert share["principal"] == scenario.key_id and share["status"] == 200
    (refused,) = _find(
        scenario.lines, api="native", method="PUT", status=403, principal="anonymous"
    )
    assert refused["path"] == "/v1/objects/audited/a.txt" and refused["query"] == {}
    assert refused["result"] == "refused"


def test_an_expect_continue_refusal_is_recorded(scenario: Scenario) -> None:
    (refused,) = _find(
        scenario.lines, api="native", method="PUT", status=403, principal=scenario.stranger_id
    )
    assert refused["principal"] == scenario.stranger_id
    assert refused["code"] == "access_denied" and refused["bytes"] == len(BODY)


def test_no_secret_reaches_the_audit_log(scenario: Scenario) -> None:
    assert len(scenario.secrets) >= 8
    for secret in scenario.secrets:
        assert secret and secret not in scenario.raw
    for marker in ("Bearer", "Signature=", "X-Amz-", "Authorization", "Credential"):
        assert marker not in scenario.raw


# ------------------------------------------------------------------ the writer
def test_rotation_at_the_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=2048, backups=2)
    for i in range(200):
        log.write({"n": i, "pad": "x" * 50})
    log.close()
    log.write({"n": "after close"})  # dropped, no error
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    numbers = []
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2048
        numbers += [json.loads(line)["n"] for line in (tmp_path / name).read_text().splitlines()]
    assert 199 in numbers and "after close" not in numbers
    assert log.written == 200


def test_an_unwritable_audit_log_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="audit_log_file: cannot open"):
        AuditLog(tmp_path / "missing-dir" / "audit.log", max_bytes=4096, backups=1)
    with pytest.raises(ConfigError, match="audit_log_max_bytes"):
        PeerConfig(audit_log_max_bytes=10)
    with pytest.raises(ConfigError, match="audit_log_backups"):
        PeerConfig(audit_log_backups=0)
    assert AuditLog.from_config(PeerConfig()) is None


def test_rfc3339() -> None:
    assert rfc3339(0.0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"


# ------------------------------------------------------------------ the refusal rules
@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[tuple[AuditLog, list[dict[str, Any]]]]:
    log = AuditLog(tmp_path / "audit.log", max_bytes=1 << 20, backups=1)
    written: list[dict[str, Any]] = []
    log.write = written.append  # type: ignore[method-assign]
    yield log, written
    log.close()


async def test_refusal_rules_on_a_bare_app(
    recorded: tuple[AuditLog, list[dict[str, Any]]],
) -> None:
    log, written = recorded

    def describe(request: web.Request) -> Target:
        return Target("read", request.path, "b", None)

    async def slow(request: web.Request) -> web.Response:
        request[PRINCIPAL_KEY] = ADMIN
        raise {"/slow": SlowDown("slow down"), "/busy": Overloaded("busy")}.get(
            request.path, DataUnavailable("no replica answered")
        )

    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("bug")

    app = web.Application(middlewares=[log.middleware("native", describe), error_middleware])
    app.router.add_get("/slow", slow)
    app.router.add_get("/busy", slow)
    app.router.add_get("/gone", slow)
    app.router.add_get("/ok", ok)
    app.router.add_put("/boom", boom)
    async with TestClient(TestServer(app)) as client:
        for path in ("/slow", "/busy", "/gone", "/ok"):
            (await client.get(path)).close()
        (await client.put("/boom", data=b"12345")).close()
    summary = [(e["path"], e["status"], e["result"], e["code"]) for e in written]
    assert summary == [
        ("/slow", 429, "refused", "slow_down"),
        ("/busy", 503, "refused", "overloaded"),
        ("/boom", 500, "error", "internal_error"),
    ]
    assert written[0]["principal"] == "admin" and written[2]["principal"] == "anonymous"


def test_audit_entry_keeps_only_harmless_query_parameters() -> None:
    from aiohttp.test_utils import make_mocked_request

    request = make_mocked_request(
        "PUT", "/b/k?uploadId=U&partNumber=3&X-Amz-Signature=s3cr3t&token=t0k3n&versionId=V"
    )
    entry = audit_entry(
        request, api="s3", status=200, code=None, target=Target("write", "x"), now=0.0
    )
    assert entry["query"] == {"versionId": "V", "uploadId": "U", "partNumber": "3"}
    assert "s3cr3t" not in json.dumps(entry) and "t0k3n" not in json.dumps(entry)
