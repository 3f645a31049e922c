"""Automatic check-out at the planned end of a visit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from app.models import Checkin, CheckoutReason
from app.services import visits
from app.services.visits import close_overdue_visits
from tests import factories


def test_overdue_visit_is_closed_at_its_planned_end_not_at_job_time(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=3), minutes=None)
    assert close_overdue_visits(now, batch_size=100).closed == 1
    db.session.refresh(visit)
    assert visit.checked_out_at == now - timedelta(hours=2)
    assert visit.checkout_reason == CheckoutReason.AUTO


def test_visit_still_within_its_planned_stay_stays_open(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    visit = factories.checkin(factories.person(), venue, now - timedelta(minutes=59), minutes=None)
    assert close_overdue_visits(now, batch_size=100).closed == 0
    db.session.refresh(visit)
    assert visit.checked_out_at is None


def test_visit_ending_exactly_now_is_closed(db: Any, now: datetime) -> None:
    venue = factories.venue(default_stay_minutes=60)
    factories.checkin(factories.person(), venue, now - timedelta(minutes=60), minutes=None)
    assert close_overdue_visits(now, batch_size=100).closed == 1


def test_batches_are_bounded_and_a_second_run_does_nothing_more(db: Any, now: datetime) -> None:
    venue = factories.venue()
    for _ in range(5):
        factories.checkin(factories.person(), venue, now - timedelta(hours=5), minutes=None)
    assert close_overdue_visits(now, batch_size=2).closed == 2
    assert close_overdue_visits(now, batch_size=2).closed == 2
    assert close_overdue_visits(now, batch_size=2).closed == 1
    assert close_overdue_visits(now, batch_size=2).closed == 0


def test_already_checked_out_visit_keeps_its_own_end(db: Any, now: datetime) -> None:
    venue = factories.venue()
    visit = factories.checkin(factories.person(), venue, now - timedelta(hours=5), minutes=20)
    assert close_overdue_visits(now, batch_size=10).closed == 0
    db.session.refresh(visit)
    assert visit.checked_out_at == now - timedelta(hours=5) + timedelta(minutes=20)


def test_a_visit_extended_after_the_job_read_it_stays_open(
    db: Any, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the job's read of the overdue visits and its update, a repeat check-in (on a web node
    whose clock is a little behind) extends one: the job must not close it, least of all at its new
    planned end, which is in the future."""
    venue = factories.venue(default_stay_minutes=60)
    extended = factories.checkin(factories.person(), venue, now - timedelta(minutes=61), minutes=None)
    overdue = factories.checkin(factories.person(), venue, now - timedelta(hours=3), minutes=None)
    real_update = visits.update

    def extend_first(*args: Any, **kwargs: Any) -> Any:
        db.session.execute(
            real_update(Checkin).where(Checkin.id == extended.id).values(planned_checkout_at=now + timedelta(hours=1))
        )
        return real_update(*args, **kwargs)

    monkeypatch.setattr(visits, "update", extend_first)
    assert close_overdue_visits(now, batch_size=100) == (2, 1)  # both read, one closed
    db.session.expire_all()
    assert extended.checked_out_at is None and extended.planned_checkout_at == now + timedelta(hours=1)
    assert overdue.checked_out_at == now - timedelta(hours=2)
