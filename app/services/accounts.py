"""Staff accounts (venue operators and health officials): sign-up, sign-in, passwords, invitations."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from app.errors import ConflictError, DomainError, NotFoundError, PermissionDenied, ValidationError
from app.extensions import db
from app.models import (
    MessageChannel,
    MessageKind,
    Official,
    OfficialRole,
    Operator,
    OperatorInvitation,
    OperatorRole,
    Organisation,
)
from app.services import once, outbox
from app.services.personal_data import keyring, secret_hash

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024  # argon2 would hash a megabyte happily; nobody types that
INVITATION_TTL = timedelta(days=7)
# Verified when the e-mail is unknown, so a wrong address costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginFailed(DomainError):
    status = 401


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    local, sep, domain = email.partition("@")
    if not sep or not local or "." not in domain or len(email) > 254 or any(c.isspace() for c in email):
        raise ValidationError("Enter a valid e-mail address.", field="email")
    return email


def hash_password(password: str) -> str:
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError(f"The password must be at most {MAX_PASSWORD_LENGTH} characters long.", field="password")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters long.", field="password")
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def email_lookup(email: str) -> bytes:
    return keyring().lookup_hash(normalise_email(email), context="email")


def mask_email(email: str) -> str:
    """anna.petrova@example.org -> a***@example.org: recognisable to a colleague, not harvestable."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _new_operator(organisation: Organisation, email: str, password: str, role: OperatorRole) -> Operator:
    email = normalise_email(email)
    lookup = email_lookup(email)
    if db.session.scalar(select(Operator.id).where(Operator.email_hash == lookup)):
        raise ConflictError("An operator with this e-mail already exists.", field="email")
    operator = Operator(
        organisation=organisation,
        email_hash=lookup,
        email_enc=keyring().encrypt(email, context="email"),
        password_hash=hash_password(password),
        role=role,
    )
    db.session.add(operator)
    return operator


def create_organisation_with_owner(name: str, email: str, password: str) -> Operator:
    """Sign-up: a new organisation and its first operator, who owns it."""
    name = " ".join(name.split())
    if not name or len(name) > 200:
        raise ValidationError("The organisation needs a name of at most 200 characters.", field="name")
    organisation = Organisation(name=name)
    db.session.add(organisation)
    operator = _new_operator(organisation, email, password, OperatorRole.OWNER)
    db.session.flush()
    return operator


def authenticate_operator(email: str, password: str, now: datetime) -> Operator:
    """The operator with this e-mail and password, or LoginFailed with one message for every cause.

    The message never says whether the address exists, and an unknown address costs one argon2
    verification like a known one.
    """
    failed = LoginFailed("The e-mail or the password is not right.")
    try:
        lookup = email_lookup(email)
    except ValidationError:
        raise failed from None
    operator = db.session.scalar(select(Operator).where(Operator.email_hash == lookup))
    if operator is None:
        password_matches(_DUMMY_HASH, password)
        raise failed
    if not password_matches(operator.password_hash, password) or operator.disabled_at is not None:
        raise failed
    if operator.organisation.archived_at is not None:
        raise failed
    if _hasher.check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher.hash(password)
    operator.last_login_at = now
    db.session.flush()
    return operator


def session_fingerprint(operator: Operator) -> str:
    """Stored in the session beside the operator id: a password change signs out every other session."""
    return hashlib.sha256(operator.password_hash.encode()).hexdigest()[:16]


def change_operator_password(operator: Operator, current_password: str, new_password: str) -> None:
    if not password_matches(operator.password_hash, current_password):
        raise ValidationError("The current password is not right.", field="current_password")
    if current_password == new_password:
        raise ValidationError("Choose a password different from the current one.", field="new_password")
    operator.password_hash = hash_password(new_password)
    db.session.flush()


def invite_operator(
    inviter: Operator,
    email: str,
    role: OperatorRole,
    now: datetime,
    *,
    accept_url: Callable[[str], str] | None = None,
) -> tuple[OperatorInvitation, str]:
    """A one-time invitation into the inviter's organisation; returns the invitation and its secret token.

    Only owners invite. The token is shown once to the inviter; with `accept_url` (token -> link) the
    link is also e-mailed through the outbox, after the commit. Only the token's hash is stored.
    """
    if inviter.role != OperatorRole.OWNER:
        raise PermissionDenied("Only an owner of the organisation can invite operators.")
    email = normalise_email(email)
    if db.session.scalar(select(Operator.id).where(Operator.email_hash == email_lookup(email))):
        raise ConflictError("An operator with this e-mail already exists.", field="email")
    token = secrets.token_urlsafe(24)
    invitation = OperatorInvitation(
        organisation_id=inviter.organisation_id,
        token_hash=secret_hash(token),
        email_enc=keyring().encrypt(email, context="email"),
        role=role,
        invited_by_id=inviter.id,
        created_at=now,
        expires_at=now + INVITATION_TTL,
    )
    db.session.add(invitation)
    db.session.flush()
    if accept_url is not None:
        organisation = db.session.get(Organisation, inviter.organisation_id)
        outbox.enqueue(
            dedup_key=f"operator-invitation:{invitation.id}",
            channel=MessageChannel.EMAIL,
            kind=MessageKind.CONFIRMATION,
            recipient=email,
            subject="Invitation to manage venues",
            body=(
                f"You are invited to manage the venues of {organisation.name if organisation else 'an organisation'}"
                f" as {role.value}. Choose your password here (the link works once, for 7 days):\n"
                f"{accept_url(token)}\n"
            ),
            now=now,
        )
    return invitation, token


def find_invitation(token: str, now: datetime) -> OperatorInvitation:
    invitation = db.session.scalar(
        select(OperatorInvitation).where(OperatorInvitation.token_hash == secret_hash(token))
    )
    if invitation is None or invitation.accepted_at is not None or invitation.expires_at <= now:
        raise NotFoundError("This invitation link is not valid any more. Ask for a new one.")
    return invitation


def invitation_email(invitation: OperatorInvitation) -> str:
    return keyring().decrypt(invitation.email_enc, context="email")


def accept_invitation(token: str, password: str, now: datetime) -> Operator:
    """Create the invited operator with the chosen password; the link cannot be used again."""
    invitation = find_invitation(token, now)
    organisation = db.session.get(Organisation, invitation.organisation_id)
    if organisation is None or organisation.archived_at is not None:
        raise NotFoundError("This invitation link is not valid any more. Ask for a new one.")
    # Claimed with a guarded update: the same form sent twice (a double click) creates one operator, and
    # the second request is told so instead of failing on the e-mail's unique index.
    if not once.claim(OperatorInvitation.accepted_at, invitation.id, now):
        raise ConflictError("This invitation has just been used. Sign in with its e-mail and your password.")
    operator = _new_operator(organisation, invitation_email(invitation), password, invitation.role)
    db.session.flush()
    return operator


def list_operators(organisation_id: int) -> list[tuple[Operator, str]]:
    """The organisation's operators with masked e-mails, for the team page."""
    operators = db.session.scalars(
        select(Operator).where(Operator.organisation_id == organisation_id).order_by(Operator.id)
    ).all()
    return [(op, mask_email(keyring().decrypt(op.email_enc, context="email"))) for op in operators]


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
