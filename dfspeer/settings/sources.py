"""Where settings come from besides arguments: a TOML file and ``DFSPEER_*`` variables.

:meth:`dfspeer.config.PeerConfig.from_sources` merges them (arguments > environment > TOML
> defaults); these read the raw values, which it then coerces to the fields' types.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from dfspeer.settings.errors import ConfigError

ENV_PREFIX = "DFSPEER_"


def read_toml_settings(toml_path: Path) -> Any:
    """The settings table of a TOML file: its ``[peer]`` table, or the whole document when
    it has none. Raises :class:`ConfigError` when the file cannot be read or parsed."""
    try:
        with open(toml_path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {toml_path}: {exc}") from exc
    return doc.get("peer", doc)


def env_settings(env: Mapping[str, str], names: Collection[str]) -> dict[str, str]:
    """Field name -> raw text of each ``DFSPEER_<NAME>`` variable whose lower-cased name is
    in ``names``; ``DFSPEER_CONFIG`` (the TOML file's path) is no setting."""
    values: dict[str, str] = {}
    for key, raw in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            if name in names:
                values[name] = raw
    return values
