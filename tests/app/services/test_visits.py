"""Automatic check-out at the planned end of a visit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.models import CheckoutReason
from app.services.visits import close_overdue_visits
from tests import factories


def test_overdue_visit_is_closed_at_its_planned_end_not_at_job_time(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=3), minutes=None)
    assert close_overdue_visits(now, batch_size=100) == 1
    db.session.refresh(visit)
    assert visit.checked_out_at == now - timedelta(hours=2)
    assert visit.checkout_reason == CheckoutReason.AUTO


def test_visit_still_within_its_planned_stay_stays_open(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    visit = factories.checkin(factories.person(), venue, now - timedelta(minutes=59), minutes=None)
    assert close_overdue_visits(now, batch_size=100) == 0
    db.session.refresh(visit)
    assert visit.checked_out_at is None


def test_visit_ending_exactly_now_is_closed(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    factories.checkin(factories.person(), venue, now - timedelta(minutes=60), minutes=None)
    assert close_overdue_visits(now, batch_size=100) == 1


def test_batches_are_bounded_and_a_second_run_does_nothing_more(db: Any, now: datetime) -> None:
    venue = factories.venue()
    for _ in range(5):
        factories.checkin(factories.person(), venue, now - timedelta(hours=5), minutes=None)
    assert close_overdue_visits(now, batch_size=2) == 2
    assert close_overdue_visits(now, batch_size=2) == 2
    assert close_overdue_visits(now, batch_size=2) == 1
    assert close_overdue_visits(now, batch_size=2) == 0


def test_already_checked_out_visit_keeps_its_own_end(db: Any, now: datetime) -> None:
    venue = factories.venue()
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=5), minutes=20)
    assert close_overdue_visits(now, batch_size=10) == 0
    db.session.refresh(visit)
    assert visit.checked_out_at == now - timedelta(hours=5) + timedelta(minutes=20)
