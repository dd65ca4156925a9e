"""TLS for the HTTP ports: the server context of a peer, the client contexts of peer RPC
and of :class:`dfspeer.Client` (stdlib :mod:`ssl`, handed to aiohttp).

- **Serving** (:func:`server_context`): with ``tls_cert_file`` and ``tls_key_file`` (PEM;
  the certificate file may hold the chain after the leaf) a peer's API port (native
  ``/v1``, the console, ``/internal/``) and its S3 port speak HTTPS only, TLS 1.2 or newer.
- **Peer RPC** (:func:`rpc_context`): the API port is shared with ``/internal/``, so a peer
  serving TLS also dials its peers over https. With ``internal_tls`` it verifies each
  peer's certificate (chain to ``tls_ca_file``, else to the system's CAs; the name or IP
  the peer advertises must be in it): confidential even against an active attacker.
  Without it the channel is encrypted but the peer's certificate is not checked, so only
  passive eavesdroppers are kept out; peer RPC stays authenticated by the cluster key's
  signatures either way.
- **Clients** (:func:`client_context`): verify the server against a CA file (``ca_file`` /
  ``--ca-file`` / ``$DFSPEER_CA_FILE``), else the system's CAs.

Every loading failure raises :class:`~dfspeer.config.ConfigError` naming the setting, never
showing a key's content. Encrypted private keys are refused (a peer starts unattended).
"""

from __future__ import annotations

import logging
import os
import ssl
from pathlib import Path

from dfspeer.config import ConfigError, PeerConfig

log = logging.getLogger("dfspeer.tls")

CA_FILE_ENV = "DFSPEER_CA_FILE"
MIN_VERSION = ssl.TLSVersion.TLSv1_2


def _no_password() -> str:
    raise ConfigError("the private key is encrypted; give an unencrypted PEM key (mode 0600)")


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context holding the certificate chain of ``cert_file`` and the key of
    ``key_file`` (PEM). Raises ConfigError (unreadable, malformed, key not matching the
    certificate, encrypted key)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = MIN_VERSION
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except ConfigError as exc:
        raise ConfigError(f"tls_key_file: {key_file}: {exc}") from None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(
            f"tls_cert_file / tls_key_file: cannot load {cert_file} and {key_file}: {reason}"
        ) from None
    return context


def client_context(
    ca_file: str | os.PathLike[str] | None, *, what: str = "ca_file"
) -> ssl.SSLContext:
    """A client context verifying servers (chain and host name) against the PEM CA
    certificates of ``ca_file``, else the system's CAs. Raises ConfigError naming
    ``what`` when the file cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = MIN_VERSION
    if ca_file is None:
        return context
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.fspath(ca_file))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        raise ConfigError(f"{what}: cannot load CA certificates from {ca_file}: {reason}") from None
    context.minimum_version = MIN_VERSION
    return context


def unverified_client_context() -> ssl.SSLContext:
    """A client context that encrypts but checks no certificate (peer RPC without
    ``internal_tls``: its messages are authenticated by the cluster key instead)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = MIN_VERSION
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_ca_file(
    ca_file: str | os.PathLike[str] | None, environ: dict[str, str] | None = None
) -> str | None:
    """``ca_file`` when given, else ``$DFSPEER_CA_FILE`` when set and not empty, else None."""
    if ca_file is not None:
        return os.fspath(ca_file)
    value = (os.environ if environ is None else environ).get(CA_FILE_ENV, "").strip()
    return value or None


def serving(config: PeerConfig) -> ssl.SSLContext | None:
    """The server context of a peer's API and S3 ports (None: plain HTTP). Raises
    ConfigError."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    return server_context(config.tls_cert_file, config.tls_key_file)


def rpc_context(config: PeerConfig) -> ssl.SSLContext | None:
    """The client context of peer RPC (None: plain HTTP): verifying with ``internal_tls``,
    unverified when the peer serves TLS without it (module docstring). Raises
    ConfigError."""
    if config.internal_tls:
        return client_context(config.tls_ca_file, what="tls_ca_file")
    if config.tls_cert_file is not None:
        log.warning(
            "peer RPC is encrypted but peers' certificates are not verified: set internal_tls "
            "(and tls_ca_file) to keep an active attacker on the network out"
        )
        return unverified_client_context()
    return None


def scheme(config: PeerConfig) -> str:
    """``https`` when the peer serves TLS, else ``http``."""
    return "https" if config.tls_cert_file is not None else "http"
