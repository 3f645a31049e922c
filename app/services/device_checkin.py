"""The JSON check-in's common case: a remembered device, alone, at a poster.

This is the request a city app sends millions of times a day, so it is built for few round trips:
- on PostgreSQL the three reads (the device and its owner, the poster, the owner's open visit, locked)
  go to the server together in one psycopg pipeline, and so do the writes (close or extend the open
  visit, insert the new one, refresh "last used"/"last seen"): two round trips before the commit
  instead of six, and no per-statement SQLAlchemy work (the statements are compiled once);
- elsewhere (SQLite, an in-process database without round trips) the same statements run one by one.

Both paths apply the rules through `checkins.quick_step`, and a lost race (a visit opened between the
read and the insert) is settled by `checkins.quick_check_in`'s retry loop.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select

from app.errors import DomainError
from app.extensions import db
from app.models import CheckinSource, RememberedDevice
from app.services import checkins, people, posters, sign_in
from app.services.personal_data import secret_hash

_devices = RememberedDevice.__table__
# The owner's open visit, found through the device token in the same statement.
_OPEN_BY_DEVICE = checkins.open_visit_query(
    select(_devices.c.person_id).where(_devices.c.token_hash == bindparam("token_hash")).scalar_subquery()
)
_compiled: dict[int, str] = {}


def check_in(
    device_token: str,
    poster_token: str,
    source: CheckinSource,
    now: datetime,
    poster_problem: DomainError | None = None,
) -> checkins.QuickResult | None:
    """Check the device's owner in at the poster. None: the device token is unknown. Raises
    sign_in.DeviceRevoked, then `poster_problem` (the request's poster token was unusable) or the poster
    errors of `posters.check_poster_token`, or checkins.CheckinBusy: the device is checked first."""
    if not sign_in.is_device_token(device_token):
        return None
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        return _pipelined(connection, device_token, poster_token, source, now, poster_problem)
    owner = sign_in.device_owner(device_token, now)
    if owner is None:
        return None
    if poster_problem is not None:
        raise poster_problem
    target = posters.check_poster_token(poster_token, now)
    return checkins.quick_check_in(owner.person_id, owner.last_seen_at, target, source, now)


def _pipelined(
    connection: Connection,
    device_token: str,
    poster_token: str,
    source: CheckinSource,
    now: datetime,
    poster_error: DomainError | None,
) -> checkins.QuickResult | None:
    driver = connection.connection.driver_connection
    assert driver is not None
    token_hash = secret_hash(device_token)
    if poster_error is None:
        try:
            fields, payload, signature = posters.decode_checked(poster_token)
        except posters.PosterTokenInvalid as exc:
            poster_error = exc
    with driver.pipeline():
        owner_rows = _execute(connection, sign_in.OWNER_QUERY, {"token_hash": token_hash})
        if poster_error is None:
            target_rows = _execute(connection, posters.TARGET_QUERY, posters.target_params(fields))
        open_rows = _execute(connection, _OPEN_BY_DEVICE, {"token_hash": token_hash})
    owned = sign_in.owner_from_row(owner_rows.fetchone(), now)
    if owned is None:
        return None
    owner, stale_device_id = owned
    if poster_error is not None:
        raise poster_error
    target = posters.target_from_row(target_rows.fetchone(), payload, signature, now)
    step = checkins.quick_step(open_rows.fetchone(), target, now)
    with driver.pipeline():
        if stale_device_id is not None:
            _execute(connection, sign_in.USED_UPDATE, {"b_id": stale_device_id, "b_at": now})
        if people.seen_is_stale(owner.last_seen_at, now):
            _execute(connection, checkins.SEEN_UPDATE, {"b_id": owner.person_id, "b_at": now})
        for statement, params in step.writes:
            _execute(connection, statement, params)
        if step.continued is None:
            params = checkins.insert_params(owner.person_id, target, source, now)
            inserted = _execute(connection, checkins.INSERT_OPEN, params)
    if step.continued is not None:
        return step.continued
    row = inserted.fetchone()
    if row is not None:
        return checkins.created(row[0], target, source, now, step.ended)
    # A racing request opened a visit between our read and our insert: the ordinary loop settles it
    # ("last seen" was written above, so it is passed as now; the visit ended here is carried along).
    return checkins.quick_check_in(owner.person_id, now, target, source, now, ended=step.ended)


def _sql(connection: Connection, statement: Any) -> str:
    """The statement's PostgreSQL text with %(name)s placeholders, compiled once per process."""
    text = _compiled.get(id(statement))
    if text is None:
        text = _compiled[id(statement)] = str(statement.compile(dialect=connection.dialect))
    return text


def _execute(connection: Connection, statement: Any, params: Mapping[str, Any]) -> Any:
    driver = connection.connection.driver_connection
    assert driver is not None
    values = {k: v.value if isinstance(v, enum.Enum) else v for k, v in params.items()}
    return driver.execute(_sql(connection, statement), values)
