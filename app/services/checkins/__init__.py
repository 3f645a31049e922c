"""Visit rules: check in, continue, end, check out and correct a person's visits.

Rules (PRODUCT.md, "Default rules"):
- one open visit per person, enforced by the partial unique index `uq_checkins_one_open_visit_per_person`;
- a repeat check-in at the venue of the open visit continues it: no new row; the planned end moves to
  `now + default stay` if that is later (the person is evidently still there), the party size can grow
  (never shrink) and new companions are added;
- no visit lasts longer than MAX_VISIT (24 h), which matching relies on: a repeat check-in whose
  continuation would outlast it ends the open visit at `now` (reason next_checkin) and opens a new one
  at the same venue with the same party;
- a check-in elsewhere ends the open visit at `now` (reason next_checkin);
- an open visit whose planned end already passed is closed at its planned end (reason auto), never at
  `now`, so a forgotten check-out cannot stretch a stay;
- a client id (kiosks, offline clients) makes a re-sent check-in return the visit it already created.

- rules: check in, continue and end visits through the ORM (the single rule path);
- quick: the JSON check-in's fast path, the same rules on a few compiled Core statements;
- own_visits: a person's own visits: look one up, list them, correct their times.
"""

from app.services.checkins.own_visits import (
    MAX_CORRECTION_SHIFT,
    correct_times,
    own_visit,
    visits_of,
)
from app.services.checkins.quick import (
    _OPEN_VISIT,
    CLOSE_UPDATE,
    EXTEND_UPDATE,
    INSERT_OPEN,
    SEEN_UPDATE,
    CheckinBusy,
    NeedsGeneralPath,
    QuickResult,
    QuickStep,
    VisitView,
    created,
    insert_params,
    open_visit_query,
    quick_check_in,
    quick_step,
)
from app.services.checkins.rules import (
    MAX_PARTY_SIZE,
    MAX_VISIT,
    CheckinResult,
    VenueClosed,
    check_in,
    check_out,
    continued_until,
    continues,
    ending,
    open_visit,
    validate_party,
)

__all__ = [
    "CLOSE_UPDATE",
    "EXTEND_UPDATE",
    "INSERT_OPEN",
    "MAX_CORRECTION_SHIFT",
    "MAX_PARTY_SIZE",
    "MAX_VISIT",
    "SEEN_UPDATE",
    "_OPEN_VISIT",
    "CheckinBusy",
    "CheckinResult",
    "NeedsGeneralPath",
    "QuickResult",
    "QuickStep",
    "VenueClosed",
    "VisitView",
    "check_in",
    "check_out",
    "continued_until",
    "continues",
    "correct_times",
    "created",
    "ending",
    "insert_params",
    "open_visit",
    "open_visit_query",
    "own_visit",
    "quick_check_in",
    "quick_step",
    "validate_party",
    "visits_of",
]
