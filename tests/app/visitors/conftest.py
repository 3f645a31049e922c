"""Fixtures for the visitor tests: a fresh rate-limit store per test and a venue with a real poster."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import limiter
from app.models import MessageKind, OutboxMessage, Venue
from app.services import outbox, posters
from tests import factories


@pytest.fixture(autouse=True)
def fresh_rate_limits(app: Flask) -> Iterator[None]:
    with app.app_context():
        limiter.reset()
    yield


@dataclass
class Poster:
    venue: Venue
    token: str

    @property
    def path(self) -> str:
        return f"/p/{self.token}"


@pytest.fixture
def poster(db: Any, now: datetime) -> Poster:
    venue = factories.venue(name="Кафе «Тест»")
    _, token = posters.issue_poster(venue.entrances[0], now)
    return Poster(venue, token)


def last_code_sent_to(db: Any, phone: str) -> str:
    for message in db.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())):
        if message.kind == MessageKind.OTP and outbox.recipient_of(message) == phone:
            return re.search(r"\b(\d{6})\b", message.body).group(1)  # type: ignore[union-attr]
    raise AssertionError(f"no code went out to {phone}")


# One live server for the end-to-end tests of this package (OIDC settings are set per test run,
# since the provider's address and client secret are known only once it has started).
from tests.support.live import live_server_fixture  # noqa: E402
from tests.support.oidc import oidc_provider_fixture  # noqa: E402

live = live_server_fixture()
mos = oidc_provider_fixture(
    "mos",
    redirect_uris=["http://127.0.0.1/auth/mos/callback"],
    any_loopback_port=True,
    accounts=(
        {"sub": "mos-1001", "phone_number": "+79161234567", "name": "Иван Петров"},
        {"sub": "mos-1002"},
    ),
)
