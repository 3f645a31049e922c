"""All models, imported here so that Alembic and the app see one complete metadata."""

from collections.abc import Callable

from app.models.audit import AuditEntry
from app.models.base import MAX_ROW_ID, Base, utcnow
from app.models.cases import (
    EXPOSURE_FOREIGN_KEYS_CHECKED_PER_STATEMENT,
    Case,
    CaseStatus,
    Exposure,
    ExposureStatus,
    RiskLevel,
    VenueOutbreak,
)
from app.models.checkins import (
    PLACE_FOREIGN_KEYS_CHECKED_PER_STATEMENT,
    Checkin,
    CheckinSource,
    CheckoutReason,
    Companion,
)
from app.models.kiosks import Kiosk, KioskPairingCode
from app.models.messages import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from app.models.notices import Notice, NoticeKind
from app.models.officials import Official, OfficialRole, SystemSwitch
from app.models.organisations import Operator, OperatorInvitation, OperatorRole, Organisation
from app.models.people import LoginCode, Person, PersonalCodeKey, RememberedDevice
from app.models.rate_limits import RateLimitCounter
from app.models.venues import Entrance, EntranceKind, PosterSigningKey, PosterVersion, Venue


def include_in_schema_comparison(dialect_name: str) -> Callable[..., bool]:
    """Alembic's `include_object` for comparing the models with a database of this dialect.

    On PostgreSQL the check-in's place foreign keys and the exposure's references are triggers (see
    Checkin and Exposure), so neither side's foreign key of those names is compared; everything else is.
    """
    triggers = PLACE_FOREIGN_KEYS_CHECKED_PER_STATEMENT | EXPOSURE_FOREIGN_KEYS_CHECKED_PER_STATEMENT

    def include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
        return not (dialect_name == "postgresql" and type_ == "foreign_key_constraint" and name in triggers)

    return include


__all__ = [
    "EXPOSURE_FOREIGN_KEYS_CHECKED_PER_STATEMENT",
    "MAX_ROW_ID",
    "PLACE_FOREIGN_KEYS_CHECKED_PER_STATEMENT",
    "AuditEntry",
    "Base",
    "Case",
    "CaseStatus",
    "Checkin",
    "CheckinSource",
    "CheckoutReason",
    "Companion",
    "Entrance",
    "EntranceKind",
    "Exposure",
    "ExposureStatus",
    "Kiosk",
    "KioskPairingCode",
    "LoginCode",
    "MessageChannel",
    "MessageKind",
    "MessageStatus",
    "Notice",
    "NoticeKind",
    "Official",
    "OfficialRole",
    "Operator",
    "OperatorInvitation",
    "OperatorRole",
    "Organisation",
    "OutboxMessage",
    "Person",
    "PersonalCodeKey",
    "PosterSigningKey",
    "PosterVersion",
    "RateLimitCounter",
    "RememberedDevice",
    "RiskLevel",
    "SystemSwitch",
    "Venue",
    "VenueOutbreak",
    "include_in_schema_comparison",
    "utcnow",
]
