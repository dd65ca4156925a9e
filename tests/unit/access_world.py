"""A secured native app for the JWT and share link tests: the real app, access middleware,
KeyService (with an optional JWT verifier) and ShareLinks, over in-memory objects and an
in-memory keys table, with a clock the test moves."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.access.jwt_auth import JwtVerifier
from dfspeer.access.keystore import KeyService
from dfspeer.access.middleware import AccessControl
from dfspeer.access.sealing import SecretSealer
from dfspeer.access.share import ShareLinks
from dfspeer.api.app import build_app
from dfspeer.api.middleware import AccessLogger
from dfspeer.config import PeerConfig
from dfspeer.gossip import Keyring
from dfspeer.model.buckets import Bucket, Grant
from dfspeer.objects.hlc import HybridLogicalClock
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_access import RecordsDouble

KEYRING = Keyring([bytes(range(32))])
ADMIN_TOKEN = "b" * 64
START_S = 1_900_000_000.0


@dataclass
class Clock:
    """Unix seconds, moved by the test."""

    now: float = START_S

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    objects: FakeObjects
    access: AccessControl
    keys: KeyService
    clock: Clock
    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def auth(self, name: str) -> dict[str, str]:
        """The ``Authorization`` header of key ``name`` (or ``admin``)."""
        if name == "admin":
            return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return {"Authorization": f"Bearer {self.ids[name]}.{self.secrets[name]}"}


@asynccontextmanager
async def secured_world(
    jwt: JwtVerifier | None = None, *, admin_token: str | None = ADMIN_TOKEN
) -> AsyncIterator[World]:
    """Keys ``reader`` (read on ``shared``), ``writer`` (write), ``stranger`` (nothing) and
    ``disabled`` (read, disabled); bucket ``shared`` holding ``obj`` = ``b"data"``."""
    clock = Clock()
    objects = FakeObjects()
    keys = KeyService(
        RecordsDouble(),
        HybridLogicalClock(),
        "p1",
        SecretSealer(KEYRING),
        admin_token=admin_token,
        jwt=jwt,
    )
    links = ShareLinks(keys, KEYRING, admin_token=admin_token, clock=clock)
    access = AccessControl(keys, objects.buckets, enforce=True, links=links)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    server = TestServer(app)
    await server.start_server(  # the peer's own access log: the path, never the query
        access_log_class=AccessLogger, access_log=logging.getLogger("dfspeer.api.access")
    )
    async with TestClient(server) as client:
        world = World(client, objects, access, keys, clock)
        for name in ("reader", "writer", "stranger", "disabled"):
            key, secret = await keys.create(name)
            world.ids[name], world.secrets[name] = key.id, secret
        await keys.disable(world.ids["disabled"])
        grants = {
            world.ids["reader"]: Grant(read=True),
            world.ids["writer"]: Grant(write=True),
            world.ids["disabled"]: Grant(read=True),
        }
        objects.buckets.known["shared"] = Bucket("shared", 1.0, "v1", permissions=grants)
        await objects.put_object("shared", "obj", b"data")
        yield world
