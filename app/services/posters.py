"""Signed, versioned poster tokens: issue, reissue, resolve, and the Ed25519 keys that sign them.

A token is `format byte | varint key id | varint entrance id | varint version | 64-byte Ed25519
signature`, encoded as unpadded upper-case base32. Upper-case base32 uses only QR alphanumeric
characters, so the token part of the poster URL costs 5.5 bits per character in the QR code instead
of 8, and the code stays a small version. Verification needs only the public keys in the database.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from flask import current_app
from sqlalchemy import bindparam, func, select, update

from app.errors import DomainError, ValidationError
from app.extensions import db
from app.models import Entrance, PosterSigningKey, PosterVersion, Venue
from app.services.personal_data import keyring
from app.services.poster_rendering import (
    FORMATS,
    PAGE_SIZES,
    PageSize,
    PosterContent,
    PosterFormat,
    Progress,
    render_batch_zip,
    render_pdf,
    render_png,
    render_svg,
    safe_file_stem,
)

TOKEN_FORMAT = 1
SIGNATURE_BYTES = 64
# Bound on what we even try to decode: real tokens are about 115 characters.
MAX_TOKEN_CHARS = 160
MAX_VARINT_BYTES = 5
MAX_FIELD_VALUE = 2**31 - 1  # ids and versions are INTEGER columns
KEY_CONTEXT = "poster-key"
# Domain separation: a signature made for a poster can never be replayed as anything else.
SIGNING_PREFIX = b"checkin-poster\x00"


class PosterTokenError(DomainError):
    """A scanned poster token that cannot be used for check-in."""

    status = 400
    default_message = "This QR code is not a valid poster of this service."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message)


class PosterTokenInvalid(PosterTokenError):
    """Malformed, forged, altered, or signed by a revoked key."""


class PosterReplaced(PosterTokenError):
    status = 410
    default_message = "This poster has been replaced; please scan the current poster at the entrance."


class PosterVenueClosed(PosterTokenError):
    status = 410
    default_message = "This venue no longer takes check-ins with this poster."


@dataclass(frozen=True)
class PosterRef:
    venue: Venue
    entrance: Entrance
    poster_version: PosterVersion


@dataclass(frozen=True)
class TokenFields:
    key_id: int
    entrance_id: int
    version: int


# --- encoding ----------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints are unsigned")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """Decode one LEB128 varint; non-minimal encodings are refused so every token has one spelling."""
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if byte == 0 and i > 0:
                raise ValueError("non-minimal varint")
            if value > MAX_FIELD_VALUE:
                raise ValueError("value out of range")
            return value, pos + i + 1
    raise ValueError("varint too long")


def encode_payload(fields: TokenFields) -> bytes:
    return bytes([TOKEN_FORMAT]) + _varint(fields.key_id) + _varint(fields.entrance_id) + _varint(fields.version)


@lru_cache(maxsize=8192)
def decode_token(token: str) -> tuple[TokenFields, bytes, bytes]:
    """Split a token into (fields, signed payload, signature); ValueError when it is not well formed.

    Remembered (a pure function; only well-formed tokens are kept): Python's base32 costs about 0.1 ms
    a scan, and a busy venue's poster is scanned thousands of times a day."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or not token.isalnum():
        raise ValueError("not a token")
    # QR readers and people sometimes lower-case; base32 is case-insensitive by design.
    text = token.upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base32") from exc
    if _b32(raw) != text:
        raise ValueError("non-canonical base32")
    if len(raw) < 1 + 3 + SIGNATURE_BYTES or raw[0] != TOKEN_FORMAT:
        raise ValueError("unknown token format")
    payload, signature = raw[:-SIGNATURE_BYTES], raw[-SIGNATURE_BYTES:]
    key_id, pos = _read_varint(payload, 1)
    entrance_id, pos = _read_varint(payload, pos)
    version, pos = _read_varint(payload, pos)
    if pos != len(payload):
        raise ValueError("trailing bytes")
    return TokenFields(key_id, entrance_id, version), payload, signature


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


def _sign(key: PosterSigningKey, payload: bytes) -> bytes:
    private = Ed25519PrivateKey.from_private_bytes(
        base64.b64decode(keyring().decrypt(key.private_key_enc, context=KEY_CONTEXT))
    )
    return private.sign(SIGNING_PREFIX + payload)


def _token_for(version: PosterVersion, key: PosterSigningKey) -> str:
    # Ed25519 signatures are deterministic, so re-signing a version gives back the very same token.
    payload = encode_payload(TokenFields(key.id, version.entrance_id, version.version))
    return _b32(payload + _sign(key, payload))


# --- keys --------------------------------------------------------------------------------------


def _new_signing_key(now: datetime) -> PosterSigningKey:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    key = PosterSigningKey(
        kid=secrets.token_hex(6),
        public_key=private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
        private_key_enc=keyring().encrypt(base64.b64encode(raw_private).decode(), context=KEY_CONTEXT),
        created_at=now,
    )
    db.session.add(key)
    db.session.flush()
    return key


def current_signing_key(now: datetime) -> PosterSigningKey:
    """The newest key that is neither retired nor revoked; created on first use."""
    key = db.session.scalar(
        select(PosterSigningKey)
        .where(PosterSigningKey.retired_at.is_(None), PosterSigningKey.revoked_at.is_(None))
        .order_by(PosterSigningKey.id.desc())
        .limit(1)
    )
    return key if key is not None else _new_signing_key(now)


def rotate_signing_key(now: datetime) -> PosterSigningKey:
    """Retire the current key(s) and start a new one. Posters signed by retired keys stay valid."""
    db.session.execute(
        update(PosterSigningKey)
        .where(PosterSigningKey.retired_at.is_(None), PosterSigningKey.revoked_at.is_(None))
        .values(retired_at=now)
    )
    return _new_signing_key(now)


def revoke_signing_key(key_id: int, now: datetime) -> None:
    """A compromised key: every poster it signed stops verifying and must be reissued."""
    key = db.session.get(PosterSigningKey, key_id)
    if key is None:
        raise PosterTokenInvalid("No poster signing key with this id.")
    key.revoked_at = now
    key.retired_at = key.retired_at or now
    db.session.flush()


# --- posters -----------------------------------------------------------------------------------


def issue_poster(entrance: Entrance, now: datetime) -> tuple[PosterVersion, str]:
    """A new poster version for the entrance; all earlier versions are revoked at `now`.

    The (entrance, version) pair is unique in the schema, so two concurrent reissues cannot
    both produce the same version: the second one fails at flush and its transaction rolls back.
    """
    key = current_signing_key(now)
    latest = db.session.scalar(select(func.max(PosterVersion.version)).where(PosterVersion.entrance_id == entrance.id))
    # Normally one row: only the current version is unrevoked.
    for previous in db.session.scalars(
        select(PosterVersion).where(PosterVersion.entrance_id == entrance.id, PosterVersion.revoked_at.is_(None))
    ):
        previous.revoked_at = now
    version = PosterVersion(entrance_id=entrance.id, version=(latest or 0) + 1, signing_key_id=key.id, issued_at=now)
    db.session.add(version)
    db.session.flush()
    return version, _token_for(version, key)


def current_version(entrance: Entrance) -> PosterVersion | None:
    return db.session.scalar(
        select(PosterVersion)
        .where(PosterVersion.entrance_id == entrance.id, PosterVersion.revoked_at.is_(None))
        .order_by(PosterVersion.version.desc())
        .limit(1)
    )


def current_token(entrance: Entrance, now: datetime) -> str:
    """The token of the entrance's current poster, issuing one if there is none (or its key was revoked)."""
    version = current_version(entrance)
    if version is not None:
        key = db.session.get(PosterSigningKey, version.signing_key_id)
        if key is not None and key.revoked_at is None:
            return _token_for(version, key)
    return issue_poster(entrance, now)[1]


def public_url(path: str) -> str:
    """An absolute address on the public site for `path` (which starts with a slash)."""
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}{path}"


def poster_url(token: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/p/{token}"


def verify_url(token: str) -> str:
    return f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/verify/{token}"


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


# --- printable posters -------------------------------------------------------------------------

MEDIA_TYPES = {"pdf": "application/pdf", "png": "image/png", "svg": "image/svg+xml"}


def parse_page_size(value: str | None) -> PageSize:
    size = (value or "A4").upper()
    if size not in PAGE_SIZES:
        raise ValidationError("The page size must be A4 or A5.", field="size")
    return size  # type: ignore[return-value]


def parse_format(value: str | None) -> PosterFormat:
    fmt = (value or "pdf").lower()
    if fmt not in FORMATS:
        raise ValidationError("The poster format must be pdf, png or svg.", field="format")
    return fmt  # type: ignore[return-value]


def poster_content(entrance: Entrance, now: datetime) -> PosterContent:
    """What goes on the entrance's current poster (issuing the first version if needed)."""
    if entrance.archived_at is not None or entrance.venue.archived_at is not None:
        raise ValidationError("Posters are only printed for open venues and entrances.")
    token = current_token(entrance, now)
    venue = entrance.venue
    return PosterContent(
        url=poster_url(token),
        venue_name=venue.name,
        entrance_name=entrance.name if len(venue.entrances) > 1 else None,
        short_code=venue.short_code,
        sms_number=current_app.config["SMS_SHORT_NUMBER"],
        verify_url=verify_url(token),
    )


def render_entrance_poster(entrance: Entrance, fmt: PosterFormat, page_size: PageSize, now: datetime) -> bytes:
    content = poster_content(entrance, now)
    if fmt == "pdf":
        return render_pdf([content], page_size)
    if fmt == "png":
        return render_png(content, page_size=page_size)
    return render_svg(content, page_size).encode()


def poster_filename(entrance: Entrance, fmt: str) -> str:
    return f"{safe_file_stem(PosterContent('-', entrance.venue.name, entrance.name, '', '', None), entrance.id)}.{fmt}"


def organisation_poster_contents(organisation_id: int, now: datetime) -> list[PosterContent]:
    """Current posters of every open entrance of every open venue, venue by venue."""
    entrances = db.session.scalars(
        select(Entrance)
        .join(Venue, Entrance.venue_id == Venue.id)
        .where(Venue.organisation_id == organisation_id, Venue.archived_at.is_(None), Entrance.archived_at.is_(None))
        .order_by(Venue.name, Venue.id, Entrance.id)
    ).all()
    if not entrances:
        raise ValidationError("The organisation has no open venues to print posters for.")
    return [poster_content(entrance, now) for entrance in entrances]


def render_organisation_posters(
    organisation_id: int,
    archive: str,
    page_size: PageSize,
    now: datetime,
    progress: Progress | None = None,
) -> bytes:
    """All posters of an organisation as one PDF (a page each) or as a ZIP of single-poster PDFs."""
    contents = organisation_poster_contents(organisation_id, now)
    if archive == "pdf":
        return render_pdf(contents, page_size, progress)
    if archive == "zip":
        return render_batch_zip(contents, ("pdf",), page_size, progress=progress)
    raise ValidationError("Batches come as pdf or zip.", field="format")
