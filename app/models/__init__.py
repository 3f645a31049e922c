"""All models, imported here so that Alembic and the app see one complete metadata."""

from app.models.audit import AuditEntry
from app.models.base import MAX_ROW_ID, Base, utcnow
from app.models.cases import Case, CaseStatus, Exposure, ExposureStatus, RiskLevel, VenueOutbreak
from app.models.checkins import Checkin, CheckinSource, CheckoutReason, Companion
from app.models.kiosks import Kiosk, KioskPairingCode
from app.models.messages import MessageChannel, MessageKind, MessageStatus, OutboxMessage
from app.models.notices import Notice, NoticeKind
from app.models.officials import Official, OfficialRole, SystemSwitch
from app.models.organisations import Operator, OperatorInvitation, OperatorRole, Organisation
from app.models.people import LoginCode, Person, PersonalCodeKey, RememberedDevice
from app.models.rate_limits import RateLimitCounter
from app.models.venues import Entrance, EntranceKind, PosterSigningKey, PosterVersion, Venue

__all__ = [
    "MAX_ROW_ID",
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
    "utcnow",
]
