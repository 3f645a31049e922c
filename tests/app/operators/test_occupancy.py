"""Dashboard counts: check-ins per hour over three days and people present now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from app.models import Checkin
from app.services import occupancy
from tests import factories


def test_hourly_counts_cover_72_hours_in_utc_buckets_with_local_labels(db: Any, now: datetime) -> None:
    venue = factories.venue(timezone="Asia/Vladivostok")
    other = factories.venue()
    for when in (now, now - timedelta(minutes=1), now - timedelta(minutes=59), now - timedelta(hours=2, minutes=30)):
        factories.checkin(factories.person(), venue, when)
    factories.checkin(factories.person(), venue, now - timedelta(hours=72, minutes=1))  # just outside
    factories.checkin(factories.person(), other, now - timedelta(minutes=5))  # another venue
    hours = occupancy.hourly_checkins(venue, now)
    assert len(hours) == 72
    assert hours[-1].starts_at == now and hours[-1].checkins == 1  # 12:00 itself
    assert [h.checkins for h in hours[-4:-1]] == [1, 0, 2]  # 09:30; 11:01 and 11:59
    assert hours[0].starts_at == now - timedelta(hours=71)
    assert sum(h.checkins for h in hours) == 4
    assert hours[-1].local_label == "20.11 22:00"  # 12:00 UTC is 22:00 in Vladivostok


def test_occupancy_counts_people_still_inside(db: Any, now: datetime) -> None:
    venue = factories.venue(capacity=20)
    factories.checkin(factories.person(), venue, now - timedelta(minutes=10), minutes=None, party_size=3)
    factories.checkin(factories.person(), venue, now - timedelta(minutes=30), minutes=60)  # leaves later
    factories.checkin(factories.person(), venue, now - timedelta(minutes=90), minutes=30)  # left
    # Open visit past its planned end: auto check-out has not run yet, but the person is gone.
    factories.checkin(factories.person(), venue, now - timedelta(hours=3), minutes=None)
    present = occupancy.current_occupancy(venue, now)
    assert (present.present, present.capacity) == (4, 20)
    assert present.ratio == 0.2


def test_chart_geometry_scales_to_the_busiest_hour(db: Any, now: datetime) -> None:
    venue = factories.venue()
    for minutes in (1, 2, 3, 4):  # the 11:00 hour
        factories.checkin(factories.person(), venue, now - timedelta(minutes=minutes), minutes=None)
    factories.checkin(factories.person(), venue, now - timedelta(hours=1, minutes=5))  # the 10:00 hour
    chart = occupancy.hourly_chart(occupancy.hourly_checkins(venue, now))
    assert chart.peak == 4 and len(chart.bars) == 72 and len(chart.labels) == 6
    assert chart.bars[-2].height == 156 and chart.bars[-3].height == 39 and chart.bars[-1].height == 0
    assert chart.bars[0].height == 0


def test_dashboard_queries_walk_the_venue_time_index(db: Any, now: datetime) -> None:
    venue = factories.venue()
    dialect = db.session.get_bind().dialect.name
    statement = (
        select(Checkin.id)
        .where(Checkin.venue_id == venue.id, Checkin.checked_in_at >= now - timedelta(hours=72))
        .compile(db.session.get_bind(), compile_kwargs={"literal_binds": True})
    )
    if dialect == "sqlite":
        plan = " ".join(str(r) for r in db.session.execute(db.text(f"EXPLAIN QUERY PLAN {statement}")))
        assert "ix_checkins_venue_id_checked_in_at" in plan
    else:
        db.session.execute(db.text("SET LOCAL enable_seqscan = off"))
        plan = " ".join(str(r) for r in db.session.execute(db.text(f"EXPLAIN {statement}")))
        assert "ix_checkins_venue_id_checked_in_at" in plan
