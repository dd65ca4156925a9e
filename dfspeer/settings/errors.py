"""The error every bad setting raises, and the size units settings are written in."""

from __future__ import annotations

MiB = 1024 * 1024
GiB = 1024 * MiB


class ConfigError(ValueError):
    """A setting is missing, malformed or out of range; the message names it."""
