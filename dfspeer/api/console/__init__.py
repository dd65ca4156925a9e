"""The web console: a single-page UI served at ``/ui/`` on every peer's API port.

The console is its own aiohttp sub-app (:func:`console_app`, mounted by
:func:`add_console`) with its own router. It serves the static assets in ``static/``
(HTML, CSS and JavaScript ES modules shipped as package data: no build step, nothing
fetched from elsewhere) and the little JSON only it needs: sessions
(:mod:`dfspeer.api.console.session`), signed download and share links
(:mod:`dfspeer.api.console.links`), version restore and other peers' figures
(:mod:`dfspeer.api.console.actions`), an admin's drain and block reference recount of
another member (:mod:`dfspeer.api.console.members`). Everything else the UI shows it
reads from the native ``/v1`` API with ``fetch``: the session cookie (the credential,
sealed; no server-side state) stands for ``Authorization: Bearer ...``, and a CSRF token
guards every mutation.
"""

from dfspeer.api.console.app import CONSOLE_PREFIX, add_console, console_app

__all__ = ["CONSOLE_PREFIX", "add_console", "console_app"]
