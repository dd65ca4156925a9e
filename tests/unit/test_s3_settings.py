"""The S3 settings of a peer: ``--s3-port`` (default 7080, 0 turns S3 off) and the
region, from the agent's command line to a running peer."""

from __future__ import annotations

from pathlib import Path

from dfspeer.cli import build_parser
from dfspeer.commands.agent import config_from_args
from dfspeer.peer import Peer
from tests.unit.test_peer_single import config_for


async def test_s3_port_flag_and_zero_turns_s3_off(tmp_path: Path) -> None:
    parser = build_parser()
    base = ["agent", "--data-dir", str(tmp_path)]
    assert config_from_args(parser.parse_args(base), environ={}).s3_port == 7080
    cfg = config_from_args(
        parser.parse_args([*base, "--s3-port", "0", "--set", "s3_region=eu-west-1"]), environ={}
    )
    assert (cfg.s3_port, cfg.s3_region) == (0, "eu-west-1")
    async with Peer(config_for(tmp_path / "p", s3_port=0)) as peer:
        assert peer.s3_url is None and peer.api_url
