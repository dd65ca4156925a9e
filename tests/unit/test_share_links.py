"""Presigned share links (dfspeer.access.share, POST /v1/share, ``dfspeer share``): a link
opens one object for GET and HEAD without credentials until it expires and while its signer
may read the bucket; every change to it (signature, path, expiry, signer, an added
parameter), another method, an expired link, a disabled or deleted signer is refused with
its reason; fuzzed link parameters never get a 500; no secret or signature in the logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.access.share import MAX_EXPIRY_S, ShareLink, parse_link, sign
from dfspeer.cli import build_parser
from dfspeer.client import Client
from dfspeer.commands.common import UsageError
from dfspeer.commands.share import cmd_share, parse_duration
from dfspeer.errors import DfsError, Unauthenticated
from dfspeer.model.buckets import Grant
from tests.unit.access_world import World, secured_world

SIG = "ab" * 32
KEY_ID = "DK" + "0" * 24


# ---------------------------------------------------------------------- pure parts
def test_parse_link_reads_the_three_parameters_and_keeps_the_rest_sorted() -> None:
    query = [("signature", SIG.upper()), ("z", "1"), ("expires", "123"), ("key", KEY_ID)]
    link, signature = parse_link("/v1/objects/b/k", [*query, ("a", "2")])
    assert link == ShareLink("/v1/objects/b/k", 123, KEY_ID, (("a", "2"), ("z", "1")))
    assert signature == SIG


@pytest.mark.parametrize(
    "query",
    [
        {"key": KEY_ID, "signature": SIG},
        {"expires": "1", "signature": SIG},
        {"expires": "1", "key": KEY_ID},
        {"expires": "-1", "key": KEY_ID, "signature": SIG},
        {"expires": "1e9", "key": KEY_ID, "signature": SIG},
        {"expires": "1", "key": "root", "signature": SIG},
        {"expires": "1", "key": KEY_ID, "signature": SIG[:-1]},
        {"expires": "1", "key": KEY_ID, "signature": "zz" * 32},
    ],
)
def test_parse_link_refuses_malformed_links(query: dict[str, str]) -> None:
    with pytest.raises(Unauthenticated) as raised:
        parse_link("/v1/objects/b/k", query.items())
    assert raised.value.details["reason"] == "malformed_link"


def test_every_field_is_signed() -> None:
    link = ShareLink("/v1/objects/b/k", 100, KEY_ID)
    base = sign(b"secret", link)
    changed = [
        ShareLink("/v1/objects/b/k2", 100, KEY_ID),
        ShareLink("/v1/objects/b/k", 101, KEY_ID),
        ShareLink("/v1/objects/b/k", 100, "admin"),
        ShareLink("/v1/objects/b/k", 100, KEY_ID, (("version", "v1"),)),
    ]
    assert all(sign(b"secret", other) != base for other in changed)
    assert sign(b"other secret", link) != base


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("30m", 1800), ("1h", 3600), ("7d", MAX_EXPIRY_S), ("90", 90), ("2H", 7200)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["8d", "169h", "0", "0s", "", "1w", "1.5h", "-1h", "h"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="--expires"):
        parse_duration(text)


def test_cli_parses_share() -> None:
    args = build_parser().parse_args(["share", "b/dir/k", "--expires", "30m", "--json"])
    assert (args.target, args.expires, args.json) == ("b/dir/k", "30m", True)


# ---------------------------------------------------------------------- through the app
async def make_link(world: World, who: str, key: str = "obj", expires_s: Any = 60) -> str:
    body = {"bucket": "shared", "key": key, "expires_s": expires_s}
    resp = await world.client.post("/v1/share", json=body, headers=world.auth(who))
    doc = await resp.json()
    assert resp.status == 200, doc
    assert doc["expires"] == int(world.clock.now + expires_s)
    url = urlsplit(doc["url"])
    assert url.path == f"/v1/objects/shared/{key}"
    return f"{url.path}?{url.query}"


async def refused(world: World, method: str, link: str, status: int, reason: str) -> None:
    resp = await world.client.request(method, link, data=b"evil" if method == "PUT" else None)
    assert resp.status == status, (method, link, await resp.text())
    if method != "HEAD":
        error = (await resp.json())["error"]
        assert error["code"] == ("unauthenticated" if status == 401 else "access_denied")
        assert error.get("reason", "") == reason, error


async def stored(world: World, key: str = "obj") -> bytes:
    _, pieces = await world.objects.get_object("shared", key)
    return b"".join([piece async for piece in pieces])


def tamper(link: str, **changes: str) -> str:
    path, _, query = link.partition("?")
    return f"{path}?{urlencode(dict(parse_qsl(query)) | changes)}"


async def test_a_link_opens_the_object_for_get_and_head_only() -> None:
    async with secured_world() as world:
        link = await make_link(world, "reader")
        resp = await world.client.get(link)
        assert resp.status == 200 and await resp.read() == b"data"
        resp = await world.client.get(link, headers={"Range": "bytes=1-2"})
        assert resp.status == 206 and await resp.read() == b"at"
        assert (await world.client.head(link)).status == 200
        writer_link = await make_link(world, "admin")  # even the admin's link never writes
        for candidate in (link, writer_link):
            await refused(world, "PUT", candidate, 403, "method_not_allowed")
            await refused(world, "DELETE", candidate, 403, "method_not_allowed")
            await refused(world, "POST", candidate, 403, "method_not_allowed")
        assert await stored(world) == b"data"
        assert (await world.client.get(writer_link)).status == 200


async def test_a_changed_link_is_refused() -> None:
    async with secured_world() as world:
        link = await make_link(world, "reader")
        expires = int(link.split("expires=")[1].split("&")[0])
        await world.objects.put_object("shared", "other", b"secret")
        query = link.partition("?")[2]
        for bad in (
            tamper(link, signature="0" * 64),
            tamper(link, expires=str(expires + 3600)),
            tamper(link, key=world.ids["stranger"]),
            tamper(link, version="v0"),
            f"/v1/objects/shared/other?{query}",
            f"/v1/objects/shared?{query}",
        ):
            reason = "signature_mismatch"
            if bad.startswith("/v1/objects/shared?"):
                reason = "malformed_link"
            await refused(world, "GET", bad, 401, reason)
        await refused(world, "GET", tamper(link, key="root"), 401, "malformed_link")
        both = await world.client.get(link, headers=world.auth("reader"))
        assert both.status == 400


async def test_a_link_expires() -> None:
    async with secured_world() as world:
        link = await make_link(world, "reader", expires_s=2)
        world.clock.now += 2
        assert (await world.client.get(link)).status == 200  # valid through its last second
        world.clock.now += 1
        await refused(world, "GET", link, 401, "link_expired")
        far = tamper(link, expires=str(int(world.clock.now) + MAX_EXPIRY_S + 3600))
        await refused(world, "GET", far, 401, "malformed_link")


async def test_a_link_lives_only_while_its_key_may_read() -> None:
    async with secured_world() as world:
        link = await make_link(world, "reader")
        assert (await world.client.get(link)).status == 200
        reader = world.ids["reader"]
        await world.objects.buckets.set_permissions("shared", lambda p: {**p, reader: Grant()})
        await refused(world, "GET", link, 403, "")
        await world.objects.buckets.set_permissions(
            "shared", lambda p: {**p, reader: Grant(read=True)}
        )
        assert (await world.client.get(link)).status == 200
        await world.keys.disable(reader)
        await refused(world, "GET", link, 401, "signer_disabled")
        await world.keys.delete(reader)
        await refused(world, "GET", link, 401, "unknown_signer")


async def test_who_may_make_a_link() -> None:
    async with secured_world() as world:
        for who, status in (("stranger", 403), ("writer", 403), ("disabled", 401)):
            body = {"bucket": "shared", "key": "obj", "expires_s": 60}
            resp = await world.client.post("/v1/share", json=body, headers=world.auth(who))
            assert resp.status == status, who
        resp = await world.client.post("/v1/share", json=body)
        assert resp.status == 401
        for bad in (0, MAX_EXPIRY_S + 1, "1h", True, None, float("inf")):
            resp = await world.client.post(
                "/v1/share",
                data=f'{{"bucket": "shared", "key": "obj", "expires_s": {_json(bad)}}}',
                headers=world.auth("reader"),
            )
            assert resp.status == 400, bad
        for body in ({"bucket": "shared"}, {"bucket": "BAD!", "key": "k", "expires_s": 9}, {}):
            resp = await world.client.post("/v1/share", json=body, headers=world.auth("reader"))
            assert resp.status == 400


def _json(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if isinstance(value, str):
        return f'"{value}"'
    return "1e999" if value == float("inf") else str(value)


async def test_admin_links_need_the_admin_token_on_the_peer() -> None:
    async with secured_world() as world:
        link = await make_link(world, "admin", key="missing")
        resp = await world.client.get(link)
        assert resp.status == 404  # a link may name an object that does not exist yet
    async with secured_world(admin_token=None) as other:
        await refused(other, "GET", link, 401, "unknown_signer")


async def test_client_share_url_and_no_secret_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dfspeer")  # a Peer started earlier set INFO
    async with secured_world() as world:
        base = str(world.client.make_url(""))
        credentials = f"{world.ids['reader']}.{world.secrets['reader']}"
        async with Client(base, credentials=credentials) as c:
            url = await c.share_url("shared", "obj", 30)
            with pytest.raises(DfsError) as raised:
                await c.share_url("shared", "obj", MAX_EXPIRY_S + 1)
            assert raised.value.code == "invalid_argument"
        assert url.startswith(base.rstrip("/") + "/v1/objects/shared/obj?")
        resp = await world.client.get(urlsplit(url).path + "?" + urlsplit(url).query)
        assert resp.status == 200
    signature = url.rsplit("signature=", 1)[1]
    assert any(r.name == "dfspeer.api.access" for r in caplog.records), "the peer's access log"
    for record in caplog.records:
        line = record.getMessage() + str(record.args)
        assert world.secrets["reader"] not in line and signature not in line


# ---------------------------------------------------------------------- fuzz
PARAM = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=70)


@given(st.lists(st.tuples(st.sampled_from(["expires", "key", "signature", "x"]), PARAM)))
def test_fuzzed_link_parameters_only_raise_unauthenticated(pairs: list[tuple[str, str]]) -> None:
    with contextlib.suppress(Unauthenticated):
        parse_link("/v1/objects/b/k", pairs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expires=st.one_of(PARAM, st.integers(0, 2**40).map(str)),
    key=st.one_of(PARAM, st.just(KEY_ID), st.just("admin")),
    signature=st.one_of(PARAM, st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)),
    method=st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]),
)
def test_fuzzed_links_never_get_a_500(expires: str, key: str, signature: str, method: str) -> None:
    async def run() -> None:
        async with secured_world() as world:
            query = urlencode({"expires": expires, "key": key, "signature": signature})
            resp = await world.client.request(
                method, f"/v1/objects/shared/obj?{query}", data=b"x" if method == "PUT" else None
            )
            assert resp.status in (401, 403), (expires, key, signature, resp.status)
            assert await stored(world) == b"data"

    asyncio.run(run())


# ---------------------------------------------------------------------- a pinned version
async def pinned_link(world: World, who: str, version: Any, key: str = "obj") -> str:
    body = {"bucket": "shared", "key": key, "expires_s": 60, "version": version}
    resp = await world.client.post("/v1/share", json=body, headers=world.auth(who))
    doc = await resp.json()
    assert resp.status == 200, doc
    url = urlsplit(doc["url"])
    assert unquote(url.path) == f"/v1/objects/shared/{key}"
    return f"{url.path}?{url.query}"


async def test_a_link_pinned_to_a_version_serves_exactly_that_version() -> None:
    async with secured_world() as world:
        first = (await world.objects.stat_object("shared", "obj")).version
        await world.objects.put_object("shared", "obj", b"newer data")
        pinned = await pinned_link(world, "reader", first)
        assert dict(parse_qsl(pinned.partition("?")[2]))["version"] == first
        resp = await world.client.get(pinned)
        assert resp.status == 200 and await resp.read() == b"data"
        assert resp.headers["X-Object-Version"] == first
        assert (await world.client.head(pinned)).status == 200
        current = await make_link(world, "reader")  # an unpinned link follows the key
        assert await (await world.client.get(current)).read() == b"newer data"
        await world.objects.put_object("shared", "obj", b"newest")
        assert await (await world.client.get(pinned)).read() == b"data"
        await world.objects.delete_object("shared", "obj", version=first)
        gone = await world.client.get(pinned)
        assert gone.status == 404 and (await gone.json())["error"]["code"] == "no_such_version"


async def test_a_pinned_version_cannot_be_changed_or_removed() -> None:
    async with secured_world() as world:
        first = (await world.objects.stat_object("shared", "obj")).version
        second = (await world.objects.put_object("shared", "obj", b"second")).version
        pinned = await pinned_link(world, "admin", first)
        path, _, query = pinned.partition("?")
        unpinned = "&".join(p for p in query.split("&") if not p.startswith("version="))
        for bad in (
            tamper(pinned, version=second),
            f"{path}?{unpinned}",
            f"{pinned}&version={first}",
            f"{pinned}&version={second}",
        ):
            await refused(world, "GET", bad, 401, "signature_mismatch")
        await refused(world, "DELETE", pinned, 403, "method_not_allowed")
        assert [v.version for v, _ in world.objects.history[("shared", "obj")]] == [first, second]
        odd = (await world.objects.put_object("shared", "odd key/é", b"x")).version
        resp = await world.client.get(await pinned_link(world, "admin", odd, "odd key/é"))
        assert resp.status == 200 and await resp.read() == b"x"
        # a version id with characters URLs escape still verifies (then: no such version)
        resp = await world.client.get(await pinned_link(world, "admin", "a+b &=/%é"))
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "no_such_version"


async def test_a_bad_version_is_refused_when_the_link_is_made() -> None:
    async with secured_world() as world:
        for bad in ("", "v" * 129, "a\nb", 7, True, ["v1"], {"v": 1}):
            body = {"bucket": "shared", "key": "obj", "expires_s": 60, "version": bad}
            resp = await world.client.post("/v1/share", json=body, headers=world.auth("reader"))
            doc = await resp.json()
            assert resp.status == 400 and doc["error"]["code"] == "invalid_argument", bad
            assert "version" in doc["error"]["message"]
        plain = await pinned_link(world, "reader", None)  # null: the current version
        assert "version=" not in plain and (await world.client.get(plain)).status == 200
        body = {"bucket": "shared", "key": "obj", "expires_s": 60, "version": "v1", "x": 1}
        resp = await world.client.post("/v1/share", json=body, headers=world.auth("reader"))
        assert resp.status == 400  # still no unknown field


async def test_client_and_cli_pin_a_version() -> None:
    args = build_parser().parse_args(["share", "b/k", "--version", "v0001"])
    assert args.version == "v0001"
    assert build_parser().parse_args(["share", "b/k"]).version is None
    with pytest.raises(UsageError, match="--version"):
        cmd_share(build_parser().parse_args(["share", "b/k", "--version", "a\tb"]))
    async with secured_world() as world:
        first = (await world.objects.stat_object("shared", "obj")).version
        await world.objects.put_object("shared", "obj", b"later")
        base = str(world.client.make_url(""))
        credentials = f"{world.ids['reader']}.{world.secrets['reader']}"
        async with Client(base, credentials=credentials) as c:
            url = await c.share_url("shared", "obj", 30, version=first)
            with pytest.raises(DfsError) as raised:
                await c.share_url("shared", "obj", 30, version="")
            assert raised.value.code == "invalid_argument"
        resp = await world.client.get(urlsplit(url).path + "?" + urlsplit(url).query)
        assert resp.status == 200 and await resp.read() == b"data"
