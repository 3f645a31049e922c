"""Check-in batches from kiosks: per-item verdicts, idempotency, token verification, authentication."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.models import Checkin, CheckinSource, CheckoutReason, PersonalCodeKey
from app.services import kiosk_sync, personal_codes
from app.services.kiosk_sync import recording
from tests import factories
from tests.app.kiosks.conftest import EnrolledKiosk, ble_item, enrol_kiosk, scanner_item
from venue_kiosk import codes

URL = "/api/v1/kiosk/checkins"


def _send(client: FlaskClient, kiosk: EnrolledKiosk, items: list[Any]) -> list[dict[str, Any]]:
    resp = client.post(URL, json={"sent_at": "2026-11-20T12:00:00+00:00", "items": items}, headers=kiosk.headers)
    assert resp.status_code == 200, resp.json
    return resp.json["results"]


def _visits(db: Any) -> list[Checkin]:
    return list(db.session.scalars(select(Checkin).order_by(Checkin.checked_in_at, Checkin.id)))


def test_scanned_and_bluetooth_checkins_are_recorded_at_the_kiosks_entrance(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    anna, boris = factories.person(), factories.person()
    items = [scanner_item(anna, api_now - timedelta(minutes=3)), ble_item(boris, api_now - timedelta(seconds=20))]
    results = _send(client, kiosk, items)
    assert [(r["client_id"], r["status"], r["reason"]) for r in results] == [
        (items[0]["client_id"], "accepted", "Checked in."),
        (items[1]["client_id"], "accepted", "Checked in."),
    ]
    first, second = _visits(db)
    assert (first.person_id, first.source, first.checked_in_at) == (
        anna.id,
        CheckinSource.KIOSK_SCANNER,
        api_now - timedelta(minutes=3),
    )
    assert (second.person_id, second.source) == (boris.id, CheckinSource.BLE)
    for visit, item in ((first, items[0]), (second, items[1])):
        assert visit.venue_id == kiosk.venue.id and visit.entrance_id == kiosk.entrance.id
        assert visit.kiosk_id == kiosk.id and visit.client_id == item["client_id"]
        assert visit.checked_out_at is None and visit.planned_checkout_at == visit.checked_in_at + timedelta(hours=1)


def test_a_kiosk_visit_keeps_its_visitor_through_retention_without_a_last_seen_write(
    app: Any, client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    from app.models import Person
    from app.services.retention import TARGETS, purge_batch

    long_ago = api_now - timedelta(days=60)
    anna = factories.person()
    anna.created_at, anna.last_seen_at = long_ago, long_ago
    anna_id = anna.id
    db.session.commit()
    assert _send(client, kiosk, [scanner_item(anna, api_now - timedelta(minutes=1))])[0]["status"] == "accepted"
    assert db.session.get(Person, anna_id).last_seen_at == long_ago  # ingestion writes no "last seen"

    def purge(at: datetime) -> None:
        for target in TARGETS:
            while purge_batch(target, at, app.config, 100):
                pass
        db.session.commit()

    days = int(app.config["RETENTION_DAYS"])
    purge(api_now + timedelta(days=days - 1))
    assert db.session.get(Person, anna_id) is not None  # the visit keeps her
    purge(api_now + timedelta(days=days + 1))
    db.session.expunge_all()
    assert db.session.get(Person, anna_id) is None  # visit past retention: both gone


def test_a_resent_batch_answers_duplicate_and_records_nothing_twice(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    items = [scanner_item(factories.person(), api_now - timedelta(seconds=n)) for n in range(5)]
    assert {r["status"] for r in _send(client, kiosk, items)} == {"accepted"}
    again = _send(client, kiosk, [*items, items[0]])
    assert [r["status"] for r in again] == ["duplicate"] * 6
    assert again[0]["reason"] == "Already recorded."
    assert again[5]["reason"] == "The same client id came twice in this batch."
    assert len(_visits(db)) == 5


def _ble_text(key_id: int, at: datetime) -> str:
    return codes.parse_ble_payload(codes.ble_token_payload(b"k" * 32, key_id, at)).text


def test_forged_expired_and_replayed_tokens_are_rejected_with_a_reason(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    visitor = factories.person()
    genuine = scanner_item(visitor, api_now - timedelta(minutes=10))
    qr_key = personal_codes.active_key(visitor, "qr", api_now)
    ble_key = personal_codes.active_key(visitor, "ble", api_now)
    forged_qr = codes.personal_code(b"x" * 32, qr_key.id, api_now)
    forged_ble = codes.parse_ble_payload(codes.ble_token_payload(b"x" * 32, ble_key.id, api_now)).text
    at = api_now.isoformat()
    items = [
        {"client_id": "forged-qr", "method": "kiosk_scanner", "token": forged_qr, "observed_at": at},
        {"client_id": "forged-ble", "method": "ble", "token": forged_ble, "observed_at": at},
        # A screenshot of a code made five minutes before it was shown to the scanner.
        scanner_item(visitor, api_now, token_at=api_now - timedelta(minutes=5), client_id="screenshot"),
        ble_item(visitor, api_now, token_at=api_now - timedelta(minutes=2), client_id="recorded-ble"),
        # The genuine token, captured and replayed later under a new client id.
        genuine | {"client_id": "replayed", "observed_at": (api_now - timedelta(minutes=1)).isoformat()},
        # Codes that belong to no key at all.
        {"client_id": "no-key", "method": "kiosk_scanner", "token": codes.personal_code(b"k" * 32, 999_999, api_now)},
        # Ids past the key column's range (codes carry 32 bits unsigned): no key, not a failed batch.
        {
            "client_id": "huge-qr",
            "method": "kiosk_scanner",
            "token": codes.personal_code(b"k" * 32, 2**32 - 1, api_now),
        },
        {"client_id": "huge-ble", "method": "ble", "token": _ble_text(2**31, api_now), "observed_at": at},
        genuine,
    ]
    items[5]["observed_at"] = items[6]["observed_at"] = at
    results = {r["client_id"]: (r["status"], r["reason"]) for r in _send(client, kiosk, items)}
    not_genuine = ("rejected", "The code is not genuine or no longer valid.")
    expired = ("rejected", "The code had expired when it was read (an old screenshot, recording or replay).")
    assert results["forged-qr"] == not_genuine and results["forged-ble"] == not_genuine
    assert results["screenshot"] == expired and results["recorded-ble"] == expired and results["replayed"] == expired
    assert results["no-key"] == results["huge-qr"] == results["huge-ble"] == not_genuine
    assert results[genuine["client_id"]] == ("accepted", "Checked in.")
    assert [v.client_id for v in _visits(db)] == [genuine["client_id"]]


def test_junk_items_are_rejected_one_by_one_and_never_fail_the_batch(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    good = ble_item(factories.person(), api_now)
    at = api_now.isoformat()
    junk: list[Any] = [
        "a string",
        None,
        {"method": "ble", "token": good["token"], "observed_at": at},
        {"client_id": "x" * 65, "method": "ble", "token": good["token"], "observed_at": at},
        {"client_id": "m", "method": "sms", "token": good["token"], "observed_at": at},
        {"client_id": "t", "method": "ble", "token": "", "observed_at": at},
        {"client_id": "t2", "method": "ble", "token": ["list"], "observed_at": at},
        {"client_id": "d", "method": "ble", "token": "AAAA", "observed_at": at},
        {"client_id": "d2", "method": "kiosk_scanner", "token": "P1000NPUCU5AFLVH5HKY", "observed_at": at},
        {"client_id": "naive", "method": "ble", "token": good["token"], "observed_at": "2026-11-20T12:00:00"},
        {"client_id": "nodate", "method": "ble", "token": good["token"], "observed_at": "yesterday"},
        {"client_id": "future", "method": "ble", "token": good["token"], "observed_at": "2026-11-20T13:00:00+00:00"},
        {"client_id": "early", "method": "ble", "token": good["token"], "observed_at": "2026-11-20T10:00:00+00:00"},
        {"client_id": "skew", "method": "ble", "token": good["token"], "observed_at": at, "clock_skew_s": "a lot"},
        {"client_id": "skew2", "method": "ble", "token": good["token"], "observed_at": at, "clock_skew_s": 1e9},
        good,
    ]
    results = _send(client, kiosk, junk)
    assert [r["index"] for r in results] == list(range(len(junk)))
    assert [r["status"] for r in results] == ["rejected"] * (len(junk) - 1) + ["accepted"]
    reasons = [r["reason"] for r in results]
    assert reasons[0] == "Each item must be an object." and results[0]["client_id"] is None
    assert reasons[2].startswith("client_id must be")
    assert reasons[4] == "method must be kiosk_scanner or ble."
    assert reasons[7] == reasons[8] == "The token is damaged or is not a check-in code."
    assert "UTC offset" in reasons[9] and "future" in reasons[11] and "before this kiosk was enrolled" in reasons[12]
    assert len(_visits(db)) == 1


def test_a_batch_over_500_items_or_without_a_list_is_refused_whole(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    item = ble_item(factories.person(), api_now)
    db.session.commit()
    too_many = [item | {"client_id": str(n)} for n in range(501)]
    resp = client.post(URL, json={"items": too_many}, headers=kiosk.headers)
    assert resp.status_code == 400 and "at most 500" in resp.json["error"]
    for body in ({"items": "x"}, {}, [1, 2]):
        assert client.post(URL, json=body, headers=kiosk.headers).status_code == 400
    assert client.post(URL, data="{", headers=kiosk.headers, content_type="application/json").status_code == 400
    assert _visits(db) == []
    assert [r["status"] for r in _send(client, kiosk, too_many[:500])] == ["accepted"] + ["accepted"] * 499


def test_reads_after_the_venue_or_entrance_was_archived_are_rejected_and_earlier_ones_recorded(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    early, late = factories.person(), factories.person()
    closed = api_now - timedelta(minutes=30)
    items = [scanner_item(early, closed - timedelta(minutes=1)), scanner_item(late, closed + timedelta(minutes=29))]
    for place in (kiosk.venue, kiosk.entrance):
        kiosk.venue.archived_at = kiosk.entrance.archived_at = None
        place.archived_at = closed
        db.session.commit()
        results = _send(client, kiosk, items)
        assert results[0]["status"] in ("accepted", "duplicate")
        assert (results[1]["status"], results[1]["reason"]) == (
            "rejected",
            "This entrance was closed before this check-in; it no longer takes check-ins.",
        )
    assert [v.person_id for v in _visits(db)] == [early.id]


def test_without_a_valid_credential_the_kiosk_gets_401(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    item = ble_item(factories.person(), api_now)
    db.session.commit()
    for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer made-up"}):
        resp = client.post(URL, json={"items": [item]}, headers=headers)
        assert resp.status_code == 401 and resp.json["status"] == 401
    kiosk_sync.revoke(kiosk.id, api_now)
    revoked = client.post(URL, json={"items": [item]}, headers=kiosk.headers)
    assert revoked.status_code == 401 and "revoked" in revoked.json["error"]
    assert _visits(db) == []


def test_a_client_id_recorded_by_another_kiosk_is_not_reported_as_ours(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    other = enrol_kiosk(factories.venue(name="Other venue"), api_now - timedelta(hours=1))
    visitor = factories.person()
    item = ble_item(visitor, api_now - timedelta(minutes=1))
    assert _send(client, other, [item])[0]["status"] == "accepted"
    stolen = _send(client, kiosk, [item])[0]
    assert stolen["status"] == "rejected" and stolen["reason"] == "This client id was used by another device."
    (visit,) = _visits(db)
    assert visit.kiosk_id == other.id and visit.venue_id == other.venue.id


def test_a_kiosk_that_corrected_its_clock_gets_one_more_step_of_tolerance(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    # The token's step is 45-75 s away from the (corrected) observation time: two steps, not one.
    token_at = api_now - timedelta(seconds=60)
    plain = scanner_item(factories.person(), api_now, token_at=token_at)
    flagged = scanner_item(factories.person(), api_now, token_at=token_at, clock_skew_s=-93.5)
    results = _send(client, kiosk, [plain, flagged])
    assert [r["status"] for r in results] == ["rejected", "accepted"]


def test_a_key_revoked_after_the_observation_still_vouches_for_it(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    early, late = factories.person(), factories.person()
    seen_at = api_now - timedelta(minutes=30)
    items = [ble_item(early, seen_at), ble_item(late, seen_at)]
    for who, revoked_at in ((early, seen_at + timedelta(minutes=5)), (late, seen_at - timedelta(minutes=5))):
        key = db.session.scalar(select(PersonalCodeKey).where(PersonalCodeKey.person_id == who.id))
        key.revoked_at = revoked_at
    db.session.flush()
    assert [r["status"] for r in _send(client, kiosk, items)] == ["accepted", "rejected"]


def test_a_repeat_read_during_the_visit_continues_it(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    visitor = factories.person()
    first = _send(client, kiosk, [scanner_item(visitor, api_now - timedelta(minutes=40))])
    both = _send(
        client,
        kiosk,
        [ble_item(visitor, api_now - timedelta(minutes=39)), scanner_item(visitor, api_now - timedelta(minutes=10))],
    )
    assert first[0]["reason"] == "Checked in."
    assert [r["reason"] for r in both] == ["Checked in; the visit already in progress here continues."] * 2
    (visit,) = _visits(db)
    assert visit.checked_out_at is None
    assert visit.planned_checkout_at == api_now + timedelta(minutes=50)  # the later read extends the stay


def test_a_kiosk_checkin_ends_the_open_visit_elsewhere(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    visitor = factories.person()
    cafe = factories.venue(name="Café")
    earlier = factories.checkin(visitor, cafe, api_now - timedelta(minutes=30), minutes=None)
    _send(client, kiosk, [ble_item(visitor, api_now - timedelta(minutes=5))])
    db.session.refresh(earlier)
    assert earlier.checked_out_at == api_now - timedelta(minutes=5)
    assert earlier.checkout_reason == CheckoutReason.NEXT_CHECKIN
    assert [v.checked_out_at for v in _visits(db)] == [api_now - timedelta(minutes=5), None]


def test_a_late_offline_checkin_fits_before_a_newer_visit_without_touching_it(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    visitor = factories.person()
    cafe = factories.venue(name="Café")
    newer = factories.checkin(visitor, cafe, api_now - timedelta(minutes=20), minutes=None)
    _send(client, kiosk, [scanner_item(visitor, api_now - timedelta(minutes=50))])
    db.session.refresh(newer)
    assert newer.checked_out_at is None
    kiosk_visit = _visits(db)[0]
    assert kiosk_visit.checked_in_at == api_now - timedelta(minutes=50)
    assert kiosk_visit.checked_out_at == newer.checked_in_at
    assert kiosk_visit.checkout_reason == CheckoutReason.NEXT_CHECKIN


def test_a_late_item_cuts_back_a_visit_elsewhere_whose_end_came_from_a_later_check_in(now: datetime) -> None:
    # Found by tests/app/kiosks/test_concurrent_batches.py: four kiosks' observations of one person
    # arrived in the order t4 (building 2), t3 (building 1), t1 (building 2), t2 (building 1). The visit
    # from t1 had been ended at t3 by the item from t3; the item from t2 must end it at t2, or the person
    # is in both buildings from t2 to t3 (and a case's contacts there get a notice for it).
    t1, t2, t3, t4 = (now - timedelta(minutes=m) for m in (40, 30, 20, 10))
    stay = timedelta(hours=1)
    known = [
        recording.PlannedVisit(2, t1, t1 + stay, t3, CheckoutReason.NEXT_CHECKIN, id=1, old_checked_out_at=t3),
        recording.PlannedVisit(1, t3, t3 + stay, t4, CheckoutReason.NEXT_CHECKIN, id=2, old_checked_out_at=t4),
        recording.PlannedVisit(2, t4, t4 + stay, id=3),
    ]
    item = recording.VerifiedItem(0, "late", 7, t2, CheckinSource.KIOSK_SCANNER)
    plan = recording.plan_visits(known, [item], 1, stay, now)
    spans = [(v.venue_id, v.checked_in_at, v.checked_out_at) for v in plan.visits]
    assert spans == [(2, t1, t2), (1, t2, t3), (1, t3, t4), (2, t4, None)]
    assert [v.is_changed for v in plan.visits if v.id is not None] == [True, False, False]
    assert plan.outcomes == {0: ("accepted", "Checked in.")}


def test_a_scan_that_would_stretch_a_visit_past_a_day_ends_it_and_begins_another(now: datetime) -> None:
    stay = timedelta(hours=10)
    start = now - timedelta(hours=20)
    known = [recording.PlannedVisit(1, start, start + timedelta(hours=19), id=1)]  # continued once, at 9 h
    items = [
        recording.VerifiedItem(0, "a", 7, start + timedelta(hours=12), CheckinSource.KIOSK_SCANNER),  # to 22 h
        recording.VerifiedItem(1, "b", 7, start + timedelta(hours=18), CheckinSource.KIOSK_SCANNER),  # to 28 h
    ]
    plan = recording.plan_visits(known, items, 1, stay, now)
    spans = [(v.checked_in_at - start, v.checked_out_at, v.checkout_reason) for v in plan.visits]
    at18 = start + timedelta(hours=18)
    assert spans == [(timedelta(0), at18, CheckoutReason.NEXT_CHECKIN), (timedelta(hours=18), None, None)]
    assert plan.visits[1].planned_checkout_at == at18 + stay
    assert plan.outcomes == {
        0: ("accepted", "Checked in; the visit already in progress here continues."),
        1: (
            "accepted",
            "Checked in.",
        ),
    }


def test_a_checkin_whose_stay_already_ended_is_recorded_closed(client: FlaskClient, db: Any, api_now: datetime) -> None:
    kiosk = enrol_kiosk(factories.venue(), api_now - timedelta(days=2))
    visitor = factories.person()
    _send(client, kiosk, [ble_item(visitor, api_now - timedelta(hours=20))])
    (visit,) = _visits(db)
    assert visit.checked_out_at == visit.planned_checkout_at == api_now - timedelta(hours=19)
    assert visit.checkout_reason == CheckoutReason.AUTO


@pytest.mark.parametrize("recorder", [kiosk_sync.record_visits_in_bulk, kiosk_sync.record_each_with_check_in])
def test_both_recorders_agree_on_new_continued_and_moved_visits(
    db: Any, kiosk: EnrolledKiosk, api_now: datetime, recorder: kiosk_sync.Recorder
) -> None:
    ctx = kiosk_sync.authenticate(f"Bearer {kiosk.credential}")
    anna, boris = factories.person(), factories.person()
    elsewhere = factories.checkin(boris, factories.venue(name="Café"), api_now - timedelta(minutes=30), minutes=None)
    items = [
        scanner_item(anna, api_now - timedelta(minutes=9)),
        ble_item(anna, api_now - timedelta(minutes=8)),
        ble_item(boris, api_now - timedelta(minutes=7)),
    ]
    results = kiosk_sync.ingest_checkins(ctx, items, api_now, recorder=recorder)
    assert [(r.status, r.reason) for r in results] == [
        ("accepted", "Checked in."),
        ("accepted", "Checked in; the visit already in progress here continues."),
        ("accepted", "Checked in."),
    ]
    db.session.refresh(elsewhere)
    assert elsewhere.checked_out_at == api_now - timedelta(minutes=7)
    ours = db.session.scalars(select(Checkin).where(Checkin.kiosk_id == kiosk.id).order_by(Checkin.id)).all()
    assert [(v.person_id, v.client_id) for v in ours] == [
        (anna.id, items[0]["client_id"]),
        (boris.id, items[2]["client_id"]),
    ]
    again = kiosk_sync.ingest_checkins(ctx, [items[0], items[2]], api_now, recorder=recorder)
    assert [r.status for r in again] == ["duplicate", "duplicate"]


@pytest.mark.parametrize("recorder", [kiosk_sync.record_visits_in_bulk, kiosk_sync.record_each_with_check_in])
def test_both_recorders_begin_again_a_visit_that_would_outlast_a_day(
    db: Any, kiosk: EnrolledKiosk, api_now: datetime, recorder: kiosk_sync.Recorder
) -> None:
    ctx = kiosk_sync.authenticate(f"Bearer {kiosk.credential}")
    kiosk.venue.default_stay_minutes = 600
    staff = factories.person()
    start = api_now - timedelta(hours=20)
    long_stay = factories.checkin(staff, kiosk.venue, start, minutes=None, planned_minutes=21 * 60)  # continued
    items = [scanner_item(staff, api_now - timedelta(minutes=5))]  # continuing would end ~30 h after the start
    results = kiosk_sync.ingest_checkins(ctx, items, api_now, recorder=recorder)
    assert [(r.status, r.reason) for r in results] == [("accepted", "Checked in.")]
    db.session.refresh(long_stay)
    at = api_now - timedelta(minutes=5)
    assert (long_stay.checked_out_at, long_stay.checkout_reason) == (at, CheckoutReason.NEXT_CHECKIN)
    (new,) = db.session.scalars(select(Checkin).where(Checkin.kiosk_id == kiosk.id)).all()
    assert (new.person_id, new.checked_in_at, new.planned_checkout_at, new.checked_out_at) == (
        staff.id,
        at,
        at + timedelta(hours=10),
        None,
    )


def test_unique_client_ids_are_what_makes_resending_safe(db: Any, kiosk: EnrolledKiosk, api_now: datetime) -> None:
    # The schema, not only the pre-check, refuses a second row with a client id.
    visitor = factories.person()
    client_id = str(uuid.uuid4())
    factories.checkin(visitor, kiosk.venue, api_now - timedelta(hours=3), client_id=client_id)
    with pytest.raises(IntegrityError), db.session.begin_nested():
        factories.checkin(visitor, kiosk.venue, api_now - timedelta(hours=2), client_id=client_id)


def test_batches_refresh_the_kiosks_last_seen_at_most_every_thirty_seconds(
    client: FlaskClient, db: Any, kiosk: EnrolledKiosk, api_now: datetime
) -> None:
    from app.models import Kiosk

    row = db.session.get(Kiosk, kiosk.id)
    for seen_ago, refreshed in ((timedelta(seconds=10), False), (timedelta(minutes=2), True)):
        row.last_seen_at = api_now - seen_ago
        db.session.flush()
        _send(client, kiosk, [ble_item(factories.person(), api_now - timedelta(seconds=5))])
        db.session.refresh(row)
        assert row.last_seen_at == (api_now if refreshed else api_now - seen_ago)
