"""Tests for the exposure-matching rules, with a brute-force oracle for find_contacts."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.services.matching import (
    Contact,
    MatchRules,
    Stay,
    co_present,
    describe,
    describe_all,
    find_contacts,
    infectious_window,
    strongest_per_person,
    venue_outbreaks,
)

MOSCOW = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NO_TAIL = MatchRules(tail=timedelta(0))
T0 = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # 19:00 in Moscow


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def stay(
    start: float,
    end: float,
    *,
    checkin_id: int = 2,
    person_id: int = 2,
    venue_id: int = 7,
    hall_id: int | None = None,
) -> Stay:
    """A stay given in minutes after T0."""
    return Stay(checkin_id, person_id, venue_id, hall_id, at(start), at(end))


def case_stay(start: float = 0, end: float = 60, *, hall_id: int | None = None) -> Stay:
    return stay(start, end, checkin_id=1, person_id=1, hall_id=hall_id)


# --- co-presence boundaries ---------------------------------------------------------------


def test_touching_intervals_are_not_co_present() -> None:
    case = case_stay(0, 60)
    assert co_present(case, stay(60, 90), NO_TAIL) is None
    assert co_present(case, stay(-30, 0), NO_TAIL) is None
    assert co_present(case, stay(59.99, 90), NO_TAIL) is not None


def test_arrival_at_the_exact_end_of_the_tail_is_not_a_contact() -> None:
    case = case_stay(0, 60)
    rules = MatchRules(tail=timedelta(minutes=30))
    assert co_present(case, stay(90, 120), rules) is None
    contact = co_present(case, stay(89, 120), rules)
    assert contact is not None
    assert contact.overlap == timedelta(minutes=1)


def test_departure_at_the_case_arrival_is_not_a_contact_even_with_a_tail() -> None:
    assert co_present(case_stay(0, 60), stay(-60, 0), MatchRules()) is None


def test_visit_entirely_inside_the_tail_is_low_risk_however_long() -> None:
    rules = MatchRules(tail=timedelta(minutes=30), high_risk_overlap=timedelta(minutes=15))
    contact = co_present(case_stay(0, 60), stay(60, 120), rules)
    assert contact is not None
    assert contact.in_tail_only
    assert contact.overlap == timedelta(minutes=30)
    assert contact.risk == "low"


def test_overlap_counts_the_tail_towards_high_risk() -> None:
    rules = MatchRules(tail=timedelta(minutes=30), high_risk_overlap=timedelta(minutes=15))
    contact = co_present(case_stay(0, 60), stay(55, 120), rules)
    assert contact is not None
    assert (contact.overlap, contact.risk, contact.in_tail_only) == (
        timedelta(minutes=35),
        "high",
        False,
    )
    without_tail = co_present(case_stay(0, 60), stay(55, 120), NO_TAIL)
    assert without_tail is not None
    assert (without_tail.overlap, without_tail.risk) == (timedelta(minutes=5), "low")


def test_high_risk_starts_at_exactly_the_threshold() -> None:
    rules = MatchRules(tail=timedelta(0), high_risk_overlap=timedelta(minutes=15))
    exactly = co_present(case_stay(0, 60), stay(45, 90), rules)
    just_under = co_present(case_stay(0, 60), stay(45.5, 90), rules)
    assert exactly is not None and exactly.risk == "high"
    assert just_under is not None and just_under.risk == "low"


def test_zero_length_visit_inside_the_case_stay_is_a_low_risk_contact() -> None:
    contact = co_present(case_stay(0, 60), stay(30, 30), NO_TAIL)
    assert contact is not None
    assert (contact.overlap, contact.risk) == (timedelta(0), "low")


def test_zero_length_visit_at_the_case_arrival_is_not_a_contact() -> None:
    assert co_present(case_stay(0, 60), stay(0, 0), NO_TAIL) is None


def test_zero_length_case_stay_reaches_visitors_present_at_that_instant() -> None:
    case = case_stay(30, 30)
    spanning = co_present(case, stay(0, 60), NO_TAIL)
    assert spanning is not None and spanning.overlap == timedelta(0)
    assert not spanning.in_tail_only
    arriving_then = co_present(case, stay(30, 60), MatchRules(tail=timedelta(minutes=10)))
    assert arriving_then is not None
    assert arriving_then.in_tail_only and arriving_then.overlap == timedelta(minutes=10)
    assert co_present(case, stay(30, 60), NO_TAIL) is None


def test_same_person_and_other_venues_are_excluded() -> None:
    case = case_stay(0, 60)
    assert co_present(case, stay(10, 20, person_id=1, checkin_id=5), NO_TAIL) is None
    assert co_present(case, stay(10, 20, venue_id=8), NO_TAIL) is None


def test_halls_separate_visitors_but_a_venue_level_check_in_meets_every_hall() -> None:
    assert co_present(case_stay(hall_id=1), stay(10, 20, hall_id=2), NO_TAIL) is None
    assert co_present(case_stay(hall_id=1), stay(10, 20, hall_id=1), NO_TAIL) is not None
    assert co_present(case_stay(hall_id=1), stay(10, 20), NO_TAIL) is not None
    assert co_present(case_stay(), stay(10, 20, hall_id=2), NO_TAIL) is not None


def test_invalid_stays_and_rules_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        Stay(1, 1, 1, None, datetime(2026, 1, 1), datetime(2026, 1, 1, 1))
    with pytest.raises(ValueError, match="ends before"):
        stay(10, 5)
    with pytest.raises(ValueError):
        MatchRules(tail=timedelta(minutes=-1))
    with pytest.raises(ValueError):
        MatchRules(outbreak_cases=1)


# --- find_contacts and strongest_per_person -------------------------------------------------


def test_candidate_overlapping_two_case_stays_yields_one_contact_per_case_check_in() -> None:
    cases = [case_stay(0, 60), stay(120, 180, checkin_id=3, person_id=1)]
    other = stay(50, 130, checkin_id=10)
    contacts = find_contacts(cases, iter([other]), NO_TAIL)
    assert [(c.case_checkin_id, c.checkin_id) for c in contacts] == [(1, 10), (3, 10)]


def test_find_contacts_ignores_repeats_order_and_unrelated_rows() -> None:
    cases = [case_stay(0, 60), stay(120, 180, checkin_id=3, person_id=1)]
    rows = [
        stay(50, 130, checkin_id=10, person_id=20),
        stay(10, 20, checkin_id=11, person_id=21),
        stay(10, 20, checkin_id=12, person_id=22, venue_id=99),
        *cases,
    ]
    expected = find_contacts(cases, iter(rows), NO_TAIL)
    shuffled = rows * 3
    random.Random(4).shuffle(shuffled)
    assert find_contacts(cases, (row for row in shuffled), NO_TAIL) == expected
    assert [(c.case_checkin_id, c.checkin_id) for c in expected] == [(1, 10), (1, 11), (3, 10)]


def test_strongest_per_person_prefers_high_risk_then_longer_overlap() -> None:
    rules = MatchRules(tail=timedelta(minutes=30))
    cases = [case_stay(0, 60), stay(200, 300, checkin_id=3, person_id=1)]
    rows = [
        stay(60, 90, checkin_id=10, person_id=5),  # inside the first tail: 30 min, low
        stay(280, 300, checkin_id=11, person_id=5),  # 20 min shared: high
        stay(50, 55, checkin_id=12, person_id=6),  # 5 min, low
        stay(40, 55, checkin_id=13, person_id=6),  # 15 min, high
    ]
    best = strongest_per_person(find_contacts(cases, rows, rules))
    assert {person: c.checkin_id for person, c in best.items()} == {5: 11, 6: 13}


# --- infectious window ----------------------------------------------------------------------


def test_infectious_window_defaults_to_two_days_before_the_test_until_the_test_day_ends() -> None:
    start, end = infectious_window(date(2026, 11, 20), None, None, MOSCOW, MatchRules())
    assert start == datetime(2026, 11, 17, 21, 0, tzinfo=UTC)  # 18 Nov 00:00 MSK
    assert end == datetime(2026, 11, 20, 21, 0, tzinfo=UTC)  # 21 Nov 00:00 MSK
    assert start.utcoffset() == timedelta(0)


def test_infectious_window_starts_from_symptom_onset_and_ends_with_isolation() -> None:
    start, end = infectious_window(date(2026, 11, 20), date(2026, 11, 16), date(2026, 11, 22), MOSCOW, MatchRules())
    assert start == datetime(2026, 11, 13, 21, 0, tzinfo=UTC)
    assert end == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def test_symptoms_after_the_test_do_not_shorten_the_window() -> None:
    start, _ = infectious_window(date(2026, 11, 20), date(2026, 11, 23), None, MOSCOW, MatchRules())
    assert start == datetime(2026, 11, 17, 21, 0, tzinfo=UTC)


def test_isolation_before_the_window_is_rejected() -> None:
    with pytest.raises(ValueError, match="isolation"):
        infectious_window(date(2026, 11, 20), None, date(2026, 11, 17), MOSCOW, MatchRules())


def test_infectious_window_across_spring_forward_in_berlin() -> None:
    rules = MatchRules(lead_days=2)
    start, end = infectious_window(date(2026, 3, 31), None, date(2026, 3, 29), BERLIN, rules)
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)  # 29 Mar 00:00 CET
    assert end == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 30 Mar 00:00 CEST
    assert end - start == timedelta(hours=23)


def test_infectious_window_across_fall_back_in_new_york() -> None:
    start, end = infectious_window(date(2026, 11, 3), None, date(2026, 11, 1), NEW_YORK, MatchRules())
    assert start == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 1 Nov 00:00 EDT
    assert end == datetime(2026, 11, 2, 5, 0, tzinfo=UTC)  # 2 Nov 00:00 EST
    assert end - start == timedelta(hours=25)


TRICKY_ZONES = ["Europe/Berlin", "America/New_York", "America/Havana", "America/Sao_Paulo"]
TRICKY_DAYS = [
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2019, 3, 10),
    date(2019, 11, 3),  # Havana: midnight occurs twice
    date(2018, 11, 4),  # Sao Paulo: midnight skipped
    date(2019, 2, 17),  # Sao Paulo: the clock falls back from 00:00 to 23:00
]


@settings(deadline=None, max_examples=200)
@given(
    zone=st.sampled_from(TRICKY_ZONES),
    tested_on=st.one_of(st.sampled_from(TRICKY_DAYS), st.dates(date(2015, 1, 1), date(2027, 12, 31))).flatmap(
        lambda d: st.sampled_from([d + timedelta(days=k) for k in range(-1, 4)])
    ),
    onset_days_before=st.none() | st.integers(-2, 5),
    isolation_days_after=st.none() | st.integers(0, 5),
    lead_days=st.integers(0, 3),
)
def test_infectious_window_bounds_are_the_instants_local_dates_change(
    zone: str,
    tested_on: date,
    onset_days_before: int | None,
    isolation_days_after: int | None,
    lead_days: int,
) -> None:
    tz = ZoneInfo(zone)
    onset = None if onset_days_before is None else tested_on - timedelta(days=onset_days_before)
    isolated = None if isolation_days_after is None else tested_on + timedelta(days=isolation_days_after)
    start, end = infectious_window(tested_on, onset, isolated, tz, MatchRules(lead_days=lead_days))
    first = min(tested_on, onset or tested_on) - timedelta(days=lead_days)
    last = isolated or tested_on
    tick = timedelta(microseconds=1)
    assert start.tzinfo is UTC and end.tzinfo is UTC
    assert start.astimezone(tz).date() == first
    assert (start - tick).astimezone(tz).date() == first - timedelta(days=1)
    assert end.astimezone(tz).date() == last + timedelta(days=1)
    assert (end - tick).astimezone(tz).date() == last


# --- describe -------------------------------------------------------------------------------


def test_describe_gives_local_times_in_english_and_russian() -> None:
    contact = co_present(case_stay(0, 60), stay(10, 90, person_id=987654), NO_TAIL)
    assert contact is not None
    assert describe(contact, "Café X", MOSCOW, "en") == (
        "You were at Café X from 19:10 to 20:30 on 21 Nov; "
        "a person who later tested positive was there from 19:00 to 20:00."
    )
    assert describe(contact, "Кафе Х", MOSCOW, "ru") == (
        "Вы были в «Кафе Х» 21 ноября с 19:10 до 20:30; человек, у которого позже подтвердили "
        "положительный тест, находился там с 19:00 до 20:00."
    )


def test_describe_names_both_dates_for_a_visit_across_midnight() -> None:
    contact = co_present(case_stay(240, 280), stay(290, 330), MatchRules())
    assert contact is not None and contact.in_tail_only
    assert describe(contact, "Bar", MOSCOW, "en") == (
        "You were at Bar from 23:50 on 21 Nov to 00:30 on 22 Nov; a person who later tested "
        "positive was there from 23:00 to 23:40 on 21 Nov. You arrived after they had left, "
        "but the air can stay infectious for a while."
    )
    assert describe(contact, "Бар", MOSCOW, "ru").startswith(
        "Вы были в «Бар» с 23:50 21 ноября до 00:30 22 ноября; человек, у которого позже "
        "подтвердили положительный тест, находился там 21 ноября с 23:00 до 23:40. Вы пришли"
    )


def test_describe_uses_wall_clock_times_across_dst_changes() -> None:
    spring_case = Stay(1, 1, 7, None, datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 3, 29, 2, 0, tzinfo=UTC))
    spring = Stay(2, 2, 7, None, datetime(2026, 3, 29, 0, 30, tzinfo=UTC), datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    contact = co_present(spring_case, spring, NO_TAIL)
    assert contact is not None
    assert describe(contact, "Club", BERLIN, "en") == (
        "You were at Club from 01:30 to 03:30 on 29 Mar; "
        "a person who later tested positive was there from 01:00 to 04:00."
    )
    autumn_case = Stay(
        1, 1, 7, None, datetime(2026, 10, 24, 23, 0, tzinfo=UTC), datetime(2026, 10, 25, 2, 0, tzinfo=UTC)
    )
    autumn = Stay(2, 2, 7, None, datetime(2026, 10, 25, 0, 10, tzinfo=UTC), datetime(2026, 10, 25, 1, 20, tzinfo=UTC))
    contact = co_present(autumn_case, autumn, NO_TAIL)
    assert contact is not None
    assert describe(contact, "Club", BERLIN, "ru") == (
        "Вы были в «Club» 25 октября с 02:10 до 02:20; человек, у которого позже подтвердили "
        "положительный тест, находился там с 01:00 до 03:00."
    )


def test_the_same_instants_are_told_in_each_venues_own_zone() -> None:
    """Wordings are cached: the cache must not hand Moscow's wall clock to a venue in Berlin."""
    contact = co_present(case_stay(0, 60), stay(10, 90), NO_TAIL)
    assert contact is not None
    moscow = describe(contact, "V", MOSCOW, "en")
    berlin = describe(contact, "V", BERLIN, "en")
    assert "from 19:10 to 20:30" in moscow and "from 17:10 to 18:30" in berlin
    assert describe(contact, "V", MOSCOW, "en") == moscow


def test_describe_all_gives_each_languages_describe() -> None:
    contact = co_present(case_stay(240, 280), stay(290, 330), MatchRules())
    assert contact is not None
    assert describe_all(contact, "Bar", MOSCOW, ("en", "ru")) == [
        describe(contact, "Bar", MOSCOW, "en"),
        describe(contact, "Bar", MOSCOW, "ru"),
    ]


def test_describe_never_mentions_the_case_identity() -> None:
    case = Stay(424242, 737373, 7, None, at(0), at(60))
    contact = co_present(case, stay(10, 20), NO_TAIL)
    assert contact is not None
    for lang in ("en", "ru"):
        text = describe(contact, "Venue", MOSCOW, lang)  # type: ignore[arg-type]
        assert "424242" not in text and "737373" not in text


# --- venue outbreaks ------------------------------------------------------------------------


def test_two_cases_exactly_a_window_apart_make_an_outbreak() -> None:
    visits = [(1, 7, T0), (2, 7, T0 + timedelta(days=7))]
    assert venue_outbreaks(visits, MatchRules()) == {(7, frozenset({1, 2}))}
    later = [(1, 7, T0), (2, 7, T0 + timedelta(days=7, seconds=1))]
    assert venue_outbreaks(later, MatchRules()) == set()


def test_one_case_visiting_twice_or_cases_at_different_venues_are_no_outbreak() -> None:
    visits = [(1, 7, T0), (1, 7, T0 + timedelta(days=1)), (2, 8, T0)]
    assert venue_outbreaks(visits, MatchRules()) == set()


def test_outbreak_groups_do_not_chain_beyond_the_window() -> None:
    visits = [(1, 7, T0), (2, 7, T0 + timedelta(days=5)), (3, 7, T0 + timedelta(days=10))]
    assert venue_outbreaks(visits, MatchRules()) == {
        (7, frozenset({1, 2})),
        (7, frozenset({2, 3})),
    }
    assert venue_outbreaks(visits, MatchRules(outbreak_cases=3)) == set()


def test_outbreak_reports_the_whole_group_not_its_tails() -> None:
    visits = [(case, 7, T0 + timedelta(days=case)) for case in (1, 2, 3)]
    assert venue_outbreaks(visits, MatchRules()) == {(7, frozenset({1, 2, 3}))}


@settings(deadline=None, max_examples=150)
@given(
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3), st.integers(0, 20)), max_size=14),
    st.integers(0, 6),
)
def test_outbreaks_cover_every_close_pair_and_only_close_pairs(
    raw: list[tuple[int, int, int]], window_days: int
) -> None:
    rules = MatchRules(outbreak_window=timedelta(days=window_days))
    visits = [(case, venue, T0 + timedelta(days=day)) for case, venue, day in raw]
    found = venue_outbreaks(visits, rules)
    for venue, cases in found:
        assert len(cases) >= 2
        days = [day for case, v, day in raw if v == venue and case in cases]
        # some choice of one visit per case fits in one window: check via every anchor day
        assert any(
            all(any(v == venue and c == case and d0 <= d <= d0 + window_days for c, v, d in raw) for case in cases)
            for d0 in days
        )
    for case_a, venue_a, day_a in raw:
        for case_b, venue_b, day_b in raw:
            if venue_a == venue_b and case_a != case_b and abs(day_a - day_b) <= window_days:
                assert any(v == venue_a and {case_a, case_b} <= c for v, c in found)


# --- property test against a brute-force oracle ---------------------------------------------

GRID = 300  # seconds; a coarse grid makes equal and touching timestamps common
ORIGIN = datetime(2026, 3, 29, 0, 0, tzinfo=UTC)

raw_stays = st.lists(
    st.tuples(
        st.integers(1, 4),  # person
        st.integers(1, 2),  # venue
        st.sampled_from([None, 1, 2]),  # hall
        st.integers(0, 24),  # start, in grid steps
        st.integers(0, 8),  # length, in grid steps
        st.integers(1, 3),  # party size
    ),
    max_size=14,
)


def seconds_upto(top: int) -> st.SearchStrategy[int]:
    """Durations in seconds, often whole grid steps so they line up with stay boundaries."""
    return st.one_of(st.integers(0, top // GRID).map(lambda k: k * GRID), st.integers(0, top))


def oracle(
    rows: list[tuple[int, int, int, int | None, int, int, int]],
    case_people: set[int],
    tail: int,
    high: int,
) -> list[tuple[object, ...]]:
    """Nested loops over (case row, other row), in integer seconds."""
    found = []
    for cid, cperson, cvenue, chall, cstart, cend, _ in rows:
        if cperson not in case_people:
            continue
        for oid, operson, ovenue, ohall, ostart, oend, oparty in rows:
            if ovenue != cvenue or operson == cperson:
                continue
            if chall is not None and ohall is not None and chall != ohall:
                continue
            if not (ostart < cend + tail and oend > cstart):
                continue
            overlap = max(0, min(oend, cend + tail) - max(ostart, cstart))
            tail_only = ostart >= cend
            risk = "high" if overlap >= high and not tail_only else "low"
            found.append((cid, oid, operson, ovenue, overlap, risk, tail_only, oparty, cstart, cend, ostart, oend))
    return sorted(found)


@settings(deadline=None, max_examples=300)
@given(
    raw=raw_stays,
    case_people=st.sets(st.integers(1, 4), min_size=1, max_size=2),
    tail=seconds_upto(3600),
    high=seconds_upto(1800),
    seed=st.integers(0, 2**16),
)
@example(
    raw=[(1, 1, None, 4, 4, 1), (2, 1, 1, 8, 2, 1), (3, 1, 2, 0, 4, 1), (4, 1, None, 4, 0, 1)],
    case_people={1},
    tail=0,
    high=0,
    seed=0,
)
def test_find_contacts_matches_brute_force_oracle(
    raw: list[tuple[int, int, int | None, int, int, int]],
    case_people: set[int],
    tail: int,
    high: int,
    seed: int,
) -> None:
    rows = [
        (i, person, venue, hall, start * GRID, (start + length) * GRID, party)
        for i, (person, venue, hall, start, length, party) in enumerate(raw, start=1)
    ]
    stays = [
        Stay(i, person, venue, hall, ORIGIN + timedelta(seconds=s), ORIGIN + timedelta(seconds=e), party)
        for i, person, venue, hall, s, e, party in rows
    ]
    rules = MatchRules(tail=timedelta(seconds=tail), high_risk_overlap=timedelta(seconds=high))
    case_stays = [s for s in stays if s.person_id in case_people]
    stream = stays * 2  # repeated rows, as overlapping batch queries would return them
    random.Random(seed).shuffle(stream)

    contacts = find_contacts(case_stays, iter(stream), rules)

    expected = oracle(rows, case_people, tail, high)
    assert [_as_seconds(c) for c in contacts] == expected
    by_id = {s.checkin_id: s for s in stays}
    for c in contacts:
        assert co_present(by_id[c.case_checkin_id], by_id[c.checkin_id], rules) == c


def _as_seconds(c: Contact) -> tuple[object, ...]:
    def seconds(moment: datetime | timedelta) -> float:
        return (moment - ORIGIN if isinstance(moment, datetime) else moment).total_seconds()

    times = (c.case_starts_at, c.case_ends_at, c.other_starts_at, c.other_ends_at)
    ids = (c.case_checkin_id, c.checkin_id, c.person_id, c.venue_id)
    return (*ids, seconds(c.overlap), c.risk, c.in_tail_only, c.party_size, *map(seconds, times))
