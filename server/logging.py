"""Structured JSON logs with the call id on every line.

`call_id` travels in a context variable: set once when a call starts, every task and worker thread of that call
inherits it, so no log call has to pass it by hand. Caller data (transcripts, phone numbers, application numbers)
goes only into the dedicated `caller` field (`log.info("turn", extra={"caller": {...}})`), which is masked unless
`log_caller_data` is on; message text stays free of it, so logs can be shipped and searched without exposing callers.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys
from typing import Any

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("hotline_call_id", default=None)

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}
MASK = "***"


def mask(value: Any) -> Any:
    """Keep the shape (keys, lengths) of caller data, never its content."""
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return f"{MASK}({len(str(value))})"


class CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_id", None):
            record.call_id = call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, *, caller_data: bool = False) -> None:
        super().__init__()
        self.caller_data = caller_data

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "call_id": getattr(record, "call_id", None),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key in out or key.startswith("_"):
                continue
            out[key] = (value if self.caller_data else mask(value)) if key == "caller" else value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    def __init__(self, *, caller_data: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s")
        self.caller_data = caller_data

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        caller = getattr(record, "caller", None)
        if caller is not None:
            text += f" caller={caller if self.caller_data else mask(caller)}"
        return text


_QUERY = re.compile(r"\?[^\s\"']*")
WEB_LOGGERS = ("uvicorn.access", "uvicorn.error")


class RedactQueries(logging.Filter):
    """Drops the query string of every URL that uvicorn logs (its access log and its websocket lines
    `"WebSocket /ws/agent?ticket=…" [accepted]`): queries carry tickets and supervisors' searches (phone numbers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_QUERY.sub("?[redacted]", a) if isinstance(a, str) and "?" in a else a
                                for a in record.args)
        if isinstance(record.msg, str) and "?" in record.msg:
            record.msg = _QUERY.sub("?[redacted]", record.msg)
        return True


def redact_web_queries() -> None:
    """Install RedactQueries on uvicorn's loggers (idempotent): it runs before any handler, ours or a test's."""
    for name in WEB_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQueries) for f in logger.filters):
            logger.addFilter(RedactQueries())


def configure_logging(*, level: str = "INFO", json_lines: bool = True, caller_data: bool = False) -> None:
    """Route the `hotline`/`server`/`voice`/`routing` loggers and uvicorn's through one formatter on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(JsonFormatter(caller_data=caller_data) if json_lines else PlainFormatter(caller_data=caller_data))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_hotline", False)]:
        root.removeHandler(old)
    handler._hotline = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    redact_web_queries()
