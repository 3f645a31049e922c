"""Exposure matching: infectious windows, co-presence, risk, reasons and venue outbreaks (pure)."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

Risk = Literal["high", "low"]
Lang = Literal["ru", "en"]


@dataclass(frozen=True)
class MatchRules:
    """The configurable numbers of the matching rules (PRODUCT.md, "Default rules")."""

    tail: timedelta = timedelta(minutes=30)
    high_risk_overlap: timedelta = timedelta(minutes=15)
    lead_days: int = 2
    outbreak_cases: int = 2
    outbreak_window: timedelta = timedelta(days=7)

    def __post_init__(self) -> None:
        if self.tail < timedelta(0) or self.high_risk_overlap < timedelta(0):
            raise ValueError("tail and high_risk_overlap must not be negative")
        if self.lead_days < 0 or self.outbreak_window < timedelta(0):
            raise ValueError("lead_days and outbreak_window must not be negative")
        if self.outbreak_cases < 2:
            raise ValueError("an outbreak needs at least two cases")


@dataclass(frozen=True, slots=True)
class Stay:
    """One check-in as the matcher sees it; ``ends_at`` is already resolved by the caller."""

    checkin_id: int
    person_id: int
    venue_id: int
    hall_id: int | None
    starts_at: datetime
    ends_at: datetime
    party_size: int = 1

    def __post_init__(self) -> None:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError(f"check-in {self.checkin_id}: naive datetime")
        if self.ends_at < self.starts_at:
            raise ValueError(f"check-in {self.checkin_id}: ends before it starts")


@dataclass(frozen=True, slots=True)
class Contact:
    """One (case check-in, other check-in) pair found co-present.

    ``overlap`` counts the tail; ``in_tail_only`` means the other visitor arrived when the case
    had already left. ``party_size`` is the other visitor's party (visitor plus companions).
    """

    case_checkin_id: int
    checkin_id: int
    person_id: int
    venue_id: int
    overlap: timedelta
    risk: Risk
    case_starts_at: datetime
    case_ends_at: datetime
    other_starts_at: datetime
    other_ends_at: datetime
    in_tail_only: bool
    party_size: int = 1


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which the local calendar day `day` begins in `tz`."""
    # fold=0 picks the earlier instant of an ambiguous midnight and, for a midnight skipped by a
    # DST jump, the transition instant itself: in both cases the moment the local day begins.
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def infectious_window(
    tested_on: date,
    symptom_onset: date | None,
    isolated_on: date | None,
    tz: ZoneInfo,
    rules: MatchRules,
) -> tuple[datetime, datetime]:
    """Return the half-open UTC interval [start, end) in which the case is taken as infectious.

    It starts at local midnight ``lead_days`` before symptom onset (or the test date without
    symptoms) and ends at the local midnight that closes the isolation date (default: the test
    date). Dates are the case's local calendar days in ``tz``, so a day lasts 23 or 25 hours across
    a DST change. When symptoms began after the positive test, the test date starts the window:
    the person was already positive then, and the later onset must not shorten the window.
    Raises ValueError when the isolation date falls before the window starts.
    """
    first_day = tested_on if symptom_onset is None else min(symptom_onset, tested_on)
    start_day = first_day - timedelta(days=rules.lead_days)
    last_day = tested_on if isolated_on is None else isolated_on
    if last_day < start_day:
        raise ValueError("isolation date is before the infectious window starts")
    return local_midnight(start_day, tz), local_midnight(last_day + timedelta(days=1), tz)


def _contact(case: Stay, other: Stay, case_reach: datetime, rules: MatchRules) -> Contact:
    # Never negative: co-presence already ordered these four instants. Conditional expressions
    # instead of min()/max() because this runs once per contact found.
    until = other.ends_at if other.ends_at < case_reach else case_reach
    since = other.starts_at if other.starts_at > case.starts_at else case.starts_at
    overlap = until - since
    in_tail_only = other.starts_at >= case.ends_at
    # Someone who never shared the room with the case is low risk however long they stayed in
    # the tail: the table's "presence inside the tail" row.
    risk: Risk = "high" if overlap >= rules.high_risk_overlap and not in_tail_only else "low"
    return Contact(
        case_checkin_id=case.checkin_id,
        checkin_id=other.checkin_id,
        person_id=other.person_id,
        venue_id=other.venue_id,
        overlap=overlap,
        risk=risk,
        case_starts_at=case.starts_at,
        case_ends_at=case.ends_at,
        other_starts_at=other.starts_at,
        other_ends_at=other.ends_at,
        in_tail_only=in_tail_only,
        party_size=other.party_size,
    )


def co_present(case: Stay, other: Stay, rules: MatchRules) -> Contact | None:
    """Return the contact between a case's check-in and another check-in, or None.

    Co-present means: same venue; if both check-ins name a hall, the same hall (a venue-level
    check-in has no hall and is taken as present in every hall of the venue, because nothing
    says where in the building that visitor was); a different person; and strict overlap of
    [other.start, other.end) with [case.start, case.end + tail), so touching intervals do not
    count. The overlap counts the tail. A visit entirely inside the tail (arrived at or after the
    moment the case left) is a contact with ``in_tail_only`` set and is always "low" risk.
    """
    if case.venue_id != other.venue_id or case.person_id == other.person_id:
        return None
    if case.hall_id is not None and other.hall_id is not None and case.hall_id != other.hall_id:
        return None
    case_reach = case.ends_at + rules.tail
    if not (other.starts_at < case_reach and other.ends_at > case.starts_at):
        return None
    return _contact(case, other, case_reach, rules)


@dataclass(frozen=True, slots=True)
class _VenueCases:
    starts: list[datetime]  # case starts, sorted
    reach_max: list[datetime]  # running maximum of case end + tail over the sorted prefix
    stays: list[tuple[Stay, datetime]]  # (case stay, its end + tail), in the same order


def _index_cases(case_stays: Sequence[Stay], rules: MatchRules) -> dict[int, _VenueCases]:
    grouped: dict[int, list[Stay]] = defaultdict(list)
    for stay in case_stays:
        grouped[stay.venue_id].append(stay)
    index: dict[int, _VenueCases] = {}
    for venue_id, stays in grouped.items():
        stays.sort(key=lambda s: (s.starts_at, s.checkin_id))
        reach_max: list[datetime] = []
        for stay in stays:
            reach = stay.ends_at + rules.tail
            reach_max.append(reach if not reach_max or reach > reach_max[-1] else reach_max[-1])
        index[venue_id] = _VenueCases(
            starts=[s.starts_at for s in stays],
            reach_max=reach_max,
            stays=[(s, s.ends_at + rules.tail) for s in stays],
        )
    return index


def find_contacts(case_stays: Sequence[Stay], candidates: Iterable[Stay], rules: MatchRules) -> list[Contact]:
    """Match streamed candidate check-ins against a case's check-ins; see ``co_present``.

    ``candidates`` is consumed once, so a database cursor or a generator of batches works; it may
    contain the case's own check-ins and rows at unrelated venues, which are skipped. A candidate
    co-present with two case check-ins yields two contacts. A candidate streamed more than once
    (overlapping batch queries) still yields each pair once. The result is sorted by
    (case_checkin_id, checkin_id), whatever the order of the input.
    """
    index = _index_cases(case_stays, rules)
    seen: set[tuple[int, int]] = set()
    contacts: list[Contact] = []
    for other in candidates:
        venue = index.get(other.venue_id)
        if venue is None:
            continue
        other_start = other.starts_at
        reach_max = venue.reach_max
        # Case stays that started before the other left are a sorted prefix; walk it backwards
        # and stop once no earlier case stay reaches past the other's arrival.
        i = bisect_left(venue.starts, other.ends_at) - 1
        while i >= 0 and reach_max[i] > other_start:
            case, case_reach = venue.stays[i]
            i -= 1
            if case_reach <= other_start or case.person_id == other.person_id:
                continue
            if case.hall_id is not None and other.hall_id is not None and case.hall_id != other.hall_id:
                continue
            pair = (case.checkin_id, other.checkin_id)
            if pair in seen:
                continue
            seen.add(pair)
            contacts.append(_contact(case, other, case_reach, rules))
    contacts.sort(key=lambda c: (c.case_checkin_id, c.checkin_id))
    return contacts


def _strength(contact: Contact) -> tuple[bool, timedelta, bool, int, int]:
    # Ids are negated so that, among otherwise equal contacts, the lowest ids win: deterministic.
    return (
        contact.risk == "high",
        contact.overlap,
        not contact.in_tail_only,
        -contact.case_checkin_id,
        -contact.checkin_id,
    )


def strongest_per_person(contacts: Iterable[Contact]) -> dict[int, Contact]:
    """Pick, per exposed person, the contact that best explains their notice.

    Order of preference: high risk, then the longest overlap, then a visit that shared time with
    the case over one inside the tail only, then the lowest check-in ids.
    """
    best: dict[int, Contact] = {}
    for contact in contacts:
        current = best.get(contact.person_id)
        if current is None or _strength(contact) > _strength(current):
            best[contact.person_id] = contact
    return best


_MONTHS = {
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
    "ru": (
        "января", "февраля", "марта", "апреля", "мая", "июня",
        "июля", "августа", "сентября", "октября", "ноября", "декабря",
    ),
}  # fmt: skip

_SENTENCES = {
    "en": (
        "You were at {venue} {visit}; a person who later tested positive was there {case}.",
        " You arrived after they had left, but the air can stay infectious for a while.",
    ),
    "ru": (
        "Вы были в «{venue}» {visit}; человек, у которого позже подтвердили положительный тест, находился там {case}.",
        " Вы пришли уже после его ухода, но воздух в помещении ещё какое-то время может оставаться заразным.",
    ),
}


def _hhmm(moment: datetime) -> str:
    # Not f"{moment:%H:%M}": strftime costs several times more, and this runs for every exposure.
    return f"{moment.hour:02d}:{moment.minute:02d}"


def _span(start: datetime, end: datetime, lang: Lang, with_date: bool) -> str:
    """A span in wall-clock times (local datetimes)."""
    return _span_text(_hhmm(start), _hhmm(end), start, end, start.date() != end.date(), lang, with_date)


def _span_text(
    start_hm: str, end_hm: str, start: datetime, end: datetime, two_days: bool, lang: Lang, with_date: bool
) -> str:
    months = _MONTHS[lang]
    start_day = f"{start.day} {months[start.month - 1]}"
    if lang == "ru":
        if two_days:
            return f"с {start_hm} {start_day} до {end_hm} {end.day} {months[end.month - 1]}"
        span = f"с {start_hm} до {end_hm}"
        return f"{start_day} {span}" if with_date else span
    if two_days:
        return f"from {start_hm} on {start_day} to {end_hm} on {end.day} {months[end.month - 1]}"
    span = f"from {start_hm} to {end_hm}"
    return f"{span} on {start_day}" if with_date else span


# A case visit's span is written into the reason of everyone it exposed, so its local times and its
# wording are cached. The wording is keyed by naive wall-clock times: an aware datetime's hash is its
# UTC instant, which would hand one zone's wording to another (the local-time cache keys on the zone).
_case_span = lru_cache(maxsize=1024)(_span)


@lru_cache(maxsize=1024)
def _case_local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def describe(contact: Contact, venue_name: str, tz: ZoneInfo, lang: Lang) -> str:
    """Explain an exposure to the exposed person in plain words, in the venue's local time.

    Never identifies the case: only the venue and the two time spans appear. A span crossing
    local midnight names both dates; the case's span names its date only when it differs from
    the visitor's. During a DST fall-back hour the wall-clock times shown repeat, as on the
    venue's clocks.
    """
    return describe_all(contact, venue_name, tz, (lang,))[0]


def describe_all(contact: Contact, venue_name: str, tz: ZoneInfo, langs: Sequence[Lang]) -> list[str]:
    """describe() in several languages, converting and formatting the times once for all of them
    (this runs for every exposure a batch of cases finds)."""
    other_start = contact.other_starts_at.astimezone(tz)
    other_end = contact.other_ends_at.astimezone(tz)
    case_start = _case_local(contact.case_starts_at, tz)
    case_end = _case_local(contact.case_ends_at, tz)
    start_day, end_day = other_start.date(), other_end.date()
    same_day = case_start.date() == case_end.date() == start_day == end_day
    start_hm, end_hm = _hhmm(other_start), _hhmm(other_end)
    texts = []
    for lang in langs:
        sentence, tail_note = _SENTENCES[lang]
        text = sentence.format(
            venue=venue_name,
            visit=_span_text(start_hm, end_hm, other_start, other_end, start_day != end_day, lang, True),
            case=_case_span(case_start, case_end, lang, not same_day),
        )
        texts.append(text + tail_note if contact.in_tail_only else text)
    return texts


def venue_outbreaks(
    case_visits: Iterable[tuple[int, int, datetime]], rules: MatchRules
) -> set[tuple[int, frozenset[int]]]:
    """Find venues where ``outbreak_cases`` or more distinct cases visited close together.

    Input rows are (case_id, venue_id, visit start). A group is the set of cases whose visits
    fall within one window [t, t + outbreak_window] (both ends inclusive, so visits exactly a
    window apart count), which makes every two visits of a group at most a window apart. Only
    maximal windows are reported (one not contained in a later-starting one), as
    (venue_id, case ids); the same group found in two periods is reported once.
    """
    by_venue: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for case_id, venue_id, starts_at in case_visits:
        by_venue[venue_id].append((starts_at, case_id))
    outbreaks: set[tuple[int, frozenset[int]]] = set()
    for venue_id, visits in by_venue.items():
        visits.sort()
        times = [t for t, _ in visits]
        previous_last = -1
        for first, start in enumerate(times):
            last = bisect_right(times, start + rules.outbreak_window) - 1
            if last == previous_last:
                continue  # this window's visits are a subset of the previous window's
            previous_last = last
            cases = frozenset(case_id for _, case_id in visits[first : last + 1])
            if len(cases) >= rules.outbreak_cases:
                outbreaks.add((venue_id, cases))
    return outbreaks
