"""Short-lived signed download links of the web console.

A browser link (``<a href>``) cannot carry an ``Authorization`` header, so the console asks
``GET /ui/api/download-link?bucket=&key=[&version=]`` (authorized like a read of the
object) for a URL that needs no credential: ``/ui/dl?bucket=&key=&version=&expires=&sig=``.
``sig`` is the hex HMAC-SHA256 (RFC 2104) of ``"dfspeer-dl-1\\n" bucket "\\n" key "\\n"
version "\\n" expires`` under a subkey derived from each cluster key
(:meth:`dfspeer.gossip.Keyring.derive` with purpose :data:`LINK_PURPOSE`): any peer of the
cluster verifies a link any other made, keys rotate like the cluster key, and the cluster key
itself never signs anything. A link names one version (pinned when it is made), is valid for
``ttl_s`` seconds (60 by default: a console download) or for a lifetime its maker chose up to
``max_ttl_s`` (7 days: a share link, :data:`SHARE_MAX_TTL_S`), and carries no principal: it
lets whoever holds it read that version until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from dfspeer.errors import AccessDenied
from dfspeer.gossip import Keyring

LINK_PURPOSE = b"dfspeer-console-download-link"
LINK_TTL_S = 60.0
SHARE_MIN_TTL_S = 60
SHARE_MAX_TTL_S = 7 * 24 * 3600
_DOMAIN = "dfspeer-dl-1"


@dataclass(frozen=True)
class DownloadLink:
    """The signed fields of one link; ``expires`` is a unix time, seconds."""

    bucket: str
    key: str
    version: str
    expires: int


class DownloadLinks:
    """Sign and verify :class:`DownloadLink` s under ``keyring``'s derived subkeys.

    ``ttl_s``: lifetime of a link made without one, seconds; ``max_ttl_s``: the longest a
    share link may live. ``clock``: unix time in seconds (tests pass their own).
    """

    def __init__(
        self,
        keyring: Keyring,
        *,
        ttl_s: float = LINK_TTL_S,
        max_ttl_s: float = SHARE_MAX_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keyring.derive(LINK_PURPOSE)
        self.ttl_s = ttl_s
        self.max_ttl_s = max(max_ttl_s, ttl_s)
        self._clock = clock

    @staticmethod
    def _message(link: DownloadLink) -> bytes:
        parts = (_DOMAIN, link.bucket, link.key, link.version, str(link.expires))
        return "\n".join(parts).encode("utf-8")

    def _sign_with(self, key: bytes, link: DownloadLink) -> str:
        return hmac.new(key, self._message(link), hashlib.sha256).hexdigest()

    def make(
        self, bucket: str, key: str, version: str, *, ttl_s: float | None = None
    ) -> tuple[DownloadLink, str]:
        """A link to ``bucket/key`` at ``version`` valid for ``ttl_s`` (default: the
        instance's) from now, and its signature (hex). Raises ValueError beyond
        ``max_ttl_s``."""
        lifetime = self.ttl_s if ttl_s is None else ttl_s
        if not 0 < lifetime <= self.max_ttl_s:
            raise ValueError(f"a link lives 1..{int(self.max_ttl_s)} s, not {lifetime}")
        link = DownloadLink(bucket, key, version, int(self._clock() + lifetime))
        return link, self._sign_with(self._keys[0], link)

    def verify(self, link: DownloadLink, signature: str) -> None:
        """Raise AccessDenied unless ``signature`` is a signature of ``link`` under one of
        the cluster's keys and the link has not expired (and does not claim to live longer
        than ``max_ttl_s`` from now: a link is never made that way)."""
        valid = any(
            hmac.compare_digest(self._sign_with(k, link), signature.lower()) for k in self._keys
        )
        if not valid:
            raise AccessDenied("the download link's signature is not valid")
        now = self._clock()
        if link.expires < now:
            raise AccessDenied("the download link has expired: ask the console for another")
        if link.expires > now + self.max_ttl_s + 5:
            raise AccessDenied("the download link expires too far in the future")
