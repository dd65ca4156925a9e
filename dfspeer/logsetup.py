"""Logging of a ``dfspeer agent``: human text (the default) or one JSON object per line.

The JSON form is for log shippers (Loki, Elasticsearch, journald's JSON output); every
line is one object with these keys:

- ``time``: the record's creation time, ISO 8601 UTC with milliseconds
  (``2025-01-31T12:00:00.123Z``);
- ``level``: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``;
- ``logger``: the logger name (``dfspeer.api``, ``dfspeer.gossip.agent``, ...);
- ``message``: the formatted message;
- ``request_id``: the id of the HTTP request being served when the record was made (the
  same id the client sees in ``X-Request-Id``), else ``null``;
- ``trace_id``: the OpenTelemetry trace id (32 hex digits) of the span current when the
  record was made, else ``null`` (always ``null`` while tracing is off, see
  :mod:`dfspeer.tracing`);
- ``exception`` (only when the record carries one): the formatted traceback.

The request id travels in :data:`current_request_id`, a :class:`contextvars.ContextVar`
that :func:`dfspeer.api.observability.request_context_middleware` sets for the duration
of each request, so every record logged while serving it (in the handler, in tasks it
starts, in the error middleware) carries the id without being passed around.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import sys
from typing import Any, TextIO

from dfspeer.tracing import current_trace_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dfspeer_request_id", default=None
)
"""Id of the HTTP request the current task is serving, or None outside a request."""


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object (newlines in values are escaped)."""
        request_id = getattr(record, "request_id", None)
        if request_id is None:
            request_id = current_request_id.get()
        created = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id,
            "trace_id": current_trace_id(),
        }
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
            entry["exception"] = record.exc_text
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` (``"text"`` or ``"json"``); ValueError otherwise."""
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    if log_format == "json":
        return JsonFormatter()
    raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")


def configure_logging(
    level: str, log_format: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every record at ``level`` or above to ``stream`` (stderr) in ``log_format``.

    ``level`` is a level name (``debug``, ``info``, ...). Like :func:`logging.basicConfig`
    this configures the root logger once: if it already has handlers it is left alone.
    Returns the handler (installed or not). Raises ValueError on an unknown format.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(make_formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    return handler


__all__ = [
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "JsonFormatter",
    "configure_logging",
    "current_request_id",
    "make_formatter",
]
