"""PeerConfig: precedence of sources, coercion, and checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfspeer.config import ConfigError, PeerConfig, parse_host_port


def test_defaults_validate_and_run_a_local_cluster() -> None:
    config = PeerConfig().validate()
    assert config.replication_factor == 3
    assert config.write_quorum == 2 and config.read_quorum == 2
    assert 1024 * 1024 <= config.chunk_size_bytes <= 8 * 1024 * 1024
    assert config.api_address == "127.0.0.1:7070"


def test_precedence_overrides_then_env_then_toml(tmp_path: Path) -> None:
    toml = tmp_path / "peer.toml"
    toml.write_text('[peer]\nport = 8000\nzone = "a"\nreplication-factor = 5\njoin = ["h:1"]\n')
    env = {"DFSPEER_PORT": "8001", "DFSPEER_ZONE": "b", "UNRELATED": "x"}
    config = PeerConfig.from_sources({"port": 8002, "zone": None}, toml_path=toml, environ=env)
    assert config.port == 8002  # flag beats env and file
    assert config.zone == "b"  # env beats file; a None flag means "not given"
    assert config.replication_factor == 5  # file beats default
    assert config.join == ("h:1",)


def test_env_coercion_of_bools_tuples_and_paths(tmp_path: Path) -> None:
    env = {
        "DFSPEER_INSECURE": "yes",
        "DFSPEER_JOIN": "a:1, b:2",
        "DFSPEER_DATA_DIR": str(tmp_path),
        "DFSPEER_DURABLE": "0",
    }
    config = PeerConfig.from_sources(environ=env)
    assert config.insecure is True and config.durable is False
    assert config.join == ("a:1", "b:2")
    assert config.data_dir == tmp_path


def test_config_file_from_env_variable(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("gossip_port = 9999\n")
    config = PeerConfig.from_sources(environ={"DFSPEER_CONFIG": str(toml)})
    assert config.gossip_port == 9999


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"write_quorum": 4}, "write_quorum"),
        ({"read_quorum": 0}, "read_quorum"),
        ({"port": 70000}, "port"),
        ({"chunk_size_bytes": 10}, "chunk_size_bytes"),
        ({"probe_timeout_s": 2.0}, "probe_timeout_s"),
        ({"join": ("nohost",)}, "join"),
        ({"log_level": "loud"}, "log_level"),
        ({"weight": 0}, "weight"),
        ({"port": "eighty"}, "port"),
        ({"insecure": "maybe"}, "insecure"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ],
)
def test_bad_values_raise_config_error_naming_the_field(
    overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        PeerConfig.from_sources(overrides, environ={})


def test_unreadable_or_malformed_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file"):
        PeerConfig.from_sources(toml_path=tmp_path / "missing.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(ConfigError, match="config file"):
        PeerConfig.from_sources(toml_path=bad, environ={})


def test_parse_host_port() -> None:
    assert parse_host_port("127.0.0.1:7946") == ("127.0.0.1", 7946)
    assert parse_host_port("[::1]:80") == ("::1", 80)
    for bad in ("host", ":80", "h:0", "h:x", "h:99999"):
        with pytest.raises(ConfigError):
            parse_host_port(bad)


def test_advertised_host_for_wildcard_bind() -> None:
    assert PeerConfig(host="0.0.0.0").advertised_host == "127.0.0.1"
    assert PeerConfig(host="0.0.0.0", advertise_host="10.1.2.3").api_address == "10.1.2.3:7070"


def test_path_fields_take_a_str_or_a_path(tmp_path: Path) -> None:
    as_text = PeerConfig(data_dir=str(tmp_path / "d"), cluster_key_file=str(tmp_path / "k"))
    as_path = PeerConfig(data_dir=tmp_path / "d", cluster_key_file=tmp_path / "k")
    assert as_text == as_path
    assert isinstance(as_text.data_dir, Path) and isinstance(as_text.cluster_key_file, Path)
    as_text.data_dir.mkdir()  # was: AttributeError: 'str' object has no attribute 'mkdir'
    assert PeerConfig().cluster_key_file is None
    assert PeerConfig().replace(data_dir=str(tmp_path)).data_dir == tmp_path
    assert PeerConfig(join=["a:1", "b:2"]).join == ("a:1", "b:2")  # a list becomes a tuple


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"write_quorum": 4}, "write_quorum"),
        ({"read_quorum": 0}, "read_quorum"),
        ({"port": 70000}, "port"),
        ({"port": "80"}, "port"),
        ({"weight": True}, "weight"),
        ({"insecure": "yes"}, "insecure"),
        ({"map_size_bytes": 1024}, "map_size_bytes"),
        ({"data_dir": 3}, "data_dir"),
        ({"cluster_key_file": b"key"}, "cluster_key_file"),
        ({"join": ("nohost",)}, "join"),
        ({"join": "a:1"}, "join"),
        ({"log_level": "loud"}, "log_level"),
        ({"peer_id": ""}, "peer_id"),
        ({"probe_timeout_s": 2.0}, "probe_timeout_s"),
    ],
)
def test_constructing_an_invalid_config_raises_config_error_naming_the_field(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ConfigError, match=field):
        PeerConfig(**changes)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=field):
        PeerConfig().replace(**changes)


def test_an_int_is_a_fine_float() -> None:
    assert PeerConfig(weight=2, request_timeout_s=5).request_timeout_s == 5


def test_every_gossip_setting_reaches_the_swim_config() -> None:
    """Each SwimConfig field PeerConfig names (alive_retransmit_mult among them) is passed
    on; an out-of-range one is refused with its name."""
    from dfspeer.peer_setup import swim_config

    swim = swim_config(PeerConfig(alive_retransmit_mult=5, retransmit_mult=3))
    assert (swim.alive_retransmit_mult, swim.retransmit_mult) == (5, 3)
    assert swim_config(PeerConfig()).alive_retransmit_mult == 8
    with pytest.raises(ConfigError, match="alive_retransmit_mult"):
        swim_config(PeerConfig(alive_retransmit_mult=0))
