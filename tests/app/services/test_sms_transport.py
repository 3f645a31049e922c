"""The aiohttp transport against loopback servers that misbehave in the ways gateways do.

What matters is the line between "not reached" (safe to send again) and "in doubt" (the gateway
may have the message): these tests put real sockets on each side of it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from app.services.sms_transport import AiohttpTransport, HttpAnswer, HttpFailure, HttpRequest
from tests.support.kannel import free_port

OK = b"HTTP/1.1 202 Accepted\r\nContent-Type: text/plain\r\nContent-Length: 26\r\n\r\n0: Accepted for delivery\r\n"


class LoopbackServer:
    """Accepts connections; `behave(server, connection)` runs on its own thread per connection."""

    def __init__(self, behave: Callable[[LoopbackServer, socket.socket], None]) -> None:
        self.behave = behave
        self.requests: list[bytes] = []
        self.open_now = 0
        self.most_open = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/cgi-bin/sendsms"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with self.lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            connection.settimeout(5)
            self.behave(self, connection)
        except OSError:
            pass
        finally:
            with self.lock:
                self.open_now -= 1
            connection.close()

    def read_request(self, connection: socket.socket) -> bytes | None:
        """One whole request (headers and Content-Length body), or None when the client closed."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
        )
        while len(body) < length:
            body += connection.recv(65536)
        with self.lock:
            self.requests.append(head + b"\r\n\r\n" + body)
        return head

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


@contextmanager
def serving(behave: Callable[[LoopbackServer, socket.socket], None]) -> Iterator[LoopbackServer]:
    server = LoopbackServer(behave)
    try:
        yield server
    finally:
        server.close()


def answer_all(server: LoopbackServer, connection: socket.socket) -> None:
    while server.read_request(connection) is not None:
        time.sleep(0.02)  # long enough for requests to pile up on other connections
        connection.sendall(OK)


def request(url: str, n: int) -> HttpRequest:
    return HttpRequest("POST", url, body=f"message {n}".encode(), headers={"X-Kannel-To": f"+7916000{n:04d}"})


@pytest.fixture
def transport() -> Iterator[AiohttpTransport]:
    transport = AiohttpTransport(timeout=0.5, concurrency=4)
    yield transport
    transport.close()


def test_a_refused_connection_is_not_in_doubt(transport: AiohttpTransport) -> None:
    [failure] = transport.exchange_many([request(f"http://127.0.0.1:{free_port()}/cgi-bin/sendsms", 1)])
    assert isinstance(failure, HttpFailure) and not failure.in_doubt, failure


def test_no_answer_after_the_request_went_out_is_in_doubt(transport: AiohttpTransport) -> None:
    def read_and_say_nothing(server: LoopbackServer, connection: socket.socket) -> None:
        server.read_request(connection)
        server.stopping.wait(3)

    with serving(read_and_say_nothing) as server:
        started = time.monotonic()
        [failure] = transport.exchange_many([request(server.url, 1)])
        assert isinstance(failure, HttpFailure) and failure.in_doubt, failure
        assert time.monotonic() - started < 2.5  # the read timeout is 0.5 s
        assert len(server.requests) == 1


def test_a_reused_connection_dropped_after_the_request_is_in_doubt_and_not_repeated(
    transport: AiohttpTransport,
) -> None:
    def answer_once_then_drop(server: LoopbackServer, connection: socket.socket) -> None:
        server.read_request(connection)
        connection.sendall(OK)  # kept alive ...
        server.read_request(connection)  # ... the second request arrives, and the line drops

    with serving(answer_once_then_drop) as server:
        [first] = transport.exchange_many([request(server.url, 1)])
        [second] = transport.exchange_many([request(server.url, 2)])
        time.sleep(0.3)  # a repeat by the HTTP client would arrive by now
    assert first == HttpAnswer(202, "0: Accepted for delivery\r\n")
    assert isinstance(second, HttpFailure) and second.in_doubt, second
    assert len(server.requests) == 2  # the dropped request was not sent again


def test_a_batch_uses_at_most_concurrency_connections_and_keeps_order(transport: AiohttpTransport) -> None:
    with serving(answer_all) as server:
        answers = transport.exchange_many([request(server.url, n) for n in range(40)])
        again = transport.exchange_many([request(server.url, n) for n in range(40, 48)])
    assert answers + again == [HttpAnswer(202, "0: Accepted for delivery\r\n")] * 48
    assert 2 <= server.most_open <= 4
    bodies = sorted(int(r.rsplit(b" ", 1)[1]) for r in server.requests)
    assert bodies == list(range(48))


def test_a_closed_transport_refuses_work_and_stops_its_thread() -> None:
    transport = AiohttpTransport(timeout=0.5, concurrency=2)
    thread = transport._thread
    transport.close()
    transport.close()  # twice is harmless
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        transport.exchange_many([request("http://127.0.0.1:1/", 1)])


def test_requests_not_started_in_time_are_not_sent_and_not_in_doubt() -> None:
    """A gateway that never answers: one request at a time, each waiting out the read timeout;
    those whose turn comes after `start_within` are never sent."""

    def read_and_say_nothing(server: LoopbackServer, connection: socket.socket) -> None:
        while server.read_request(connection) is not None:
            server.stopping.wait(3)

    transport = AiohttpTransport(timeout=0.3, concurrency=1)
    try:
        with serving(read_and_say_nothing) as server:
            started = time.monotonic()
            answers = transport.exchange_many([request(server.url, n) for n in range(6)], start_within=0.5)
            elapsed = time.monotonic() - started
            sent = len(server.requests)
    finally:
        transport.close()
    assert all(isinstance(a, HttpFailure) for a in answers)
    in_doubt = [a for a in answers if isinstance(a, HttpFailure) and a.in_doubt]
    untouched = [a for a in answers if isinstance(a, HttpFailure) and not a.in_doubt]
    assert len(in_doubt) == sent and 1 <= sent <= 3  # started before 0.5 s, then timed out
    assert len(untouched) == 6 - sent and all("not attempted" in a.detail for a in untouched)
    assert elapsed < 0.5 + 2 * 0.6 + 0.5
