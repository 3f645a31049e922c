"""The Ed25519 keys that sign poster tokens: create, rotate, revoke, and sign with them."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from sqlalchemy import select, text, update

from app.extensions import db
from app.models import PosterSigningKey, PosterVersion
from app.services.personal_data import keyring
from app.services.posters.tokens import SIGNING_PREFIX, PosterTokenInvalid, TokenFields, _b32, encode_payload

KEY_CONTEXT = "poster-key"


def _sign(key: PosterSigningKey, payload: bytes) -> bytes:
    private = Ed25519PrivateKey.from_private_bytes(
        base64.b64decode(keyring().decrypt(key.private_key_enc, context=KEY_CONTEXT))
    )
    return private.sign(SIGNING_PREFIX + payload)


def _token_for(version: PosterVersion, key: PosterSigningKey) -> str:
    # Ed25519 signatures are deterministic, so re-signing a version gives back the very same token.
    payload = encode_payload(TokenFields(key.id, version.entrance_id, version.version))
    return _b32(payload + _sign(key, payload))


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


_CURRENT = (
    select(PosterSigningKey)
    .where(PosterSigningKey.retired_at.is_(None), PosterSigningKey.revoked_at.is_(None))
    .order_by(PosterSigningKey.id.desc())
    .limit(1)
)
# PostgreSQL: the transaction that creates the first key holds this lock until it commits.
_FIRST_KEY_LOCK = text("SELECT pg_advisory_xact_lock('poster_signing_keys'::regclass::oid::int, 1)")


def current_signing_key(now: datetime) -> PosterSigningKey:
    """The newest key that is neither retired nor revoked; created on first use.

    Two workers printing their first posters at once create one key between them: on PostgreSQL the
    creator holds a lock until it commits, and whoever waited for it reads the key it made (SQLite has one
    writer: the second one's write fails as busy and the request is answered "try again")."""
    key = db.session.scalar(_CURRENT)
    if key is not None:
        return key
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(_FIRST_KEY_LOCK)
        key = db.session.scalar(_CURRENT.execution_options(populate_existing=True))
        if key is not None:
            return key
    return _new_signing_key(now)


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
