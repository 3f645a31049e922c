"""Re-encryption of stored personal data under the current data key (after a key rotation)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from app.extensions import db
from app.models import (
    Kiosk,
    Official,
    Operator,
    OperatorInvitation,
    OutboxMessage,
    Person,
    PersonalCodeKey,
    PosterSigningKey,
)
from app.services.personal_data import keyring


@dataclass(frozen=True)
class EncryptedColumn:
    """One column that holds ciphertext, and the context it was encrypted with."""

    model: Any
    column: str
    context: str

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"


ENCRYPTED_COLUMNS: tuple[EncryptedColumn, ...] = (
    EncryptedColumn(Person, "phone_enc", "phone"),
    EncryptedColumn(Person, "oidc_subject_enc", "oidc_subject"),
    EncryptedColumn(Person, "email_enc", "email"),
    EncryptedColumn(Operator, "email_enc", "email"),
    EncryptedColumn(OperatorInvitation, "email_enc", "email"),
    EncryptedColumn(Official, "email_enc", "email"),
    EncryptedColumn(Official, "totp_secret_enc", "totp"),
    EncryptedColumn(OutboxMessage, "recipient_enc", "recipient"),
    EncryptedColumn(Kiosk, "rotation_secret_enc", "kiosk"),
    EncryptedColumn(PosterSigningKey, "private_key_enc", "poster-key"),
    EncryptedColumn(PersonalCodeKey, "key_enc", "personal-code-key"),
)


def count_rows(target: EncryptedColumn) -> int:
    column = getattr(target.model, target.column)
    return db.session.scalar(select(func.count()).select_from(target.model).where(column.is_not(None))) or 0


def rewrap_batch(target: EncryptedColumn, after_id: int, batch_size: int) -> tuple[int, int, int]:
    """Re-encrypt one batch of rows with id > after_id; returns (rows seen, rows rewritten, last id)."""
    ring = keyring()
    column = getattr(target.model, target.column)
    rows = db.session.execute(
        select(target.model.id, column)
        .where(column.is_not(None), target.model.id > after_id)
        .order_by(target.model.id)
        .limit(batch_size)
    ).all()
    rewritten = 0
    for row_id, blob in rows:
        if ring.needs_rewrap(blob):
            fresh = ring.encrypt(ring.decrypt(blob, context=target.context), context=target.context)
            # Only if the value is still the one read: a value written meanwhile (a new number, a new
            # TOTP secret) is already under the current key, and must not be replaced by the old one.
            rewritten += db.session.execute(
                update(target.model).where(target.model.id == row_id, column == blob).values({target.column: fresh}),
                execution_options={"synchronize_session": False},
            ).rowcount
    db.session.flush()
    return len(rows), rewritten, (rows[-1][0] if rows else after_id)


def rewrap_all(
    commit: Callable[[], None], batch_size: int = 500, progress: Callable[[str, int], None] | None = None
) -> Iterator[tuple[str, int]]:
    """Walk every encrypted column in batches, committing each; yields (column label, rows rewritten)."""
    for target in ENCRYPTED_COLUMNS:
        after_id, total = 0, 0
        while True:
            seen, rewritten, after_id = rewrap_batch(target, after_id, batch_size)
            commit()
            total += rewritten
            if progress is not None:
                progress(target.label, seen)
            if seen < batch_size:
                break
        yield target.label, total
