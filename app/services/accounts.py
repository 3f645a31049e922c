"""Staff accounts (venue operators and health officials): creation and password checks."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from app.errors import ConflictError, ValidationError
from app.extensions import db
from app.models import Official, OfficialRole, Operator, OperatorRole, Organisation
from app.services.personal_data import keyring

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, sep, domain = email.partition("@")
    if not sep or not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise ValidationError("Enter a valid e-mail address.", field="email")
    return email


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.", field="password")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def email_lookup(email: str) -> bytes:
    return keyring().lookup_hash(normalise_email(email), context="email")


def create_organisation_with_owner(name: str, email: str, password: str) -> Operator:
    """Sign-up: a new organisation and its first operator, who owns it."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("The organisation needs a name of at most 200 characters.", field="name")
    email = normalise_email(email)
    lookup = email_lookup(email)
    if db.session.scalar(select(Operator.id).where(Operator.email_hash == lookup)):
        raise ConflictError("An operator with this e-mail already exists.", field="email")
    organisation = Organisation(name=name)
    operator = Operator(
        organisation=organisation,
        email_hash=lookup,
        email_enc=keyring().encrypt(email, context="email"),
        password_hash=hash_password(password),
        role=OperatorRole.OWNER,
    )
    db.session.add_all([organisation, operator])
    db.session.flush()
    return operator


def create_official(
    email: str, password: str, display_name: str, role: OfficialRole, can_reveal: bool = False
) -> Official:
    email = normalise_email(email)
    lookup = email_lookup(email)
    if db.session.scalar(select(Official.id).where(Official.email_hash == lookup)):
        raise ConflictError("An official with this e-mail already exists.", field="email")
    official = Official(
        email_hash=lookup,
        email_enc=keyring().encrypt(email, context="email"),
        display_name=display_name,
        password_hash=hash_password(password),
        role=role,
        can_reveal=can_reveal,
    )
    db.session.add(official)
    db.session.flush()
    return official
