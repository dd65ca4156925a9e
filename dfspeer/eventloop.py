"""The agent's event loop: uvloop (libuv) when it is installed, else asyncio's own.

uvloop runs the same asyncio programs with its event loop, transports and socket calls in
Cython over libuv; aiohttp and the datagram endpoints run on it unchanged. On three local
agents it cut the CPU per 4 KiB GET and HEAD by 7 to 15 % and the CPU per uploaded GiB by
about 8 % (README, *Event loop*). The ``event_loop`` setting chooses: ``auto`` (the
default: uvloop if importable), ``uvloop`` (required: the agent refuses to start without
it) or ``asyncio``. It is a dependency on Linux and macOS; elsewhere ``auto`` means asyncio.
Only the ``dfspeer agent`` command picks a loop: a program embedding dfspeer keeps its own.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from dfspeer.settings.errors import ConfigError

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop] | None]:
    """``(name, factory)`` for the ``event_loop`` setting ``choice``: the loop's name as
    logged (``"uvloop 0.23.0"``, ``"asyncio"``) and the factory for :class:`asyncio.Runner`
    (None: asyncio's default). Raises ConfigError for an unknown choice, or for
    ``uvloop`` when it is not installed."""
    if choice not in CHOICES:
        raise ConfigError(f"event_loop: must be one of {', '.join(CHOICES)}, not {choice!r}")
    if choice == "asyncio":
        return "asyncio", None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "event_loop: uvloop is not installed (pip install uvloop, or event_loop = "
                '"asyncio")'
            ) from None
        return "asyncio", None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return f"uvloop {getattr(uvloop, '__version__', '')}".strip(), factory


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """Run ``main`` to completion on the loop ``choice`` names (see :func:`loop_factory`,
    whose ConfigError this raises before ``main`` starts; ``main`` is then closed)."""
    try:
        _, factory = loop_factory(choice)
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
