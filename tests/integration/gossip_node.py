"""A gossip-only node for process tests: one GossipAgent plus a tiny HTTP observer.

    python -m tests.integration.gossip_node --id n1 --host 127.0.0.11 --port 17946 \
        --http-port 18080 --join 127.0.0.11:17946 --key-file KEYFILE [timer flags]

HTTP (on ``--host:--http-port``):
- ``GET /members`` -> ``{"self", "joined", "incarnation", "members": [{"id", "state",
  "incarnation", "gossip_address", "address"}]}``
- ``GET /events`` -> ``{"events": [{"kind", "id", "state", "incarnation"}, ...]}`` (every
  member event seen since start, in order)
- ``GET /metrics`` -> Prometheus text of :class:`~dfspeer.gossip.metrics.GossipMetrics`
- ``POST /leave`` -> graceful leave, then 200

SIGTERM / SIGINT: graceful leave, stop, exit 0. SIGKILL is the crash case.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import prometheus_client
from aiohttp import web

from dfspeer.config import parse_host_port
from dfspeer.gossip.agent import GossipAgent
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring, load_keyring
from dfspeer.gossip.metrics import GossipMetrics
from dfspeer.gossip.types import Member, MemberEvent, MemberState


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--id", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="gossip port (UDP + TCP)")
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--join", action="append", default=[], help="seed host:port (repeatable)")
    p.add_argument("--key-file", type=Path)
    p.add_argument("--insecure", action="store_true")
    p.add_argument("--probe-interval", type=float, default=1.0)
    p.add_argument("--probe-timeout", type=float, default=0.5)
    p.add_argument("--gossip-interval", type=float, default=0.2)
    p.add_argument("--suspicion-mult", type=int, default=4)
    p.add_argument("--push-pull-interval", type=float, default=30.0)
    p.add_argument("--log-level", default="info")
    return p.parse_args(argv)


def _member_json(m: Member) -> dict[str, Any]:
    return {
        "id": m.id,
        "state": m.state.value,
        "incarnation": m.incarnation,
        "gossip_address": f"{m.gossip_address[0]}:{m.gossip_address[1]}",
        "address": m.api_address,
    }


def _http_app(agent: GossipAgent, events: list[MemberEvent]) -> web.Application:
    registry = prometheus_client.CollectorRegistry()
    GossipMetrics(agent).register(registry)

    async def members(_: web.Request) -> web.Response:
        local = agent.local_member
        body = {
            "self": local.id,
            "joined": agent.joined,
            "incarnation": local.incarnation,
            "members": [_member_json(m) for m in sorted(agent.members(), key=lambda m: m.id)],
        }
        return web.json_response(body)

    async def event_log(_: web.Request) -> web.Response:
        rows = [
            {
                "kind": e.kind.value,
                "id": e.member.id,
                "state": e.member.state.value,
                "incarnation": e.member.incarnation,
            }
            for e in events
        ]
        return web.json_response({"events": rows})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=prometheus_client.generate_latest(registry), content_type="text/plain"
        )

    async def leave(_: web.Request) -> web.Response:
        await agent.leave()
        return web.json_response({"left": True})

    app = web.Application()
    app.add_routes(
        [
            web.get("/members", members),
            web.get("/events", event_log),
            web.get("/metrics", metrics),
            web.post("/leave", leave),
        ]
    )
    return app


async def run(args: argparse.Namespace) -> int:
    if args.key_file is not None:
        keyring = load_keyring(args.key_file)
    elif args.insecure:
        keyring = Keyring.insecure()
    else:
        print("gossip_node: --key-file or --insecure is required", file=sys.stderr)
        return 2
    config = SwimConfig(
        probe_interval_s=args.probe_interval,
        probe_timeout_s=args.probe_timeout,
        gossip_interval_s=args.gossip_interval,
        suspicion_mult=args.suspicion_mult,
        push_pull_interval_s=args.push_pull_interval,
    )
    local = Member(
        id=args.id,
        gossip_address=(args.host, args.port),
        api_address=f"{args.host}:{args.http_port}",
        incarnation=0,
        state=MemberState.ALIVE,
    )
    agent = GossipAgent(config, local, keyring, bind_host=args.host)
    events: list[MemberEvent] = []
    agent.subscribe(events.append)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    runner = web.AppRunner(_http_app(agent, events), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.http_port).start()
    await agent.join([parse_host_port(s, what="--join") for s in args.join])
    try:
        await stop.wait()
        await agent.leave()
    finally:
        await agent.stop()
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format=f"%(asctime)s {args.id} %(name)s %(levelname)s %(message)s",
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
