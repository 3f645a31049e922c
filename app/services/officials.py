"""Health officials' accounts: strong passwords, sign-in, the optional TOTP second factor, reveals."""

from __future__ import annotations

import io
from datetime import datetime

import pyotp
import qrcode
import qrcode.image.svg
from sqlalchemy import select

from app.errors import PermissionDenied, ValidationError
from app.extensions import db
from app.models import MAX_ROW_ID, Case, Official, OfficialRole, Person
from app.services import accounts, audit, people
from app.services.personal_data import keyring

MIN_PASSWORD_LENGTH = 12
TOTP_CONTEXT = "totp"
TOTP_ISSUER = "Venue check-in"
# The most common passwords of public breach lists (lower-cased); a longer list can replace this set.
COMMON_PASSWORDS = frozenset(
    """
    123456 123456789 12345678 password qwerty123 qwerty1 111111 12345 1234567 123123 1234567890 000000
    abc123 password1 iloveyou qwerty 1q2w3e4r 1q2w3e4r5t 1q2w3e4r5t6y qwertyuiop 123321 654321 666666
    7777777 987654321 123qwe qwe123 zaq12wsx 1qaz2wsx 1qaz2wsx3edc passw0rd password123 password1234
    letmein welcome welcome123 admin admin123 administrator monkey dragon football baseball sunshine
    princess master shadow superman michael jennifer trustno1 starwars whatever freedom secret
    changeme default login access hello123 qwerty12345 asdfghjkl zxcvbnm 1234qwer q1w2e3r4 q1w2e3r4t5
    parol parol123 parolparol privet privet123 natasha marina andrey dmitriy sergey vkontakte
    ytrewq ghbdtn 1111111111 0987654321 1234512345 11223344 12341234 123456789012 password12345
    qwertyqwerty correcthorse correcthorsebatterystaple iloveyou123 covid19 coronavirus moscow2020
    """.split()  # noqa: SIM905 (a word list reads better than a list literal)
)


def check_password(password: str, email: str) -> None:
    """Refuse short, common and e-mail-derived passwords with a sentence that says why."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(f"Use at least {MIN_PASSWORD_LENGTH} characters for the password.", field="password")
    if len(password) > 256:
        raise ValidationError("The password is too long (256 characters at most).", field="password")
    lowered = password.lower()
    squeezed = "".join(ch for ch in lowered if ch.isalnum())
    stripped = squeezed.rstrip("0123456789!")
    if lowered in COMMON_PASSWORDS or squeezed in COMMON_PASSWORDS or stripped in COMMON_PASSWORDS:
        raise ValidationError("This password is among the most common ones; choose another.", field="password")
    if len(set(lowered)) < 4:
        raise ValidationError("This password repeats too few characters; choose another.", field="password")
    email = email.strip().lower()
    local = email.partition("@")[0]
    if (email and email in lowered) or (len(local) >= 3 and local in lowered):
        raise ValidationError("The password must not contain your e-mail address.", field="password")


def create_official(
    email: str, password: str, display_name: str, role: OfficialRole, can_reveal: bool, *, now: datetime
) -> Official:
    check_password(password, email)
    display_name = display_name.strip() or email.partition("@")[0]
    official = accounts.create_official(email, password, display_name[:200], role, can_reveal)
    official.created_at = now
    audit.record("system", None, "official.create", now=now, target=f"official:{official.id}",
                 reason=f"role={role.value} can_reveal={can_reveal}")  # fmt: skip
    return official


class SignInFailed(ValidationError):
    """Wrong e-mail, password or code; the message never says which."""


def authenticate(email: str, password: str, code: str, *, now: datetime) -> Official:
    """The official these credentials belong to, or SignInFailed. A second factor is required when
    the account has one enrolled."""
    generic = "The e-mail, password or code is not right."
    try:
        lookup = accounts.email_lookup(email)
    except ValidationError:
        raise SignInFailed(generic) from None
    official = db.session.scalar(select(Official).where(Official.email_hash == lookup))
    if official is None:
        # Spend the same time as a real check, so timing does not reveal which e-mails exist.
        accounts.password_matches(_DUMMY_HASH, password)
        raise SignInFailed(generic)
    if not accounts.password_matches(official.password_hash, password) or official.disabled_at is not None:
        audit.record("official", official.id, "official.login_failed", now=now)
        raise SignInFailed(generic)
    if official.totp_secret_enc is not None and not verify_totp(official, code, now):
        audit.record("official", official.id, "official.login_failed", now=now, reason="second factor")
        raise SignInFailed(generic)
    official.last_login_at = now
    audit.record("official", official.id, "official.login", now=now)
    return official


_DUMMY_HASH = accounts._hasher.hash("not-a-real-password-for-timing")


def get_active(official_id: int | None) -> Official | None:
    if official_id is None:
        return None
    official = db.session.get(Official, official_id)
    if official is None or official.disabled_at is not None:
        return None
    return official


# --- TOTP ------------------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(official: Official, secret: str) -> str:
    email = keyring().decrypt(official.email_enc, context="email")
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def qr_svg(data: str) -> str:
    """An inline SVG QR code (paths only, no style attributes, so the page's CSP allows it)."""
    image = qrcode.make(data, image_factory=qrcode.image.svg.SvgPathImage, box_size=8, border=2)
    buffer = io.BytesIO()
    image.save(buffer)
    svg = buffer.getvalue().decode()
    return svg[svg.index("<svg") :]


def verify_totp(official: Official, code: str, now: datetime) -> bool:
    if official.totp_secret_enc is None:
        return True
    secret = keyring().decrypt(official.totp_secret_enc, context=TOTP_CONTEXT)
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    return len(code) == 6 and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


def enrol_totp(official: Official, secret: str, code: str, *, now: datetime) -> None:
    """Turn on the second factor once the official proves their app shows the right code."""
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    if not secret:
        # The pending secret lives in the session between showing the QR and confirming it.
        raise ValidationError("This set-up has expired; open the second-factor page again.", field="code")
    if not pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1):
        raise ValidationError("That code does not match; check the time on your phone and try again.", field="code")
    official.totp_secret_enc = keyring().encrypt(secret, context=TOTP_CONTEXT)
    db.session.flush()
    audit.record("official", official.id, "official.totp_enrol", now=now)


# --- personal data ---------------------------------------------------------------------------------


def reveal_phone(official: Official, person_id: int, reason: str, *, now: datetime, case_id: int | None) -> str:
    """The full phone number of a person, for an official with the reveal permission and a reason."""
    if not official.can_reveal:
        raise PermissionDenied("You do not have the permission to reveal phone numbers.")
    reason = (reason or "").strip()
    if len(reason) < 5:
        raise ValidationError("Type the reason for revealing this number (it is recorded).", field="reason")
    person = db.session.get(Person, person_id)
    if person is None:
        raise ValidationError("There is no such person.")
    if case_id is not None and (not 0 < case_id <= MAX_ROW_ID or db.session.get(Case, case_id) is None):
        raise ValidationError("There is no such case.", field="case_id")
    phone = people.phone_of(person)
    if phone is None:
        raise ValidationError("This person has no phone number on record.")
    audit.record("official", official.id, "phone.reveal", now=now, subject_person_id=person.id,
                 reason=reason, case_id=case_id)  # fmt: skip
    return phone
