"""dfspeer: a peer-to-peer storage cluster.

``import dfspeer`` gives :class:`Peer` (run or embed a peer), :class:`PeerConfig` (its
settings) and :class:`Client` (async HTTP client for a remote peer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfspeer.config import ConfigError, PeerConfig

__version__ = "0.1.0"

if TYPE_CHECKING:
    from dfspeer.client import Client
    from dfspeer.peer import Peer

__all__ = ["Client", "ConfigError", "Peer", "PeerConfig", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import dfspeer` stays cheap for the CLI and for embedding only the config.
    if name == "Peer":
        from dfspeer.peer import Peer

        return Peer
    if name == "Client":
        from dfspeer.client import Client

        return Client
    raise AttributeError(f"module 'dfspeer' has no attribute {name!r}")
