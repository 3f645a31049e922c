"""The database side of matching: a case's visits, the visits co-present with them, Exposure rows.

The rules themselves live in app/services/matching.py (pure); this package feeds it from two index
range scans and writes what it finds idempotently, so a case matched twice, or a job that crashed
half-way through a case, never leaves duplicates.

- finding: the case's visits and the co-present visits, as matching.Contact objects;
- storing: the Exposure rows, the cases' windows and matched marks, venue outbreaks.
"""

from app.services.exposures.finding import (
    MAX_STAY,
    CaseQuery,
    _Halls,
    candidate_stays,
    case_stays,
    find_case_contacts,
    find_contacts_for_cases,
    rules_from_config,
)
from app.services.exposures.storing import (
    BatchMatch,
    CaseMatch,
    StartedBatch,
    begin_case_batch,
    match_case,
    match_case_batch,
    pending_case_ids,
    record_outbreaks,
    record_pending_outbreaks,
)

__all__ = [
    "MAX_STAY",
    "BatchMatch",
    "CaseMatch",
    "CaseQuery",
    "StartedBatch",
    "_Halls",
    "begin_case_batch",
    "candidate_stays",
    "case_stays",
    "find_case_contacts",
    "find_contacts_for_cases",
    "match_case",
    "match_case_batch",
    "pending_case_ids",
    "record_outbreaks",
    "record_pending_outbreaks",
    "rules_from_config",
]
