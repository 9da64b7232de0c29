"""Log lines of Linli's long-running services: readable text, or one JSON object per line for a log shipper.

(Not `linli/logs.py`: run from a folder that holds a data directory named `linli`, an editable install
imports that directory's `logs` folder in its place — `linli demo`'s smoke test does exactly that.)

`configure_logging(settings.ops.log_format, name)` is called once at the start of `linli ingest`, `linli api`,
`python -m flows.serve` and `linli up`. JSON lines carry ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``process`` (the name `linli up` gave the process, else the service's own),
``pid``, any ``extra={...}`` fields of the call, and ``exc`` with the traceback of an exception.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

OWN_LOGGERS = ("linli", "flows", "tasks", "blocks")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What every LogRecord has: anything else on a record came from `extra=` and is written as a field.
_STANDARD = set(vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None))) | {"message", "asctime",
                                                                                        "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, process name, pid and extra fields."""

    def __init__(self, process_name: str) -> None:
        super().__init__()
        self.process_name = process_name

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (values JSON cannot hold are written as text)."""
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": self.process_name,
            "pid": record.process,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines; a flow or task run's lines name the run (Prefect's console handler did)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text."""
        text = super().format(record)
        run = getattr(record, "flow_run_name", None) or getattr(record, "task_run_name", None)
        return text.replace(f" {record.name}: ", f" {record.name} [{run}]: ", 1) if run else text


def configure_logging(log_format: str, process_name: str, *, level: int = logging.INFO,
                      loggers: tuple[str, ...] = ()) -> logging.Handler:
    """Send the root logger (and `loggers`, which libraries give handlers of their own) to stderr in `log_format`.

    Linli's own loggers log at `level`, the rest at WARNING (Prefect's keep their own levels).

    Replaces the handlers already there — Prefect and uvicorn install their own — so each line is
    written once and, in JSON mode, every line of the process's log is one JSON object.
    """
    # Prefect configures logging when it is first imported (its own root handler): import it now, so
    # a later import in this process does not put its handlers back over these.
    import prefect.main  # noqa: F401

    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter(process_name or sys.argv[0].rsplit('/', 1)[-1]))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # Others' chatter (httpx logs every request at INFO) stays at WARNING; Linli's own modules and
    # Prefect's (which sets its own levels) say what they do at `level`.
    root.setLevel(logging.WARNING)
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(level)
    logging.captureWarnings(True)  # a library's warning is a log line too, not a bare line on stderr
    for name in loggers:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)  # console handlers only: Prefect's API log handler stays
        logger.propagate = True
    return handler


def say(log_format: str, logger: logging.Logger, text: str, show: Callable[[str], object], **fields: Any) -> None:
    """A service's status line: shown as text for a person, or (json) logged as one line carrying `fields`."""
    if log_format == "json":
        logger.info(text, extra=fields)
    else:
        show(text)
