"""Demo data for `make run`: one organisation with a few venues, an official, and a kiosk."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from app.extensions import db
from app.models import EntranceKind, Kiosk, OfficialRole, Organisation, Venue
from app.services import accounts, kiosks, posters, venues
from app.services.personal_data import keyring, secret_hash

DEMO_ORGANISATION = "Кофейни «Ромашка»"
OPERATOR_EMAIL = "operator@demo.example"
OPERATOR_PASSWORD = "demo-operator-pass"
OFFICIAL_EMAIL = "official@demo.example"
OFFICIAL_PASSWORD = "demo-official-pass"


@dataclass(frozen=True)
class DemoSummary:
    created: bool
    venues: list[tuple[str, str, str]]  # (name, short code, check-in URL of its first poster)
    pairing_code: str


def load_demo(now: datetime) -> DemoSummary:
    """Create the demo records once; later calls find them and only issue a fresh kiosk pairing code."""
    organisation = db.session.scalar(select(Organisation).where(Organisation.name == DEMO_ORGANISATION))
    created = organisation is None
    if organisation is None:
        operator = accounts.create_organisation_with_owner(DEMO_ORGANISATION, OPERATOR_EMAIL, OPERATOR_PASSWORD)
        organisation = operator.organisation
        venues.create_venue(
            organisation.id,
            "Кофейня «Ромашка» на Тверской",
            address="Тверская ул., 7",
            kind="cafe",
            default_stay_minutes=60,
            capacity=40,
        )
        theatre = venues.create_venue(
            organisation.id,
            "Театр на Покровке",
            address="Покровка, 12",
            kind="theatre",
            default_stay_minutes=180,
            capacity=300,
            entrance_names=("Главный вход", "Служебный вход"),
        )
        venues.add_entrance(theatre, "Большой зал", EntranceKind.HALL)
        venues.add_entrance(theatre, "Малый зал", EntranceKind.HALL)
        ministry = venues.create_venue(
            organisation.id,
            "Министерство, корпус 1",
            address="Новый Арбат, 36",
            kind="government",
            default_stay_minutes=240,
            capacity=1200,
            entrance_names=("Подъезд 1", "Подъезд 2"),
        )
        accounts.create_official(
            OFFICIAL_EMAIL, OFFICIAL_PASSWORD, "Дежурный эпидемиолог", OfficialRole.SUPERVISOR, can_reveal=True
        )
        db.session.add(
            Kiosk(
                entrance_id=ministry.entrances[0].id,
                name="Планшет у подъезда 1",
                credential_hash=secret_hash(secrets.token_urlsafe(32)),
                rotation_secret_enc=keyring().encrypt(secrets.token_urlsafe(32), context="kiosk"),
                enrolled_at=now,
            )
        )
    all_venues = db.session.scalars(
        select(Venue).where(Venue.organisation_id == organisation.id).order_by(Venue.id)
    ).all()
    pairing_code = kiosks.create_pairing_code(all_venues[-1].entrances[-1].id, now)
    db.session.flush()
    listed = [
        (v.name, v.short_code, posters.poster_url(posters.current_token(v.entrances[0], now))) for v in all_venues
    ]
    return DemoSummary(created, listed, pairing_code)


def demo_logins() -> list[tuple[str, str, str]]:
    return [
        ("venue operator", OPERATOR_EMAIL, OPERATOR_PASSWORD),
        ("health official (supervisor)", OFFICIAL_EMAIL, OFFICIAL_PASSWORD),
    ]


__all__ = ["DemoSummary", "demo_logins", "load_demo"]
