"""mos.ru (or any OpenID Connect) sign-in: the Authlib client and what a verified identity maps to.

The subject is stored issuer-qualified (`issuer|sub`), encrypted and as a keyed hash. A phone number
claim links the account to the person with that number only when the provider says it is verified.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from authlib.integrations.flask_client import OAuth
from flask import Flask

from app.errors import ValidationError
from app.models import Person
from app.services import people, sign_in

EXTENSION = "mosru_oauth"
CLIENT_NAME = "mosru"


def is_enabled(app: Flask) -> bool:
    return bool(app.config.get("OIDC_ISSUER"))


def client(app: Flask) -> Any:
    """The app's Authlib client, registered on first use (create_app stays free of network set-up)."""
    oauth: OAuth | None = app.extensions.get(EXTENSION)
    if oauth is None:
        oauth = OAuth(app)
        issuer = app.config["OIDC_ISSUER"].rstrip("/")
        oauth.register(
            CLIENT_NAME,
            client_id=app.config["OIDC_CLIENT_ID"],
            client_secret=app.config["OIDC_CLIENT_SECRET"],
            server_metadata_url=issuer + "/.well-known/openid-configuration",
            client_kwargs={"scope": "openid phone", "code_challenge_method": "S256", "timeout": 10},
        )
        app.extensions[EXTENSION] = oauth
    return oauth.create_client(CLIENT_NAME)


def sign_in_with_claims(issuer: str, claims: dict[str, Any], now: datetime) -> tuple[Person, str]:
    """Find or create the person for verified claims; returns (person, new remembered-device token).

    Order: the account already linked wins; else a verified phone number finds the person with it
    (and links the account); else a new person holds the account (and the verified number, if any).
    If the linked person has no number yet, a verified number is added unless another person has it.
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject or len(subject) > 255:
        raise ValidationError("mos.ru did not say who you are; please try again.")
    phone: str | None = None
    raw_phone = claims.get("phone_number")
    if isinstance(raw_phone, str) and claims.get("phone_number_verified") is True:
        try:
            phone = people.normalise_phone(raw_phone)
        except ValidationError:
            phone = None
    person = people.find_by_subject(issuer, subject)
    by_phone = people.find_by_phone(phone) if phone else None
    if person is None and by_phone is not None:
        person = by_phone
        people.attach_subject(person, issuer, subject)
    elif person is None and phone:
        person, _ = people.get_or_create_by_phone(phone, now)
        people.attach_subject(person, issuer, subject)
    elif person is None:
        # The same first sign-in twice at once (two tabs) finds one person, not a server error.
        person, _ = people.get_or_create_by_subject(issuer, subject, now)
    elif person.phone_hash is None and phone and by_phone is None:
        people.set_phone(person, phone)
    person.last_seen_at = now
    return person, sign_in.remember_device(person, now)
