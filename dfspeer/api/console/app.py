"""Routes of the web console sub-app (see :mod:`dfspeer.api.console`).

- ``GET /ui`` -> 308 to ``/ui/``; ``GET /ui/``: ``index.html``;
- ``GET /ui/static/{name}``: one asset of ``static/`` (flat names, ``.js``, ``.css``,
  ``.svg``, ``.html``); unknown names 404 ``not_found``;
- ``GET /ui/api/download-link?bucket=&key=[&version=]`` (authorized as a read of the
  bucket): ``{"url", "expires", "version"}``, a link valid :data:`~dfspeer.api.console.
  links.LINK_TTL_S` seconds to the version that is current now (or the one named); 404
  ``no_such_key`` / ``no_such_version``;
- ``GET /ui/dl?bucket=&key=&version=&expires=&sig=`` (public: the signature is the
  credential): the object version as an attachment; 403 ``access_denied`` for a bad or
  expired signature.
- ``/ui/api/session`` (log in, who am I, log out: :mod:`dfspeer.api.console.session`);
  ``/ui/api/share-link``, ``/ui/api/restore``, ``/ui/api/peers``
  (:mod:`dfspeer.api.console.actions`); ``/ui/api/members/{id}/drain`` and
  ``/ui/api/members/{id}/repair/block-refs`` (admin: another member's drain and block
  reference recount, :mod:`dfspeer.api.console.members`).

Cache headers: every asset is ``Cache-Control: no-cache``, revalidated through its ETag (a
hash of its bytes), so a peer upgrade is seen at once (names carry no content hash: there is
no build step); and ``X-Content-Type-Options: nosniff``; the page also carries a
Content-Security-Policy that allows nothing but this origin; JSON and downloads are
``no-store``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from dfspeer.api.console import actions, members, session
from dfspeer.api.console.actions import LINKS_KEY, PEER_STATUS_KEY, PeerStatus, link_url, names
from dfspeer.api.console.links import DownloadLink, DownloadLinks
from dfspeer.api.console.members import FORWARD_KEY, Forward
from dfspeer.api.context import OBJECTS_KEY, ObjectBackend
from dfspeer.api.public import object_headers, version_param
from dfspeer.api.ranges import etag_matches
from dfspeer.errors import DfsError, InvalidArgument
from dfspeer.gossip import Keyring

log = logging.getLogger("dfspeer.api.console")

CONSOLE_PREFIX = "/ui/"
STATIC_DIR = Path(__file__).parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
NO_STORE = {"Cache-Control": "no-store"}
_ASSET = r"[A-Za-z0-9_-]+\.(?:js|css|svg|html)"

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Asset:
    """One file of ``static/``, read once: its bytes, content type and strong ETag."""

    body: bytes
    content_type: str
    etag: str


ASSETS_KEY: web.AppKey[dict[str, Asset]] = web.AppKey("dfspeer.console.assets")


def load_assets(directory: Path = STATIC_DIR) -> dict[str, Asset]:
    """Every servable file of ``directory`` by name (the assets are small: kilobytes)."""
    assets = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is not None and path.is_file() and re.fullmatch(_ASSET, path.name):
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            assets[path.name] = Asset(body, content_type, etag)
    return assets


def _asset(request: web.Request, name: str, *, page: bool = False) -> web.Response:
    """The asset as a response: 304 when ``If-None-Match`` names its ETag. (Built in memory
    rather than a ``FileResponse``, which the traffic middleware cannot send early.)"""
    asset = request.app[ASSETS_KEY].get(name)
    if asset is None:
        raise web.HTTPNotFound(text=f"no console asset {name}")
    headers = {**ASSET_HEADERS, "ETag": asset.etag}
    if page:
        headers["Content-Security-Policy"] = PAGE_POLICY
    if etag_matches(request.headers.get("If-None-Match"), asset.etag):
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The single page: ``index.html``."""
    return _asset(request, "index.html", page=True)


@routes.get("/static/{name:" + _ASSET + "}")
async def static(request: web.Request) -> web.Response:
    """One asset of ``static/``."""
    return _asset(request, request.match_info["name"])


def _objects(request: web.Request) -> ObjectBackend:
    return request.config_dict[OBJECTS_KEY]


@routes.get("/api/download-link")
async def download_link(request: web.Request) -> web.Response:
    """A signed, short-lived URL for the object version (see the module docstring)."""
    bucket, key = names(request)
    info = await _objects(request).stat_object(bucket, key, version=version_param(request))
    doc = link_url(request, request.app[LINKS_KEY], bucket, key, info.version)
    return web.json_response(doc, headers=NO_STORE)


def _attachment(key: str) -> str:
    """``Content-Disposition`` for ``key``'s last path segment (RFC 6266 / 5987)."""
    name = key.rsplit("/", 1)[-1] or "download"
    ascii_name = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


@routes.get("/dl")
async def download(request: web.Request) -> web.StreamResponse:
    """Stream the version a valid signed link names, as an attachment."""
    bucket, key = names(request)
    version = request.query.get("version", "")
    expires_text, signature = request.query.get("expires", ""), request.query.get("sig", "")
    if not version or not expires_text.isdigit() or len(expires_text) > 12 or not signature:
        raise InvalidArgument("a download link needs version, expires and sig")
    link = DownloadLink(bucket, key, version, int(expires_text))
    request.app[LINKS_KEY].verify(link, signature)
    info, reader = await _objects(request).open_object(bucket, key, version=version)
    stream = await reader(0, info.size)
    response = web.StreamResponse(status=200)
    response.headers.update(object_headers(info))
    response.headers.update(NO_STORE)
    response.headers["Content-Disposition"] = _attachment(key)
    response.content_length = info.size
    try:
        await response.prepare(request)
        sent = 0
        try:
            async for chunk in stream:
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
        except ConnectionError:
            log.debug(
                "console download of %s/%s: client went away after %d bytes", bucket, key, sent
            )
        except DfsError as exc:  # after prepare the status is sent: cut the body short
            log.warning(
                "console download of %s/%s broke off after %d bytes: %s", bucket, key, sent, exc
            )
            if request.transport is not None:
                request.transport.close()
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
    return response


def console_app(
    keyring: Keyring,
    *,
    links: DownloadLinks | None = None,
    peer_status: PeerStatus | None = None,
    forward: Forward | None = None,
) -> web.Application:
    """The console sub-app. ``keyring``: the cluster keys the download links are signed
    under (``links`` replaces the signer, for tests); ``peer_status``: how to read another
    peer's status (``/ui/api/peers``); ``forward``: how to call another member's native
    API (``/ui/api/members/...``; none: 501 ``not_supported``). Its handlers find the
    object backend and the peer state in the parent app (``OBJECTS_KEY``, ``STATE_KEY``)."""
    app = web.Application()
    app[LINKS_KEY] = links if links is not None else DownloadLinks(keyring)
    app[ASSETS_KEY] = load_assets()
    if peer_status is not None:
        app[PEER_STATUS_KEY] = peer_status
    if forward is not None:
        app[FORWARD_KEY] = forward
    app.add_routes(routes)
    app.add_routes(session.routes)
    app.add_routes(actions.routes)
    app.add_routes(members.routes)
    return app


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect(CONSOLE_PREFIX)


def add_console(
    app: web.Application,
    keyring: Keyring,
    *,
    links: DownloadLinks | None = None,
    peer_status: PeerStatus | None = None,
    forward: Forward | None = None,
) -> None:
    """Mount the console on ``app`` at ``/ui/`` (and redirect ``/ui`` there), with its
    session cookie middleware (:func:`dfspeer.api.console.session.install_sessions`). The
    access rules of its routes are in :data:`dfspeer.access.routes.ROUTE_RULES`."""
    app.router.add_get(CONSOLE_PREFIX.rstrip("/"), _to_console)
    console = console_app(keyring, links=links, peer_status=peer_status, forward=forward)
    session.install_sessions(app, console, keyring)
    app.add_subapp(CONSOLE_PREFIX, console)
