"""A small real HTTP receiver for notifications: local trials (`linli dev receiver`) and tests.

Point an Apprise JSON URL at it (``json://127.0.0.1:8765/linli``) and every message Linli sends
arrives as a plain dict::

    {"method": "POST", "path": "/linli", "query": "", "headers": {...},
     "body": "<raw text>", "json": {...} or None, "received_at": "2024-05-01T06:30:00+00:00"}

It answers every request with `status_code` (200 unless told otherwise), so tests can make a
channel fail on purpose.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

Message = dict[str, Any]


class _Handler(BaseHTTPRequestHandler):
    """Records the request on the server's receiver and answers with its status code."""

    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        text = raw.decode("utf-8", errors="replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except json.JSONDecodeError:
            parsed = None
        parts = urlsplit(self.path)
        message: Message = {
            "method": self.command,
            "path": parts.path,
            "query": parts.query,
            "headers": dict(self.headers.items()),
            "body": text,
            "json": parsed,
            "received_at": datetime.now(UTC).isoformat(),
        }
        receiver = self.server.receiver
        receiver._record(message)
        status = receiver.status_code
        reply = json.dumps({"ok": 200 <= status < 300}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        logger.debug("receiver: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: NotificationReceiver


class NotificationReceiver:
    """An HTTP server that records every request it gets; use it as a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        status_code: int = 200,
        on_message: Callable[[Message], None] | None = None,
    ) -> None:
        self.status_code = status_code
        self.on_message = on_message
        self.messages: list[Message] = []
        self._arrived = threading.Condition()
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The port the server listens on (chosen by the OS when 0 was asked)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:8765."""
        return f"http://{self.host}:{self.port}"

    def apprise_url(self, path: str = "linli") -> str:
        """An Apprise JSON URL that delivers to this receiver, e.g. json://127.0.0.1:8765/linli."""
        return f"json://{self.host}:{self.port}/{path.lstrip('/')}"

    def _record(self, message: Message) -> None:
        with self._arrived:
            self.messages.append(message)
            self._arrived.notify_all()
        if self.on_message is not None:
            self.on_message(message)

    def wait_for(
        self, predicate: Callable[[Message], bool] = lambda _m: True, timeout: float = 10.0, *, count: int = 1
    ) -> list[Message]:
        """The messages matching `predicate` once at least `count` arrived; TimeoutError otherwise."""
        with self._arrived:
            matched: list[Message] = []

            def enough() -> bool:
                matched[:] = [m for m in self.messages if predicate(m)]
                return len(matched) >= count

            if not self._arrived.wait_for(enough, timeout=timeout):
                raise TimeoutError(
                    f"{len(matched)} of {count} expected message(s) arrived at {self.url} within {timeout} s "
                    f"({len(self.messages)} message(s) in all)"
                )
            return list(matched)

    def start(self) -> NotificationReceiver:
        """Serve in a background thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name=f"linli-receiver-{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until `close()` is called from another one (or Ctrl-C)."""
        self._server.serve_forever()

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> NotificationReceiver:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def run_receiver(port: int, on_message: Callable[[Message], None], *, host: str = "127.0.0.1") -> None:
    """Serve on `host:port` in this thread, calling `on_message` for each arrival, until Ctrl-C."""
    receiver = NotificationReceiver(host, port, on_message=on_message)
    logger.info("notification receiver listening on %s (Apprise URL %s)", receiver.url, receiver.apprise_url())
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        logger.info("notification receiver stopped")
    finally:
        receiver.close()
