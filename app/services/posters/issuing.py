"""Poster versions: issue and reissue them, their current tokens, and the public addresses in them."""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import func, select

from app.extensions import db
from app.models import Entrance, PosterSigningKey, PosterVersion
from app.services.posters.keys import _token_for, current_signing_key


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
