"""Loopback stand-ins for the kiosk tests: a contract-faithful kiosk API server and a simulated clock."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

CREDENTIAL = "kiosk-credential-1"
ROTATION_SECRET_B64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"  # b"secret-secret-secret-secret"
PAIRING_CODE = "PAIR-1234"


class SimClock:
    """True time in a test; kiosk clocks are derived from it (possibly skewed)."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += timedelta(seconds=seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeKioskServer:
    """Implements POST enrol / checkins / heartbeat with dedup by client_id, on 127.0.0.1."""

    def __init__(self, port: int = 0, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.clock = clock
        self.port = port
        self.items: dict[str, dict[str, Any]] = {}  # client_id -> first item received
        self.received = 0
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.heartbeats: list[dict[str, Any]] = []
        self.is_revoked = False
        self.drop_responses = 0  # commit, then close the connection without answering
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeKioskServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                path = self.path.removeprefix("/api/v1/kiosk/")
                with server.lock:
                    server.requests.append((path, body))
                    status, reply = server.handle(path, body, self.headers.get("Authorization", ""))
                    if path == "checkins" and server.drop_responses > 0:
                        server.drop_responses -= 1
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                self._reply(status, reply)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def handle(self, path: str, body: dict[str, Any], auth: str) -> tuple[int, dict[str, Any]]:
        now = self.clock().isoformat()
        if path == "enrol":
            if body.get("pairing_code") != PAIRING_CODE:
                return 404, {"error": "unknown pairing code"}
            return 201, {
                "kiosk_id": 7,
                "credential": CREDENTIAL,
                "rotation_secret": ROTATION_SECRET_B64,
                "venue_name": "Театр «Школа»",
                "entrance_name": "Main door",
                "checkin_base_url": "https://checkin.example.test",
                "server_time": now,
            }
        if auth != f"Bearer {CREDENTIAL}" or self.is_revoked:
            return 401, {"error": "credential revoked"}
        if path == "heartbeat":
            self.heartbeats.append(body)
            return 200, {"server_time": now}
        if path == "checkins":
            items = body["items"]
            if len(items) > 500:
                return 400, {"error": "too many items"}
            results = []
            for item in items:
                self.received += 1
                if item["client_id"] in self.items:
                    results.append({"client_id": item["client_id"], "status": "duplicate", "reason": None})
                else:
                    self.items[item["client_id"]] = item
                    results.append({"client_id": item["client_id"], "status": "accepted", "reason": None})
            return 200, {"server_time": now, "results": results}
        return 404, {"error": "not found"}


@pytest.fixture
def kiosk_server() -> Iterator[FakeKioskServer]:
    server = FakeKioskServer().start()
    yield server
    server.stop()


def make_credential(server_url: str) -> Any:
    from venue_kiosk.config import Credential, decode_secret

    return Credential(
        server_url=server_url,
        kiosk_id=7,
        credential=CREDENTIAL,
        rotation_secret=decode_secret(ROTATION_SECRET_B64),
        venue_name="Театр «Школа»",
        entrance_name="Main door",
        checkin_base_url="https://checkin.example.test",
    )


def make_config(state_dir: Any, server_url: str, **overrides: Any) -> Any:
    from venue_kiosk.config import KioskConfig

    settings: dict[str, Any] = {
        "server_url": server_url,
        "state_dir": state_dir,
        "screen_port": 0,
        "ble_enabled": False,
        "sync_interval_s": 0.05,
    }
    settings.update(overrides)
    return KioskConfig(**settings)
