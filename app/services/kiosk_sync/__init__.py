"""The server side of kiosk tablets: enrolment, bearer authentication, heartbeats and check-in batches.

The byte formats a kiosk sends are specified in docs/kiosk-protocols.md; `venue_kiosk.codes` (stdlib
only) is the reference implementation both sides use.
- enrolment: pairing codes, credentials, heartbeats and the operators' CLI;
- batches: a batch's items parsed, de-duplicated by client id and verified;
- recording: the verified check-ins written under the visit rules.
"""

from app.services.kiosk_sync.batches import (
    MAX_BATCH,
    MAX_CLIENT_ID,
    MAX_TOKEN,
    ItemResult,
    Recorder,
    ingest_checkins,
)
from app.services.kiosk_sync.enrolment import (
    Enrolment,
    KioskContext,
    KioskUnauthorized,
    all_kiosks,
    authenticate,
    enrol,
    normalise_pairing_code,
    pairing_entrance,
    parse_time,
    record_heartbeat,
    revoke,
)
from app.services.kiosk_sync.recording import (
    KioskBusy,
    PersonPlan,
    PlannedVisit,
    VerifiedItem,
    plan_visits,
    record_each_with_check_in,
    record_visits_in_bulk,
)

__all__ = [
    "MAX_BATCH",
    "MAX_CLIENT_ID",
    "MAX_TOKEN",
    "Enrolment",
    "ItemResult",
    "KioskBusy",
    "KioskContext",
    "KioskUnauthorized",
    "PersonPlan",
    "PlannedVisit",
    "Recorder",
    "VerifiedItem",
    "all_kiosks",
    "authenticate",
    "enrol",
    "ingest_checkins",
    "normalise_pairing_code",
    "pairing_entrance",
    "parse_time",
    "plan_visits",
    "record_each_with_check_in",
    "record_heartbeat",
    "record_visits_in_bulk",
    "revoke",
]
