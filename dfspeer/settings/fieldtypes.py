"""A setting's type: checking a value against its field's type hint, and coercing the text
of a TOML file, an environment variable or a ``--set`` to it.

Both take the field's resolved type hint (of a :class:`~dfspeer.config.PeerConfig` field) and
raise :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dfspeer.settings.errors import ConfigError


def check_type(name: str, value: Any, hint: Any) -> None:
    """Raise :class:`ConfigError` naming ``name`` unless ``value`` fits the field's type."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None:
            return
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool:
        ok, what = isinstance(value, bool), "true or false"
    elif hint is int:
        ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        what = "a number"
    elif hint is str:
        ok, what = isinstance(value, str), "a string"
    elif hint is Path:
        ok, what = isinstance(value, Path), "a path (str or Path)"
    elif typing.get_origin(hint) is tuple:
        ok = isinstance(value, tuple) and all(isinstance(x, str) for x in value)
        what = "a list of strings"
    elif typing.get_origin(hint) is Mapping:
        ok, what = isinstance(value, Mapping), "a mapping"
    else:  # pragma: no cover - every field's type is handled above
        ok, what = True, ""
    if not ok:
        raise ConfigError(f"{name}: must be {what} (got {value!r})")


def coerce(name: str, raw: Any, hint: Any) -> Any:
    """Turn a TOML / env / CLI value into the field's type, or raise ConfigError."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if raw is None:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true/false")
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is Path:
            return Path(raw).expanduser()
        if hint is str:
            return str(raw)
        if typing.get_origin(hint) is tuple:
            if isinstance(raw, str):
                return tuple(p.strip() for p in raw.split(",") if p.strip())
            return tuple(str(p) for p in raw)
        return raw
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot use {raw!r}: {exc}") from exc
