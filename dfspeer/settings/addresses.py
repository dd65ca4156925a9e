"""Addresses in settings: ``host:port`` (``join``) and loopback hosts."""

from __future__ import annotations

import ipaddress

from dfspeer.settings.errors import ConfigError


def is_loopback(host: str) -> bool:
    """``localhost``, or an IP address of the loopback range (127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_host_port(text: str, *, what: str = "address") -> tuple[str, int]:
    """Parse ``host:port`` (``[v6]:port`` too). Raises :class:`ConfigError`."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ConfigError(f"{what}: expected host:port, got {text!r}")
    return host, int(port_text)
