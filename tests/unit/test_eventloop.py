"""The agent's event loop choice (``event_loop``): uvloop when installed unless told
otherwise, a clear error when uvloop is required and missing."""

from __future__ import annotations

import asyncio
import importlib
import warnings
from types import ModuleType

import pytest

from dfspeer import eventloop
from dfspeer.config import ConfigError, PeerConfig


async def running_loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: str | None = None) -> ModuleType:
        if name == "uvloop":
            raise ImportError("No module named 'uvloop'")
        return real(name, package)

    monkeypatch.setattr(eventloop.importlib, "import_module", fake)


def test_asyncio_is_asyncio() -> None:
    assert eventloop.loop_factory("asyncio") == ("asyncio", None)
    assert eventloop.run(running_loop_module(), "asyncio") == "asyncio"


def test_auto_and_uvloop_run_on_uvloop_where_installed() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is a dependency only off Windows")
    for choice in ("auto", "uvloop"):
        name, factory = eventloop.loop_factory(choice)
        assert name == f"uvloop {uvloop.__version__}" and factory is not None
        assert eventloop.run(running_loop_module(), choice) == "uvloop"


def test_without_uvloop_auto_falls_back_and_uvloop_refuses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    without_uvloop(monkeypatch)
    assert eventloop.loop_factory("auto") == ("asyncio", None)
    assert eventloop.run(running_loop_module(), "auto") == "asyncio"
    main = running_loop_module()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        with pytest.raises(ConfigError, match="uvloop is not installed"):
            eventloop.run(main, "uvloop")
    assert main.cr_frame is None  # closed, not left pending


def test_the_setting_is_checked() -> None:
    assert PeerConfig().event_loop == "auto"
    assert PeerConfig(event_loop="asyncio").event_loop == "asyncio"
    with pytest.raises(ConfigError, match="event_loop"):
        PeerConfig(event_loop="trio")
    with pytest.raises(ConfigError, match="event_loop"):
        eventloop.loop_factory("trio")
