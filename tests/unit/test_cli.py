"""The dfspeer command line: parsing, config precedence, errors, ranges, keygen."""

from __future__ import annotations

import argparse
import os
import socket
import stat
from pathlib import Path

import pytest

from dfspeer import __version__
from dfspeer.cli import build_parser, main
from dfspeer.commands.agent import config_from_args
from dfspeer.commands.cluster import members_table, status_rows
from dfspeer.commands.common import (
    UsageError,
    parse_range,
    parse_target,
    peer_url,
    progress_bar,
    progress_enabled,
)
from dfspeer.config import ConfigError


def agent_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["agent", *argv])


def test_agent_flags_reach_peer_config(tmp_path: Path) -> None:
    args = agent_args(
        "--data-dir",
        str(tmp_path),
        "--host",
        "127.0.0.5",
        "--port",
        "8080",
        "--gossip-port",
        "8946",
        "--join",
        "10.0.0.1:7946",
        "10.0.0.2:7946",
        "--join",
        "h3:1",
        "--replication-factor",
        "5",
        "--write-quorum",
        "3",
        "--read-quorum",
        "3",
        "--zone",
        "eu-1",
        "--cluster-key-file",
        "/k",
        "--insecure",
        "--set",
        "chunk_size_bytes=1048576",
        "--set",
        "probe-interval-s=2.5",
    )
    cfg = config_from_args(args, environ={})
    assert cfg.data_dir == tmp_path and cfg.host == "127.0.0.5"
    assert (cfg.port, cfg.gossip_port) == (8080, 8946)
    assert cfg.join == ("10.0.0.1:7946", "10.0.0.2:7946", "h3:1")
    assert (cfg.replication_factor, cfg.write_quorum, cfg.read_quorum) == (5, 3, 3)
    assert cfg.zone == "eu-1" and cfg.cluster_key_file == Path("/k") and cfg.insecure
    assert cfg.chunk_size_bytes == 1048576 and cfg.probe_interval_s == 2.5


def test_agent_defaults_without_flags() -> None:
    cfg = config_from_args(agent_args(), environ={})
    assert (cfg.port, cfg.replication_factor, cfg.write_quorum, cfg.read_quorum) == (7070, 3, 2, 2)
    assert cfg.insecure is False and cfg.join == ()


def test_precedence_flags_over_env_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "peer.toml"
    toml.write_text('[peer]\nport = 9001\ngossip_port = 9002\nzone = "toml"\nweight = 2.0\n')
    env = {"DFSPEER_PORT": "9101", "DFSPEER_ZONE": "env"}
    cfg = config_from_args(agent_args("--config", str(toml), "--zone", "flag"), environ=env)
    assert cfg.zone == "flag"  # flag > env > toml
    assert cfg.port == 9101  # env > toml
    assert cfg.gossip_port == 9002 and cfg.weight == 2.0  # toml > default
    env["DFSPEER_CONFIG"] = str(toml)
    assert config_from_args(agent_args(), environ=env).gossip_port == 9002


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--port", "seventy"], "port"),
        (["--port", "70000"], "port"),
        (["--write-quorum", "4"], "write_quorum"),
        (["--join", "nohostport"], "join"),
        (["--set", "no_such_setting=1"], "no_such_setting"),
        (["--set", "novalue"], "SETTING=VALUE"),
        (["--config", "/nonexistent/peer.toml"], "config file"),
    ],
)
def test_bad_agent_config_exits_2_with_one_line(
    argv: list[str],
    fragment: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in [k for k in os.environ if k.startswith("DFSPEER_")]:
        monkeypatch.delenv(key)
    assert main(["agent", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfspeer: error: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_env_value_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DFSPEER_READ_QUORUM", "many")
    assert main(["agent"]) == 2
    assert "read_quorum" in capsys.readouterr().err


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"dfspeer {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in (
        "agent",
        "keygen",
        "up",
        "demo",
        "put",
        "get",
        "ls",
        "rm",
        "stat",
        "status",
        "members",
    ):
        assert command in out
    assert main([]) == 2


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("0-0", (0, 1)),
        ("0-99", (0, 100)),
        ("100-", (100, None)),
        ("-500", (-500, None)),
        (" 7-9 ", (7, 10)),
    ],
)
def test_parse_range(text: str, want: tuple[int, int | None]) -> None:
    assert parse_range(text) == want


@pytest.mark.parametrize("text", ["", "-", "5", "9-3", "a-b", "-0", "--5", "1-2-3", "-5-"])
def test_parse_range_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_range(text)


def test_bad_range_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["get", "b/k", "--range", "9-3"])
    assert exc.value.code == 2 and "--range" in capsys.readouterr().err


def test_parse_target() -> None:
    assert parse_target("b/dir/key.txt") == ("b", "dir/key.txt")
    assert parse_target("b", require_key=False) == ("b", "")
    assert parse_target("b/pre/", require_key=False) == ("b", "pre/")
    for bad in ("b", "b/", "/k", ""):
        with pytest.raises(UsageError):
            parse_target(bad)


def test_peer_url_precedence() -> None:
    ns = argparse.Namespace(peer=None)
    assert peer_url(ns, {}) == "http://127.0.0.1:7070"
    assert peer_url(ns, {"DFSPEER_PEER": "10.1.1.1:80"}) == "http://10.1.1.1:80"
    ns.peer = "https://x:1/"
    assert peer_url(ns, {"DFSPEER_PEER": "10.1.1.1:80"}) == "https://x:1"


def test_keygen_prints_a_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keygen"]) == 0
    import base64

    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32


def test_keygen_file_mode_and_no_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cluster.key"
    assert main(["keygen", "-o", str(path)]) == 0
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first.strip()) == 44
    assert main(["keygen", "-o", str(path)]) == 2
    assert "--force" in capsys.readouterr().err and path.read_text() == first
    path.chmod(0o644)
    assert main(["keygen", "-o", str(path), "--force"]) == 0
    assert path.read_text() != first and stat.S_IMODE(path.stat().st_mode) == 0o600


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "argv",
    [["status"], ["members"], ["ls", "b"], ["stat", "b/k"], ["rm", "b/k"], ["get", "b/k"]],
)
def test_unreachable_peer_is_one_line_exit_1(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main([*argv, "--peer", url]) == 1
    assert capsys.readouterr().err == f"dfspeer: cannot reach {url}: connection refused\n"


def test_put_missing_file_and_bad_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["put", str(tmp_path / "nope"), "b/k", "--peer", "http://127.0.0.1:1"]) == 2
    assert "not a readable file" in capsys.readouterr().err
    assert main(["get", "justabucket"]) == 2
    assert capsys.readouterr().err.startswith("dfspeer: error: expected BUCKET/KEY")


def test_progress_policy() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    class Pipe:
        def isatty(self) -> bool:
            return False

    mib = 1024 * 1024
    assert progress_enabled(64 * mib, stream=Tty())
    assert progress_enabled(None, stream=Tty())
    assert not progress_enabled(1 * mib, stream=Tty())
    assert not progress_enabled(64 * mib, stream=Pipe())
    assert not progress_enabled(64 * mib, stream=Tty(), disabled=True)
    with progress_bar(100, "x", enabled=True) as (advance, set_total):
        set_total(200)
        advance(200)
    with progress_bar(None, "x", enabled=False) as (advance, set_total):
        advance(5)


def test_tables() -> None:
    doc = {
        "self": "b",
        "members": [
            {
                "id": "b",
                "address": "h:1",
                "gossip_address": "h:2",
                "state": "alive",
                "incarnation": 3,
                "zone": "",
                "weight": 1.0,
            },
            {
                "id": "a",
                "address": "g:1",
                "gossip_address": "g:2",
                "state": "dead",
                "incarnation": 1,
                "zone": "z",
                "weight": 2.0,
            },
        ],
    }
    lines = members_table(doc).splitlines()
    assert lines[0].split() == ["ID", "ADDRESS", "GOSSIP", "STATE", "INC", "ZONE", "WEIGHT"]
    assert lines[1].split() == ["a", "g:1", "g:2", "dead", "1", "z", "2.0"]
    assert lines[2].split() == ["*", "b", "h:1", "h:2", "alive", "3", "-", "1.0"]
    rows = dict(
        status_rows(
            {
                "id": "p",
                "blocks": 2,
                "block_bytes": 2048,
                "map_used_bytes": 1024,
                "map_size_bytes": 4096,
                "members": {"alive": 3},
            }
        )
    )
    assert rows["map used bytes"] == "1.0 KiB of 4.0 KiB (25.0%)"
    assert rows["block bytes"] == "2048 (2.0 KiB)" and rows["members"] == "3 alive"


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_local_cluster_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dfspeer.localcluster import LocalCluster, choose_hosts

    monkeypatch.setenv("DFSPEER_PORT", "1")  # inherited settings must not leak into agents
    cluster = LocalCluster(
        tmp_path,
        3,
        base_port=19000,
        gossip_base_port=19100,
        host_base=50,
        settings={"chunk_size_bytes": 65536, "durable": False},
    )
    p1, p2, p3 = cluster.peers
    assert [p.port for p in cluster.peers] == [19000, 19001, 19002]
    assert [p.gossip_port for p in cluster.peers] == [19100, 19101, 19102]
    if cluster.distinct_hosts:
        assert [p.host for p in cluster.peers] == ["127.0.0.51", "127.0.0.52", "127.0.0.53"]
    cmd = cluster.command(p2)
    assert cmd[cmd.index("--join") + 1 :] == [p1.gossip_address, p3.gossip_address]
    assert cmd[cmd.index("--peer-id") + 1] == "peer-2"
    assert cmd[cmd.index("--data-dir") + 1] == str(tmp_path / "peer-2")
    env = cluster.environment()
    assert env["DFSPEER_CHUNK_SIZE_BYTES"] == "65536" and env["DFSPEER_DURABLE"] == "false"
    assert "DFSPEER_PORT" not in env
    key = cluster.ensure_key()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert cluster.ensure_key().read_text() == key.read_text()  # kept, not regenerated
    assert choose_hosts(3, 253) == ["127.0.0.1"] * 3  # would run past 127.0.0.254


def test_free_ports_are_distinct() -> None:
    from dfspeer.localcluster import LocalCluster

    cluster = LocalCluster(Path("unused"), 4, base_port=None, gossip_base_port=None)
    ports = [p for peer in cluster.peers for p in (peer.port, peer.gossip_port)]
    assert len(set(ports)) == len(ports) and all(ports)


def test_up_rejects_bad_set(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--set", "oops"]) == 2
    assert "SETTING=VALUE" in capsys.readouterr().err
    assert main(["up", "--peers", "0"]) == 2


def test_members_remove_parsing() -> None:
    from dfspeer.commands.cluster import cmd_members, cmd_members_remove

    parse = build_parser().parse_args
    args = parse(["members"])
    assert args.func is cmd_members and args.members_command is None
    args = parse(["members", "remove", "h3", "--peer", "http://a:1", "--json"])
    assert args.func is cmd_members_remove
    assert (args.id, args.peer, args.json) == ("h3", "http://a:1", True)
    args = parse(["members", "--peer", "http://b:2", "--timeout", "7", "remove", "h4"])
    assert (args.func, args.id, args.peer, args.timeout) == (cmd_members_remove, "h4",
                                                            "http://b:2", 7.0)
    with pytest.raises(SystemExit):
        parse(["members", "remove"])  # the id is required
