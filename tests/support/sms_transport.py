"""A scripted SMS transport for unit tests of the gateways' and the dispatcher's own logic.

The real transport (aiohttp) is tested against loopback servers in test_sms_transport.py and,
through the gateways, against a real Kannel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from app.services.sms_transport import Exchange, HttpRequest


class ScriptedTransport:
    def __init__(self, answer: Callable[[HttpRequest], Exchange]) -> None:
        self.answer = answer
        self.requests: list[HttpRequest] = []
        self.closed = False
        self.start_within: float | None = None

    def exchange_many(self, requests: Sequence[HttpRequest], start_within: float | None = None) -> list[Exchange]:
        self.start_within = start_within
        self.requests.extend(requests)
        return [self.answer(r) for r in requests]

    def close(self) -> None:
        self.closed = True
