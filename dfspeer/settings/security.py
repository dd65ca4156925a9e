"""The rules of the security settings of :class:`~dfspeer.config.PeerConfig`: JWT bearer
tokens (:mod:`dfspeer.access.jwt_auth`), TLS (:mod:`dfspeer.tls`), the audit log
(:mod:`dfspeer.access.audit`) and the auth cache (:mod:`dfspeer.access.cache`).

Only the settings are checked here; the key, certificate and JWKS files they name are loaded
when the peer starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dfspeer.settings.addresses import is_loopback
from dfspeer.settings.errors import ConfigError

if TYPE_CHECKING:
    from dfspeer.config import PeerConfig


def check_jwt(config: PeerConfig) -> None:
    """The JWT settings: one key source at most, issuer and audience need one, a JWKS
    URL is https (or http to a loopback address). Key files are loaded at start."""
    if config.jwt_public_key_file is not None and config.jwt_jwks_file is not None:
        raise ConfigError(
            "jwt_jwks_file: give jwt_public_key_file or jwt_jwks_file, not both "
            f"(got {config.jwt_jwks_file!r})"
        )
    sources = "jwt_public_key_file, jwt_jwks_file or jwt_jwks_url"
    if config.jwt_jwks_url:
        if config.jwt_public_key_file is not None or config.jwt_jwks_file is not None:
            raise ConfigError(f"jwt_jwks_url: give one of {sources}, not two")
        problem = jwks_url_problem(config.jwt_jwks_url)
        if problem:
            raise ConfigError(f"jwt_jwks_url: {problem} (got {config.jwt_jwks_url[:200]!r})")
    has_source = bool(config.jwt_jwks_url) or config.jwt_public_key_file is not None
    for name in ("jwt_issuer", "jwt_audience"):
        if getattr(config, name) and not (has_source or config.jwt_jwks_file is not None):
            raise ConfigError(f"{name}: needs {sources} (got {getattr(config, name)!r})")


def check_tls_audit(config: PeerConfig) -> None:
    """The TLS, audit log and auth cache settings (files are loaded at start)."""
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError(
            "tls_cert_file, tls_key_file: give both (the certificate and its private "
            "key) or neither"
        )
    if config.internal_tls and config.tls_cert_file is None:
        raise ConfigError(
            "internal_tls: needs tls_cert_file and tls_key_file (peer RPC shares the API "
            "port, which then serves HTTPS)"
        )
    if config.tls_ca_file is not None and not config.internal_tls:
        raise ConfigError(
            "tls_ca_file: only used with internal_tls (peers verify each other's "
            "certificates against it)"
        )
    if not 1024 <= config.audit_log_max_bytes <= 1 << 40:
        raise ConfigError(
            f"audit_log_max_bytes: must be in 1 KiB..1 TiB (got {config.audit_log_max_bytes!r})"
        )
    if not 1 <= config.audit_log_backups <= 1000:
        raise ConfigError(
            f"audit_log_backups: must be in 1..1000 (got {config.audit_log_backups!r})"
        )
    if not 0 <= config.auth_cache_ttl_s <= 60:
        raise ConfigError(
            f"auth_cache_ttl_s: must be in 0..60 (0: off; got {config.auth_cache_ttl_s!r})"
        )


def jwks_url_problem(url: str) -> str:
    """What is wrong with a ``jwt_jwks_url`` ("" when nothing is): it must be an
    ``https://`` URL of at most 2048 printable characters with a host, or ``http://`` to a
    loopback address (``localhost``, 127.0.0.0/8, ``::1``), with no user info or fragment."""
    if len(url) > 2048 or not url.isprintable() or any(c.isspace() for c in url):
        return "must be a URL of at most 2048 printable characters"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return "not a URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an https:// URL with a host"
    if parts.username is not None or parts.fragment:
        return "must hold no user info and no #fragment"
    if parts.scheme == "http" and not is_loopback(host):
        return "must be https:// (http:// only to a loopback address)"
    return ""
