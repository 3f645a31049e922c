"""Bulk import of venues from CSV: every row checked first, then all written, or none.

Columns (header row required, order free): name, address, kind, timezone, default_stay_minutes,
capacity, entrances (names separated by ";"). Only `name` is required.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from app.errors import DomainError, ValidationError
from app.models import Venue
from app.services import venues

COLUMNS = ("name", "address", "kind", "timezone", "default_stay_minutes", "capacity", "entrances")
MAX_ROWS = 20_000


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ImportResult:
    created: list[Venue] = field(default_factory=list)
    skipped: list[RowError] = field(default_factory=list)


class VenueImportError(DomainError):
    """Some rows are bad and nothing was written; `errors` lists every bad row."""

    status = 400

    def __init__(self, errors: list[RowError]) -> None:
        shown = "\n".join(str(e) for e in errors[:50])
        more = f"\n... and {len(errors) - 50} more" if len(errors) > 50 else ""
        super().__init__(f"{len(errors)} bad row(s); nothing was imported.\n{shown}{more}")
        self.errors = errors


@dataclass(frozen=True)
class VenueRow:
    line: int
    fields: dict[str, Any]
    entrances: tuple[str, ...]


def _int(raw: str, column: str, low: int, high: int, *, required: bool) -> int | None:
    raw = raw.strip()
    if not raw:
        if required:
            raise ValidationError(f"{column} is required")
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{column} must be a whole number, not {raw[:20]!r}") from None
    if not low <= value <= high:
        raise ValidationError(f"{column} must be between {low} and {high}")
    return value


def parse_row(line: int, row: dict[str, str]) -> VenueRow:
    """Check one row with messages that name the CSV column."""
    get = lambda column: (row.get(column) or "").strip()  # noqa: E731
    if not get("name"):
        raise ValidationError("name is required")
    stay = _int(get("default_stay_minutes"), "default_stay_minutes", 15, 1440, required=False)
    capacity = _int(get("capacity"), "capacity", 1, venues.MAX_CAPACITY, required=False)
    entrances = tuple(e.strip() for e in get("entrances").split(";") if e.strip()) or ("Main entrance",)
    fields = {
        "name": get("name"),
        "address": get("address"),
        "kind": get("kind") or "other",
        "timezone": get("timezone") or "Europe/Moscow",
        "default_stay_minutes": 60 if stay is None else stay,
        "capacity": capacity,
    }
    try:
        venues.validate_venue_fields(fields["name"], fields["timezone"], fields["default_stay_minutes"], capacity)
        venues.clean_name(fields["name"], "venue")
        for entrance in entrances:
            venues.clean_name(entrance, "entrance")
        if fields["kind"].lower() not in venues.VENUE_KINDS:
            raise ValidationError(f"kind must be one of: {', '.join(venues.VENUE_KINDS)}", field="kind")
        if len(fields["address"]) > 300:
            raise ValidationError("address must be at most 300 characters", field="address")
    except ValidationError as exc:
        column = exc.field or "name"
        message = exc.message[0].lower() + exc.message[1:]
        raise ValidationError(message if message.startswith(column) else f"{column}: {message}") from None
    return VenueRow(line, fields, entrances)


def read_rows(text: str) -> tuple[list[VenueRow], list[RowError]]:
    """Parse the whole file; a bad header is one error for line 1."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if "name" not in header:
        return [], [RowError(1, f"the header must name the columns, at least 'name' (known: {', '.join(COLUMNS)})")]
    unknown = sorted(set(header) - set(COLUMNS))
    if unknown:
        return [], [RowError(1, f"unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}")]
    reader.fieldnames = header
    good: list[VenueRow] = []
    bad: list[RowError] = []
    try:
        for row in reader:
            line = reader.line_num
            if len(good) + len(bad) >= MAX_ROWS:
                bad.append(RowError(line, f"more than {MAX_ROWS} rows; split the file"))
                break
            if None in row:
                bad.append(RowError(line, "more values than columns"))
                continue
            if not any((v or "").strip() for v in row.values()):
                continue  # blank line
            if any("\x00" in (v or "") for v in row.values()):
                bad.append(RowError(line, "contains a NUL character"))  # PostgreSQL cannot store one
                continue
            try:
                good.append(parse_row(line, row))
            except ValidationError as exc:
                bad.append(RowError(line, exc.message))
    except csv.Error as exc:
        bad.append(RowError(reader.line_num, f"not valid CSV ({exc})"))
    return good, bad


def import_venues(
    organisation_id: int,
    text: str,
    *,
    skip_bad_rows: bool = False,
    progress: Callable[[int], None] | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> ImportResult:
    """Create a venue per good row. Any bad row refuses the whole file unless `skip_bad_rows`.

    `on_rows(total)` is called once the rows are known and `progress(1)` after each venue, for a
    progress bar. Flushes only: the caller's transaction decides.
    """
    rows, errors = read_rows(text)
    if errors and not skip_bad_rows:
        raise VenueImportError(errors)
    if on_rows is not None:
        on_rows(len(rows))
    result = ImportResult(skipped=errors)
    for row in _each(rows, progress):
        result.created.append(venues.create_venue(organisation_id, entrance_names=row.entrances, **row.fields))
    return result


def _each(rows: Iterable[VenueRow], progress: Callable[[int], None] | None) -> Iterable[VenueRow]:
    for row in rows:
        yield row
        if progress is not None:
            progress(1)
