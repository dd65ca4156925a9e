"""Access control of the native API (dfspeer.access): credential parsing, the pure
decision, the keys table and secret sealing, and the middleware in the real app (with
in-memory objects and an in-memory replicated-table double) — every principal kind against
every route class, a fuzzed Authorization header, and no secret in any log line."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from dfspeer.access.credentials import (
    KeyCredential,
    MalformedCredential,
    TokenCredential,
    credential_from_env,
    load_admin_token,
    new_admin_token,
    new_key_id,
    new_secret,
    parse_authorization,
    write_secret_file,
)
from dfspeer.access.keystore import KeyService
from dfspeer.access.middleware import AccessControl
from dfspeer.access.permissions import Action, Decision, decide, grant_of, visible, with_grant
from dfspeer.access.principals import ADMIN, OPEN, key_principal
from dfspeer.access.routes import ADMIN_RULE, ROUTE_RULES, rule_for
from dfspeer.access.sealing import SecretSealer
from dfspeer.api.app import build_app
from dfspeer.api.repair_routes import routes as repair_routes
from dfspeer.api.uploads import routes as upload_routes
from dfspeer.config import PeerConfig
from dfspeer.errors import Unauthenticated
from dfspeer.gossip import Keyring
from dfspeer.model.buckets import Bucket, BucketsSchema, Grant
from dfspeer.model.keys import AccessKey, KeysSchema
from dfspeer.objects.hlc import HybridLogicalClock
from tests.unit.api_fakes import FakeObjects, FakeState

KEYRING = Keyring([bytes(range(32))])
ADMIN_TOKEN = "a" * 64


# ---------------------------------------------------------------------- credentials
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("Bearer " + ADMIN_TOKEN, TokenCredential(ADMIN_TOKEN)),
        ("bearer  " + ADMIN_TOKEN + " ", TokenCredential(ADMIN_TOKEN)),
        ("Bearer DK" + "0" * 24 + "." + "s" * 43, KeyCredential("DK" + "0" * 24, "s" * 43)),
    ],
)
def test_parse_authorization_accepts(header: str | None, expected: object) -> None:
    assert parse_authorization(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer short",
        "Bearer DK123.secretsecretsecret",  # key id too short
        "Bearer DK" + "G" * 24 + "." + "s" * 43,  # not hex
        "Bearer DK" + "0" * 24 + ".short",
        "Bearer DK" + "0" * 24 + "." + "s" * 43 + "!",
        "Bearer " + "x" * 2000,
        "Bearer tok en with spaces",
    ],
)
def test_parse_authorization_refuses(header: str) -> None:
    with pytest.raises(MalformedCredential):
        parse_authorization(header)


@given(st.text(max_size=300))
def test_parse_authorization_never_raises_anything_else(header: str) -> None:
    with contextlib.suppress(MalformedCredential):
        parse_authorization(header)


def test_credentials_never_show_their_secret() -> None:
    secret = new_secret()
    assert secret not in repr(KeyCredential(new_key_id(), secret))
    assert ADMIN_TOKEN not in repr(TokenCredential(ADMIN_TOKEN))
    assert "sealed_secret" not in repr(AccessKey("DK1", "n", 1.0, "v", b"sealed"))


def test_admin_token_file_is_private_and_round_trips(tmp_path: Any) -> None:
    path = tmp_path / "admin.token"
    token = new_admin_token()
    write_secret_file(path, token)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_admin_token(path) == token
    with pytest.raises(FileExistsError):
        write_secret_file(path, token)
    (tmp_path / "bad").write_text("not a token!\n")
    with pytest.raises(ValueError) as raised:
        load_admin_token(tmp_path / "bad")
    assert "not a token" not in str(raised.value)


def test_credential_from_env_prefers_the_key() -> None:
    key = f"{new_key_id()}.{new_secret()}"
    env = {"DFSPEER_KEY": key, "DFSPEER_ADMIN_TOKEN": ADMIN_TOKEN}
    assert isinstance(credential_from_env(env), KeyCredential)
    assert credential_from_env({"DFSPEER_ADMIN_TOKEN": ADMIN_TOKEN}) == TokenCredential(ADMIN_TOKEN)
    assert credential_from_env({}) is None
    with pytest.raises(MalformedCredential, match="DFSPEER_KEY"):
        credential_from_env({"DFSPEER_KEY": ADMIN_TOKEN})


# ---------------------------------------------------------------------- permissions
KEY = "DK" + "1" * 24


def bucket(owner: str = "", **grants: Grant) -> Bucket:
    return Bucket("shared", 1.0, "v1", owner=owner, permissions=dict(grants))


@pytest.mark.parametrize(
    ("grant", "action", "expected"),
    [
        (Grant(), Action.READ, Decision.DENY),
        (Grant(read=True), Action.READ, Decision.ALLOW),
        (Grant(read=True), Action.WRITE, Decision.DENY),
        (Grant(write=True), Action.WRITE, Decision.ALLOW),
        (Grant(write=True), Action.DELETE, Decision.ALLOW),
        (Grant(write=True), Action.READ, Decision.DENY),
        (Grant(write=True), Action.OWNER, Decision.DENY),
        (Grant(owner=True), Action.OWNER, Decision.ALLOW),
        (Grant(owner=True), Action.READ, Decision.ALLOW),
        (Grant(read=True), Action.CREATE_BUCKET, Decision.DENY),
        (Grant(owner=True), Action.ADMIN, Decision.DENY),
        (Grant(), Action.AUTHENTICATED, Decision.ALLOW),
    ],
)
def test_decide_on_an_existing_bucket(grant: Grant, action: Action, expected: Decision) -> None:
    principal = key_principal(KEY, allow_create_bucket=True)
    assert decide(principal, action, bucket(**{KEY: grant})) is expected
    assert decide(ADMIN, action, bucket()) is Decision.ALLOW
    assert decide(OPEN, action, bucket()) is Decision.ALLOW


def test_the_creator_owns_and_missing_buckets_need_create_rights() -> None:
    creator = key_principal(KEY, allow_create_bucket=False)
    assert grant_of(bucket(owner=KEY), KEY) == Grant(True, True, True)
    assert decide(creator, Action.OWNER, bucket(owner=KEY)) is Decision.ALLOW
    assert decide(creator, Action.WRITE, None) is Decision.DENY
    maker = key_principal(KEY, allow_create_bucket=True)
    assert decide(maker, Action.WRITE, None) is Decision.CREATE
    assert decide(maker, Action.CREATE_BUCKET, None) is Decision.CREATE
    assert decide(maker, Action.READ, None) is Decision.DENY
    assert visible(maker, bucket(owner=KEY)) and not visible(maker, bucket())
    assert visible(ADMIN, bucket())


def test_with_grant_sets_given_flags_and_drops_empty_entries() -> None:
    perms = with_grant({}, KEY, {"read": True})
    assert perms == {KEY: Grant(read=True)}
    perms = with_grant(perms, KEY, {"write": True})
    assert perms == {KEY: Grant(read=True, write=True)}
    assert with_grant(perms, KEY, {"read": False, "write": False}) == {}
    with pytest.raises(ValueError):
        with_grant(perms, KEY, {"delete": True})


def test_every_route_of_a_peer_has_a_rule() -> None:
    app = build_app(
        FakeObjects(),
        FakeState(),
        PeerConfig(),
        registry=CollectorRegistry(),
        access=make_access(RecordsDouble(), FakeObjects()),
    )
    app.add_routes(upload_routes)
    app.add_routes(repair_routes)
    for resource in app.router.resources():
        for route in resource:
            if route.method == "*":
                continue
            rule = rule_for(route.method, resource.canonical, metrics_public=True)
            method = "GET" if route.method == "HEAD" else route.method
            known = (method, resource.canonical) in ROUTE_RULES or (
                resource.canonical in ("/metrics", "/v1/objects/{bucket}/{key}")
            )
            assert known, f"{route.method} {resource.canonical} has no rule"
            assert rule is not None
    assert rule_for("POST", "/v1/not-yet-written", metrics_public=True) is ADMIN_RULE
    assert rule_for("GET", "/metrics", metrics_public=False) is ADMIN_RULE


# ---------------------------------------------------------------------- model and sealing
def test_keys_schema_round_trips_and_merges_last_writer_wins() -> None:
    schema = KeysSchema()
    old = AccessKey("DK" + "a" * 24, "ci", 1.0, "0000000000000001-p1", b"x" * 40)
    new = AccessKey(old.id, "ci", 1.0, "0000000000000002-p2", b"x" * 40, disabled=True)
    assert schema.decode(schema.encode(old)) == old
    assert schema.merge(old, new) == new and schema.merge(new, old) == new
    gone = AccessKey(old.id, "ci", 1.0, "0000000000000003-p1", deleted=True)
    assert schema.tombstone_since(gone) is not None and schema.tombstone_since(new) is None
    with pytest.raises(ValueError):
        schema.decode({**schema.encode(old), "format": 2})


def test_bucket_permissions_round_trip_and_keep_format_1_without_grants() -> None:
    schema = BucketsSchema()
    plain = Bucket("shared", 1.0, "v1")
    assert schema.encode(plain)["format"] == 1 and "permissions" not in schema.encode(plain)
    granted = Bucket("shared", 1.0, "v1", owner=KEY, permissions={KEY: Grant(read=True)})
    record = schema.encode(granted)
    assert record["format"] == 2
    assert record["permissions"] == {KEY: {"read": True, "write": False, "owner": False}}
    assert schema.decode(record) == granted


def test_sealed_secrets_open_with_any_key_of_the_ring() -> None:
    secret = new_secret()
    sealed = SecretSealer(KEYRING).seal(secret)
    assert secret.encode() not in sealed
    rotated = Keyring([bytes(32), bytes(range(32))])
    assert SecretSealer(rotated).open(sealed) == secret
    assert SecretSealer(Keyring([bytes(32)])).open(sealed) is None
    assert SecretSealer(KEYRING).open(b"short") is None


# ---------------------------------------------------------------------- the middleware
@dataclass
class RecordsDouble:
    """The replicated-table operations of a Replicator, in memory (one replica)."""

    tables: dict[str, dict[bytes, Any]] = field(default_factory=dict)

    async def read_record(self, table: str, key: bytes) -> Any | None:
        return self.tables.get(table, {}).get(key)

    async def write_record(self, table: str, key: bytes, value: Any) -> int:
        schema = KeysSchema()
        current = self.tables.setdefault(table, {}).get(key)
        self.tables[table][key] = schema.merge_records(current, value)
        return 1

    async def scan_entries(
        self,
        table: str,
        keep: Callable[[Any], bool],
        *,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[Any]:
        schema = KeysSchema()
        entries = [schema.decode(r) for _, r in sorted(self.tables.get(table, {}).items())]
        return [e for e in entries if keep(e)][:limit]


def make_access(
    records: RecordsDouble, objects: FakeObjects, *, metrics_public: bool = True
) -> AccessControl:
    keys = KeyService(
        records, HybridLogicalClock(), "p1", SecretSealer(KEYRING), admin_token=ADMIN_TOKEN
    )
    return AccessControl(keys, objects.buckets, enforce=True, metrics_public=metrics_public)


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    objects: FakeObjects
    access: AccessControl
    headers: dict[str, dict[str, str]]


async def _key(access: AccessControl, name: str, *, create: bool = False) -> tuple[str, str]:
    key, secret = await access.keys.create(name, allow_create_bucket=create)
    return key.id, secret


@pytest.fixture
async def world() -> AsyncIterator[World]:
    objects = FakeObjects()
    access = make_access(RecordsDouble(), objects)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    ids: dict[str, tuple[str, str]] = {}
    for name in ("read", "write", "owner", "creator", "disabled", "stranger"):
        ids[name] = await _key(access, name, create=name == "creator")
    await access.keys.disable(ids["disabled"][0])
    grants = {
        ids["read"][0]: Grant(read=True),
        ids["write"][0]: Grant(write=True),
        ids["owner"][0]: Grant(owner=True),
        ids["disabled"][0]: Grant(read=True, write=True, owner=True),
    }
    objects.buckets.known["shared"] = Bucket(
        "shared", 1.0, "v1", owner=ids["creator"][0], permissions=grants
    )
    objects.buckets.known["private"] = Bucket("private", 1.0, "v1")
    await objects.put_object("shared", "obj", b"data")
    headers = {name: {"Authorization": f"Bearer {i}.{s}"} for name, (i, s) in ids.items()}
    headers["none"] = {}
    headers["admin"] = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    headers["malformed"] = {"Authorization": "Bearer not-a-credential!"}
    headers["wrong_secret"] = {"Authorization": f"Bearer {ids['read'][0]}.{new_secret()}"}
    headers["unknown_key"] = {"Authorization": f"Bearer {new_key_id()}.{new_secret()}"}
    headers["basic"] = {"Authorization": "Basic dXNlcjpwYXNz"}
    async with TestClient(TestServer(app)) as client:
        yield World(client, objects, access, headers)


ROUTE_CLASSES: dict[str, tuple[str, str, bytes | None]] = {
    "public": ("GET", "/health", None),
    "metrics": ("GET", "/metrics", None),
    "authenticated": ("GET", "/v1/cluster/members", None),
    "read": ("GET", "/v1/objects/shared/obj", None),
    "list": ("GET", "/v1/objects/shared", None),
    "write": ("PUT", "/v1/objects/shared/new", b"fresh"),
    "delete": ("DELETE", "/v1/objects/shared/obj", None),
    "owner": ("PUT", "/v1/buckets/shared/versioning", b'{"status": "enabled"}'),
    "private_read": ("GET", "/v1/objects/private/obj", None),
    "create_bucket": ("PUT", "/v1/buckets/newbucket", None),
    "admin": ("GET", "/v1/keys", None),
    "unmatched": ("GET", "/v1/nothing-here", None),
}
OK = {"public": 200, "metrics": 200, "authenticated": 200, "read": 200, "list": 200}
OK |= {"write": 201, "delete": 204, "owner": 200, "private_read": 404}
OK |= {"create_bucket": 201, "admin": 200, "unmatched": 404}
REFUSED_401 = {c: 401 for c in ROUTE_CLASSES} | {"public": 200, "metrics": 200}
EXPECTED: dict[str, dict[str, int]] = {
    "none": REFUSED_401,
    "malformed": REFUSED_401,
    "basic": REFUSED_401,
    "wrong_secret": REFUSED_401,
    "unknown_key": REFUSED_401,
    "disabled": REFUSED_401,
    "admin": OK,
    "read": OK
    | {"write": 403, "delete": 403, "owner": 403, "private_read": 403, "create_bucket": 403}
    | {"admin": 403},
    "write": OK
    | {"read": 403, "list": 403, "owner": 403, "private_read": 403, "create_bucket": 403}
    | {"admin": 403},
    "owner": OK | {"private_read": 403, "create_bucket": 403, "admin": 403},
    "creator": OK | {"private_read": 403, "admin": 403},
    "stranger": OK
    | {"read": 403, "list": 403, "write": 403, "delete": 403, "owner": 403}
    | {"private_read": 403, "create_bucket": 403, "admin": 403},
}


@pytest.mark.parametrize("principal", sorted(EXPECTED))
async def test_every_principal_against_every_route_class(world: World, principal: str) -> None:
    for route_class, (method, path, body) in ROUTE_CLASSES.items():
        before = dict(world.objects.objects), dict(world.objects.buckets.known)
        resp = await world.client.request(method, path, data=body, headers=world.headers[principal])
        want = EXPECTED[principal][route_class]
        assert resp.status == want, (principal, route_class, await resp.text())
        if want in (401, 403):
            doc = await resp.json()
            code = "unauthenticated" if want == 401 else "access_denied"
            assert doc["error"]["code"] == code and doc["error"]["request_id"]
            after = dict(world.objects.objects), dict(world.objects.buckets.known)
            assert after == before, f"{principal} {route_class}: a refused request changed data"


async def test_a_key_sees_only_its_buckets(world: World) -> None:
    async def names(who: str) -> list[str]:
        resp = await world.client.get("/v1/buckets", headers=world.headers[who])
        assert resp.status == 200
        return [b["name"] for b in (await resp.json())["buckets"]]

    assert await names("admin") == ["private", "shared"]
    assert await names("read") == ["shared"]
    assert await names("stranger") == []
    resp = await world.client.put("/v1/buckets/mine-now", headers=world.headers["creator"])
    assert resp.status == 201
    assert world.objects.buckets.known["mine-now"].owner == (await _creator_id(world))
    assert await names("creator") == ["mine-now", "shared"]


async def _creator_id(world: World) -> str:
    return world.headers["creator"]["Authorization"].split()[1].split(".")[0]


async def test_a_key_that_may_create_buckets_creates_one_by_writing(world: World) -> None:
    resp = await world.client.put(
        "/v1/objects/fresh-bucket/k", data=b"x", headers=world.headers["creator"]
    )
    assert resp.status == 201
    assert world.objects.buckets.known["fresh-bucket"].owner == await _creator_id(world)
    resp = await world.client.put(
        "/v1/objects/other-bucket/k", data=b"x", headers=world.headers["read"]
    )
    assert resp.status == 403 and "other-bucket" not in world.objects.buckets.known


async def test_the_owner_grants_and_revokes(world: World) -> None:
    stranger = world.headers["stranger"]["Authorization"].split()[1].split(".")[0]
    url = "/v1/buckets/shared/permissions"
    resp = await world.client.get("/v1/objects/shared/obj", headers=world.headers["stranger"])
    assert resp.status == 403
    resp = await world.client.put(
        url, json={"key": stranger, "read": True}, headers=world.headers["owner"]
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["permissions"][stranger] == {
        "read": True,
        "write": False,
        "owner": False,
    }
    resp = await world.client.get("/v1/objects/shared/obj", headers=world.headers["stranger"])
    assert resp.status == 200
    resp = await world.client.put(
        url, json={"key": stranger, "read": False}, headers=world.headers["owner"]
    )
    assert stranger not in (await resp.json())["permissions"]
    resp = await world.client.get("/v1/objects/shared/obj", headers=world.headers["stranger"])
    assert resp.status == 403
    # a reader cannot change permissions, and nothing changes
    resp = await world.client.put(
        url, json={"key": stranger, "owner": True}, headers=world.headers["read"]
    )
    assert resp.status == 403
    assert stranger not in world.objects.buckets.known["shared"].permissions


async def test_key_routes_and_secret_never_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = world.headers["admin"]
    resp = await world.client.post(
        "/v1/keys", json={"name": "ci", "allow_create_bucket": True}, headers=admin
    )
    assert resp.status == 201
    doc = await resp.json()
    assert set(doc) >= {"id", "secret", "name", "created", "allow_create_bucket", "disabled"}
    secret, key_id = doc["secret"], doc["id"]
    mine = {"Authorization": f"Bearer {key_id}.{secret}"}
    assert (
        await world.client.put("/v1/objects/ci-bucket/a", data=b"1", headers=mine)
    ).status == 201
    assert (await world.client.get("/v1/keys", headers=mine)).status == 403
    other = "B" if secret.endswith("A") else "A"  # a urlsafe secret ends in A 1 time in 16
    wrong = {"Authorization": f"Bearer {key_id}.{secret[:-1]}{other}"}
    assert (await world.client.get("/v1/cluster/members", headers=wrong)).status == 401
    listed = await (await world.client.get("/v1/keys", headers=admin)).json()
    assert key_id in [k["id"] for k in listed["keys"]]
    assert "secret" not in str(listed)
    resp = await world.client.post(f"/v1/keys/{key_id}/disable", headers=admin)
    assert resp.status == 200 and (await resp.json())["disabled"] is True
    assert (await world.client.get("/v1/cluster/members", headers=mine)).status == 401
    assert (await world.client.delete(f"/v1/keys/{key_id}", headers=admin)).status == 204
    assert (await world.client.delete(f"/v1/keys/{key_id}", headers=admin)).status == 404
    assert caplog.records, "expected log lines to check"
    for record in caplog.records:
        line = record.getMessage() + str(record.args)
        assert secret not in line and ADMIN_TOKEN not in line


async def test_metrics_can_be_admin_only() -> None:
    objects = FakeObjects()
    access = make_access(RecordsDouble(), objects, metrics_public=False)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 401
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert (await client.get("/metrics", headers=auth)).status == 200


async def test_no_admin_token_means_no_admin() -> None:
    keys = KeyService(
        RecordsDouble(), HybridLogicalClock(), "p1", SecretSealer(KEYRING), admin_token=None
    )
    with pytest.raises(Unauthenticated):
        await keys.authenticate(TokenCredential(ADMIN_TOKEN))


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=st.one_of(HEADER_TEXT, HEADER_TEXT.map(lambda t: "Bearer " + t)))
def test_fuzzed_authorization_header_never_gets_a_500(value: str) -> None:
    async def run() -> None:
        objects = FakeObjects()
        access = make_access(RecordsDouble(), objects)
        app = build_app(
            objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access
        )
        async with TestClient(TestServer(app)) as client:
            for method, path in (("GET", "/v1/cluster/status"), ("PUT", "/v1/objects/bkt/k")):
                resp = await client.request(
                    method, path, data=b"x", headers={"Authorization": value}
                )
                assert resp.status in (200, 401, 403), (value, resp.status)

    asyncio.run(run())


def test_cli_parses_key_and_permission_commands() -> None:
    from dfspeer.cli import build_parser
    from dfspeer.commands.common import UsageError, credentials_arg

    parser = build_parser()
    key = f"{new_key_id()}.{new_secret()}"
    args = parser.parse_args(["key", "create", "ci", "--allow-create-bucket", "--key", key])
    assert args.allow_create_bucket and credentials_arg(args) == key
    grantee = new_key_id()
    args = parser.parse_args(
        ["bucket", "allow", "photos", "--key", grantee, "--read", "--credentials", key]
    )
    assert args.grantee == grantee and args.read and not args.write
    assert credentials_arg(args) == key
    args = parser.parse_args(["ls", "photos", "--key", ADMIN_TOKEN])
    with pytest.raises(UsageError):
        credentials_arg(args)
    args = parser.parse_args(["keygen", "--admin-token"])
    assert args.admin_token
