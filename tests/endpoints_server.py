"""A real HTTP server on 127.0.0.1 that plays the Microsoft 365 IP and URL web service, for tests.

It serves recorded answers built from the reference files (tests/data/endpoints/: the bundled snapshot's
sets as version 2025013000, the verbatim 2020 answer as 2020122300, a /changes answer) on a random port
in a thread of its own, records every request, and injects faults on demand::

    with EndpointsServer() as server:
        server.fail("/endpoints/", status=500)            # next /endpoints request answers 500
        Endpoints.fetch(base_url=server.base_url, cache_dir=tmp_path)
        server.requests                                  # [(path, query, headers), ...]

Faults (each for ``times`` requests whose path starts with the prefix): ``status`` (+ ``headers`` such as
Retry-After), ``delay`` (seconds before answering), ``body`` (raw bytes instead of the recorded answer)
and ``truncate`` (declare a longer Content-Length than is sent, then close). Only loopback is used.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "endpoints"
SNAPSHOT = Path(__file__).parents[1] / "analysis" / "reference" / "data" / "endpoints" / "worldwide.json"
NEW_VERSION = "2025013000"
OLD_VERSION = "2020122300"


def recorded_sets(version: str = NEW_VERSION) -> list[dict[str, Any]]:
    """The /endpoints/Worldwide answer of a recorded version."""
    if version == NEW_VERSION:
        return json.loads(SNAPSHOT.read_text(encoding="utf-8"))["endpoints"]
    if version == OLD_VERSION:
        return json.loads((DATA / "worldwide-2020122300-verbatim.json").read_text(encoding="utf-8"))
    raise KeyError(version)


@dataclass
class Request:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class Fault:
    prefix: str
    times: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None
    truncate: bool = False


class EndpointsServer:
    """The fake web service; use as a context manager."""

    def __init__(self) -> None:
        self.latest: dict[str, str] = {"Worldwide": NEW_VERSION, "China": NEW_VERSION}
        self.sets: dict[tuple[str, str], Any] = {
            ("Worldwide", NEW_VERSION): recorded_sets(NEW_VERSION),
            ("Worldwide", OLD_VERSION): recorded_sets(OLD_VERSION),
            ("China", NEW_VERSION): [s for s in recorded_sets(NEW_VERSION) if s["serviceArea"] == "Exchange"],
        }
        self.changes: dict[tuple[str, str], Any] = {
            ("Worldwide", OLD_VERSION): json.loads(
                (DATA / f"changes-worldwide-{OLD_VERSION}.json").read_text(encoding="utf-8")),
        }
        self.requests: list[Request] = []
        self.redirects: dict[str, str] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="endpoints-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> EndpointsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def fail(self, prefix: str, *, times: int = 1, status: int | None = None, headers: dict[str, str] | None = None,
             delay: float = 0.0, body: bytes | None = None, truncate: bool = False) -> None:
        """Answer the next ``times`` requests under ``prefix`` with a fault instead of the recorded answer."""
        with self._lock:
            self._faults.append(Fault(prefix, times, status, dict(headers or {}), delay, body, truncate))

    def paths(self, prefix: str = "/") -> list[str]:
        """The paths requested so far (optionally only those under ``prefix``)."""
        return [r.path for r in self.requests if r.path.startswith(prefix)]

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.prefix) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def _answer(self, path: str) -> tuple[int, Any]:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 2 and parts[0] == "version":
            if parts[1] not in self.latest:
                return 400, {"error": f"unknown instance {parts[1]}"}
            return 200, {"instance": parts[1], "latest": self.latest[parts[1]]}
        if len(parts) == 2 and parts[0] == "endpoints":
            key = (parts[1], self.latest.get(parts[1], ""))
            return (200, self.sets[key]) if key in self.sets else (400, {"error": "unknown instance"})
        if len(parts) == 3 and parts[0] == "changes":
            return 200, self.changes.get((parts[1], parts[2]), [])
        return 404, {"error": "not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                server.requests.append(Request(url.path, urllib.parse.parse_qs(url.query), dict(self.headers)))
                if url.path in server.redirects:
                    self._send(302, b"", {"Location": server.redirects[url.path]})
                    return
                fault = server._take_fault(url.path)
                if fault and fault.delay:
                    server._stop.wait(fault.delay)
                status, payload = server._answer(url.path)
                body = json.dumps(payload).encode()
                headers: dict[str, str] = {}
                if fault:
                    status = fault.status or status
                    headers = fault.headers
                    body = fault.body if fault.body is not None else body
                    if fault.truncate:
                        self._send(status, body[: len(body) // 2], headers, length=len(body))
                        self.close_connection = True
                        return
                self._send(status, body, headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str], length: int | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body) if length is None else length))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                    self.close_connection = True

        return Handler
