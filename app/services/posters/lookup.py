"""A scanned poster token checked against the database: where it checks people in, or why not."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import bindparam, select

from app.extensions import db
from app.models import Entrance, PosterSigningKey, PosterVersion, Venue
from app.services.posters.tokens import (
    SIGNING_PREFIX,
    PosterReplaced,
    PosterTokenInvalid,
    PosterVenueClosed,
    TokenFields,
    decode_token,
)


@dataclass(frozen=True)
class PosterRef:
    venue: Venue
    entrance: Entrance
    poster_version: PosterVersion


# Built once: constructing the statement costs more Python time than SQLite takes to run it.
# One lookup, two readings: the version by its unique (entrance, version) pair, joined to its
# entrance, venue and signing key; as ORM objects (_RESOLVE) or as plain columns (TARGET_QUERY).
_venues, _entrances = Venue.__table__, Entrance.__table__
_versions, _keys = PosterVersion.__table__, PosterSigningKey.__table__
_POSTER_JOIN = (
    _versions.join(_entrances, _versions.c.entrance_id == _entrances.c.id)
    .join(_venues, _entrances.c.venue_id == _venues.c.id)
    .join(_keys, _versions.c.signing_key_id == _keys.c.id)
)
_POSTER_KEY = (
    _versions.c.entrance_id == bindparam("entrance_id"),
    _versions.c.version == bindparam("version"),
    _keys.c.id == bindparam("key_id"),
)
_RESOLVE = select(PosterVersion, Entrance, Venue, PosterSigningKey).select_from(_POSTER_JOIN).where(*_POSTER_KEY)


@dataclass(frozen=True)
class PosterTarget:
    """Where a valid poster token checks people in: plain values, for the JSON check-in's fast path."""

    venue_id: int
    venue_name: str
    venue_short_code: str
    default_stay_minutes: int
    entrance_id: int


TARGET_QUERY = (
    select(
        _venues.c.id,
        _venues.c.name,
        _venues.c.short_code,
        _venues.c.default_stay_minutes,
        _venues.c.archived_at,
        _entrances.c.id,
        _entrances.c.archived_at,
        _versions.c.revoked_at,
        _keys.c.public_key,
        _keys.c.revoked_at,
    )
    .select_from(_POSTER_JOIN)
    .where(*_POSTER_KEY)
)


@lru_cache(maxsize=8192)
def _signature_is_valid(public_key: bytes, signature: bytes, payload: bytes) -> bool:
    """Ed25519 verification, remembered: a pure function of its arguments, and a busy venue's
    poster is scanned thousands of times a day (verifying costs about 0.1 ms)."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, SIGNING_PREFIX + payload)
    except (InvalidSignature, ValueError):
        return False
    return True


def _check_row(
    now: datetime,
    signature: bytes,
    payload: bytes,
    public_key: bytes,
    key_revoked_at: datetime | None,
    version_revoked_at: datetime | None,
    venue_archived_at: datetime | None,
    entrance_archived_at: datetime | None,
) -> None:
    """The checks after the lookup, in the order that reveals least to a forger."""
    if key_revoked_at is not None and key_revoked_at <= now:
        raise PosterTokenInvalid()
    if not _signature_is_valid(bytes(public_key), signature, payload):
        raise PosterTokenInvalid()
    if version_revoked_at is not None and version_revoked_at <= now:
        raise PosterReplaced()
    if venue_archived_at is not None and venue_archived_at <= now:
        raise PosterVenueClosed()
    if entrance_archived_at is not None and entrance_archived_at <= now:
        raise PosterVenueClosed("This entrance is closed; please scan the poster at another entrance.")


def decode_checked(token: str) -> tuple[TokenFields, bytes, bytes]:
    """decode_token, failing as a scan does: PosterTokenInvalid."""
    try:
        return decode_token(token)
    except ValueError:
        raise PosterTokenInvalid() from None


def resolve_poster_token(token: str, now: datetime) -> PosterRef:
    """Check a scanned token: well formed, signed by a known unrevoked key, current, venue open.

    Raises PosterTokenInvalid (400), PosterReplaced (410) or PosterVenueClosed (410); never
    anything else, whatever the input.
    """
    fields, payload, signature = decode_checked(token)
    row = db.session.execute(
        _RESOLVE, {"entrance_id": fields.entrance_id, "version": fields.version, "key_id": fields.key_id}
    ).one_or_none()
    if row is None:
        raise PosterTokenInvalid()
    version, entrance, venue, key = row
    _check_row(
        now,
        signature,
        payload,
        key.public_key,
        key.revoked_at,
        version.revoked_at,
        venue.archived_at,
        entrance.archived_at,
    )
    return PosterRef(venue=venue, entrance=entrance, poster_version=version)


def check_poster_token(token: str, now: datetime) -> PosterTarget:
    """resolve_poster_token's checks and errors, answered with plain values instead of ORM objects."""
    fields, payload, signature = decode_checked(token)
    row = db.session.connection().execute(TARGET_QUERY, target_params(fields)).one_or_none()
    return target_from_row(row, payload, signature, now)


def target_params(fields: TokenFields) -> dict[str, int]:
    """The parameters of TARGET_QUERY for a decoded token."""
    return {"entrance_id": fields.entrance_id, "version": fields.version, "key_id": fields.key_id}


def target_from_row(row: Sequence[Any] | None, payload: bytes, signature: bytes, now: datetime) -> PosterTarget:
    """The checks after the TARGET_QUERY lookup (row None: no such poster), and where it checks in."""
    if row is None:
        raise PosterTokenInvalid()
    (
        venue_id,
        name,
        short_code,
        stay,
        venue_archived,
        entrance_id,
        entrance_archived,
        version_revoked,
        public_key,
        key_revoked,
    ) = row
    _check_row(now, signature, payload, public_key, key_revoked, version_revoked, venue_archived, entrance_archived)
    return PosterTarget(venue_id, name, short_code, stay, entrance_id)
