"""The web console: a single-page UI served at ``/ui/`` on every peer's API port.

The console is its own aiohttp sub-app (:func:`console_app`, mounted by
:func:`add_console`) with its own router. It serves the static assets in ``static/``
(HTML, CSS and JavaScript ES modules shipped as package data: no build step, nothing
fetched from elsewhere) and the little JSON only it needs (signed download links,
:mod:`dfspeer.api.console.links`). Everything else the UI shows it reads from the native
``/v1`` API with ``fetch``, sending the credential the user logged in with as
``Authorization: Bearer ...``: there is no server-side session.
"""

from dfspeer.api.console.app import CONSOLE_PREFIX, add_console, console_app

__all__ = ["CONSOLE_PREFIX", "add_console", "console_app"]
