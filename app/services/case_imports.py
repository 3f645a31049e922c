"""Bulk import of lab results from CSV: row-level errors with line numbers, idempotent on re-import.

Columns (header required): lab_reference, phone or subject, tested_on, symptom_onset, isolated_on
(dates as YYYY-MM-DD; empty optional fields allowed). A row whose lab reference is already recorded
is skipped, so importing the same file twice records each case once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import select

from app.errors import ConflictError, DomainError, ValidationError
from app.extensions import db
from app.models import Case
from app.services import cases

REQUIRED_COLUMNS = {"lab_reference", "tested_on"}
KNOWN_COLUMNS = {"lab_reference", "phone", "subject", "tested_on", "symptom_onset", "isolated_on"}
MAX_ROWS = 200_000


@dataclass
class ImportResult:
    created: int = 0
    already_recorded: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, message)


def _date(raw: str | None, name: str, required: bool = False) -> date | None:
    raw = (raw or "").strip()
    if not raw:
        if required:
            raise ValidationError(f"{name} is empty")
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValidationError(f"{name} {raw!r} is not a date like 2026-11-20") from None


def read_rows(text: str) -> tuple[list[str], Iterable[tuple[int, dict[str, str]]]]:
    """Parse the header and yield (line number, row) pairs; raises ValidationError on a bad header."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = REQUIRED_COLUMNS - set(header)
    if missing or not ({"phone", "subject"} & set(header)):
        raise ValidationError(
            "The file needs a header with lab_reference, tested_on and phone (or subject); missing: "
            + ", ".join(sorted(missing | ({"phone"} if not {"phone", "subject"} & set(header) else set())))
        )
    unknown = set(header) - KNOWN_COLUMNS
    if unknown:
        raise ValidationError("Unknown columns: " + ", ".join(sorted(unknown)))
    reader.fieldnames = header

    def rows() -> Iterable[tuple[int, dict[str, str]]]:
        for row in reader:
            yield reader.line_num, row

    return header, rows()


def import_cases(
    text: str,
    *,
    now: datetime,
    lead_days: int,
    issuer: str,
    official_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Record every valid row; each row runs in a savepoint so a bad row leaves nothing behind."""
    _header, rows = read_rows(text)
    result = ImportResult()
    line = 1
    try:
        for count, (line, row) in enumerate(rows, start=1):
            if count > MAX_ROWS:
                result.errors.append((line, f"more than {MAX_ROWS} rows; split the file"))
                break
            if progress is not None:
                progress(1)
            if any("\x00" in (value or "") for value in row.values() if isinstance(value, str)):
                # PostgreSQL cannot store NUL in text; no field of a lab result needs one.
                result.errors.append((line, "contains a NUL character"))
                continue
            reference = (row.get("lab_reference") or "").strip()
            if not reference:
                result.errors.append((line, "lab_reference is empty"))
                continue
            if db.session.scalar(select(Case.id).where(Case.lab_reference == reference)) is not None:
                result.already_recorded += 1
                continue
            try:
                with db.session.begin_nested():
                    cases.record_case(
                        tested_on=_date(row.get("tested_on"), "tested_on", required=True),  # type: ignore[arg-type]
                        symptom_onset=_date(row.get("symptom_onset"), "symptom_onset"),
                        isolated_on=_date(row.get("isolated_on"), "isolated_on"),
                        phone=row.get("phone"),
                        subject=row.get("subject"),
                        lab_reference=reference,
                        now=now,
                        lead_days=lead_days,
                        issuer=issuer,
                        official_id=official_id,
                        actor_kind="official" if official_id else "system",
                    )
            except DomainError as exc:
                if isinstance(exc, ConflictError) and exc.field == "lab_reference":
                    result.already_recorded += 1  # recorded at the same moment by another import or official
                else:
                    result.errors.append((line, exc.message))
                continue
            result.created += 1
    except csv.Error as exc:
        # A broken quote or a field past the csv module's size limit: the rows before it stand.
        result.errors.append((line + 1, f"not valid CSV ({exc})"))
    return result
