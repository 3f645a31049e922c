"""The JSON check-in's common case: a remembered device, alone, at a poster.

This is the request a city app sends millions of times a day, so it is built for few statements:
- on PostgreSQL one statement reads the device and its owner, the poster and the owner's open visit
  (locked), and one statement writes (closes or extends the open visit, inserts the new one, refreshes
  "last used"/"last seen"), then the commit. Measured here with trivial statements, each statement
  costs about 0.1 ms of psycopg's CPU and 0.03 ms of PostgreSQL's besides its own work, in a pipeline
  or not, so the five to seven statements this path used to send in two pipelines cost about 0.5 ms
  more per check-in. The two statements are composed once per process from the compiled SQLAlchemy ones;
- elsewhere (SQLite, an in-process database without round trips) the same statements run one by one.

Both paths apply the rules through `checkins.quick_step`, and a lost race (a visit opened between the
read and the insert) is settled by `checkins.quick_check_in`'s retry loop.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, literal_column

from app.errors import DomainError
from app.extensions import db
from app.models import CheckinSource, Person, RememberedDevice
from app.services import checkins, people, posters, sign_in
from app.services.personal_data import secret_hash

_devices = RememberedDevice.__table__
# The device's owner with the owner's row locked, before the visits (the lock order of people.lock_rows).
_OWNER_LOCKED = sign_in.OWNER_QUERY.with_for_update(of=Person.__table__, key_share=True)
# The owner's open visit, through the owner part of the same statement (`o`, below): the reference makes
# PostgreSQL read and lock the owner's row before it locks the visit, whatever join order it would
# otherwise choose for the LATERAL parts.
_OWNER_ID = "o.id_1"  # the owner's person id as OWNER_QUERY labels it (checked where the SQL is built)
_OPEN_OF_OWNER = checkins.open_visit_query(literal_column(_OWNER_ID))
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
        return _in_two_statements(connection, device_token, poster_token, source, now, poster_problem)
    owner = sign_in.device_owner(device_token, now)
    if owner is None:
        return None
    if poster_problem is not None:
        raise poster_problem
    target = posters.check_poster_token(poster_token, now)
    return checkins.quick_check_in(owner.person_id, owner.last_seen_at, target, source, now)


def _in_two_statements(
    connection: Connection,
    device_token: str,
    poster_token: str,
    source: CheckinSource,
    now: datetime,
    poster_error: DomainError | None,
) -> checkins.QuickResult | None:
    token_hash = secret_hash(device_token)
    fields = None
    if poster_error is None:
        try:
            fields, payload, signature = posters.decode_checked(poster_token)
        except posters.PosterTokenInvalid as exc:
            poster_error = exc
    # An unusable poster token reads no poster (NULL matches no row); the device is still answered first.
    params = {"token_hash": token_hash, **(posters.target_params(fields) if fields else _NO_POSTER)}
    row = _execute(connection, _read_sql(connection), params).fetchone()
    owned = sign_in.owner_from_row(_part(row, _OWNER), now)
    if owned is None:
        return None
    owner, stale_device_id = owned
    if poster_error is not None:
        raise poster_error
    target = posters.target_from_row(_part(row, _TARGET), payload, signature, now)
    step = checkins.quick_step(_part(row, _OPEN), target, now)
    writes = list(step.writes)
    if stale_device_id is not None:
        writes.append((sign_in.USED_UPDATE, {"b_id": stale_device_id, "b_at": now}))
    if people.seen_is_stale(owner.last_seen_at, now):
        writes.append((checkins.SEEN_UPDATE, {"b_id": owner.person_id, "b_at": now}))
    insert = None if step.continued is not None else checkins.insert_params(owner.person_id, target, source, step.at)
    values = {f"w{i}_{name}": value for i, (_, each) in enumerate(writes) for name, value in each.items()}
    sql = _write_sql(connection, [statement for statement, _ in writes], insert is not None)
    inserted = _execute(connection, sql, {**values, **(insert or {})})
    if step.continued is not None:
        return step.continued
    new = inserted.fetchone()
    if new is not None:
        return checkins.created(new[0], target, source, step.at, step.ended)
    # A racing request opened a visit between our read and our insert: the ordinary loop settles it
    # ("last seen" was written above, so it is passed as now; the visit ended here is carried along).
    return checkins.quick_check_in(owner.person_id, now, target, source, step.at, ended=step.ended)


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
    return driver.execute(statement if isinstance(statement, str) else _sql(connection, statement), values)


# --- the two statements -----------------------------------------------------------------------------

# The read: the device's owner, the poster and the owner's open visit (locked), side by side in one row;
# each part is all NULL when it finds nothing.
_OWNER, _TARGET, _OPEN = slice(0, 6), slice(6, 16), slice(16, 24)
_NO_POSTER = {"entrance_id": None, "version": None, "key_id": None}


def _read_sql(connection: Connection) -> str:
    text = _compiled.get(id(_read_sql))
    if text is None:
        owner, target = _sql(connection, _OWNER_LOCKED), _sql(connection, posters.TARGET_QUERY)
        if f"people.id AS {_OWNER_ID.removeprefix('o.')}," not in owner:
            raise RuntimeError(f"OWNER_QUERY no longer labels the owner's id {_OWNER_ID}: {owner}")
        text = _compiled[id(_read_sql)] = (
            f"SELECT o.*, t.*, v.* FROM (SELECT 1) AS one LEFT JOIN LATERAL ({owner}) AS o ON true "  # noqa: S608
            f"LEFT JOIN LATERAL ({target}) AS t ON true "
            f"LEFT JOIN LATERAL ({_sql(connection, _OPEN_OF_OWNER)}) AS v ON true"
        )
    return text


def _part(row: Sequence[Any], columns: slice) -> Sequence[Any] | None:
    part = row[columns]
    return None if part[0] is None else part  # every part's first column is a primary key


# The writes: each update as a data-modifying CTE with its parameters renamed w<i>_<name>, then the new
# visit (checkins.INSERT_OPEN turned into INSERT ... SELECT), inserted only after them because it reads
# their counts: the open visit closed here must no longer hold the one-open-visit index when the insert
# checks it (unreferenced, a CTE would run after the insert).
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_write_texts: dict[tuple[int, ...], str] = {}


def _write_sql(connection: Connection, updates: Sequence[Any], insert: bool) -> str:
    """The statement for these updates (and the insert), built once per combination."""
    key = (*(id(u) for u in updates), int(insert))
    text = _write_texts.get(key)
    if text is None:
        ctes = []
        for i, update in enumerate(updates):
            renamed = _PLACEHOLDER.sub(lambda m, i=i: f"%(w{i}_{m[1]})s", _sql(connection, update))
            ctes.append(f"w{i} AS ({renamed} RETURNING 1)")
        counts = " + ".join(f"(SELECT count(*) FROM w{i})" for i in range(len(updates))) or "0"  # noqa: S608
        main = _insert_after(connection, f"SELECT {counts}") if insert else f"SELECT {counts}"
        text = _write_texts[key] = (f"WITH {', '.join(ctes)} " if ctes else "") + main
    return text


def _insert_after(connection: Connection, earlier: str) -> str:
    """checkins.INSERT_OPEN as INSERT ... SELECT <its values> FROM (earlier) WHERE <earlier ran>."""
    head, rest = _sql(connection, checkins.INSERT_OPEN).split(" VALUES (", 1)
    values, conflict = rest.split(") ON CONFLICT ", 1)
    return f"{head} SELECT {values} FROM ({earlier}) AS earlier_writes(n) WHERE n >= 0 ON CONFLICT {conflict}"  # noqa: S608 (our own SQL)
