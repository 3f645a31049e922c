"""Unbound extension objects, bound to an app in create_app."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from app.models.base import Base

db = SQLAlchemy(metadata=Base.metadata)
migrate = Migrate()
csrf = CSRFProtect()
# Limits are declared on the routes that cost money or reveal existence; storage comes from
# RATELIMIT_STORAGE_URI (by default database://, app/rate_limits.py: every worker counts together).
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)


def _sqlite_pragmas(dbapi_connection: object, connection_record: object) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        # Let SQLAlchemy issue BEGIN itself: pysqlite's implicit transactions break SAVEPOINTs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # 64 MiB of page cache per connection (SQLite's default is 2 MiB), taken only as pages are
        # read: matching a batch of cases against millions of visits and writing its exposures
        # into eight indexes otherwise rereads the same index pages from the OS for every row.
        cursor.execute("PRAGMA cache_size=-65536")
        cursor.close()


def _sqlite_begin(conn: object) -> None:
    if conn.dialect.name == "sqlite":  # type: ignore[attr-defined]
        # IMMEDIATE takes the write lock up front and waits for it (busy timeout). A deferred
        # transaction that reads first and writes later fails at once with "database is locked"
        # when another process committed in between, which several web workers make common.
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # type: ignore[attr-defined]


def _postgres_alive(dbapi_connection: object, connection_record: object, connection_proxy: object) -> None:
    """A pooled PostgreSQL connection is checked before use without a round trip.

    An idle connection has nothing to read. When the server restarts or a backend is terminated, the
    server sends its farewell and closes the socket, which makes the socket readable: such a connection
    is discarded and the pool opens another (SQLAlchemy retries the checkout). This replaces
    pool_pre_ping's "SELECT 1", which cost a round trip on every request. A peer that vanished without
    closing (a cable cut) is noticed on first use instead, as the request's error.
    """
    import select

    from sqlalchemy.exc import DisconnectionError

    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    if dbapi_connection.closed or dbapi_connection.broken:  # type: ignore[attr-defined]
        raise DisconnectionError("the connection is closed")
    readable, _, _ = select.select([dbapi_connection.fileno()], [], [], 0)  # type: ignore[attr-defined]
    if readable:
        raise DisconnectionError("the server has closed the connection")


def _postgres_binary_lists(dbapi_connection: object, connection_record: object) -> None:
    """List parameters (`= ANY(:ids)` over a batch) travel in binary: psycopg's text form quotes every
    element through a regular expression, a visible cost for batches of 500 ids."""
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    from psycopg.types.array import ListBinaryDumper

    dbapi_connection.adapters.register_dumper(list, ListBinaryDumper)  # type: ignore[attr-defined]


def _install_engine_hooks() -> None:
    """Per-driver connection set-up for every engine; each hook returns at once for the other driver."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    for target, name, hook in (
        (Engine, "connect", _sqlite_pragmas),
        (Engine, "begin", _sqlite_begin),
        (Engine, "connect", _postgres_binary_lists),
        (Pool, "checkout", _postgres_alive),
    ):
        if not event.contains(target, name, hook):
            event.listen(target, name, hook)


_install_engine_hooks()
