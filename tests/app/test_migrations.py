"""Migrations: the head revision builds the whole schema, and models and migrations agree."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from sqlalchemy import inspect

from app.extensions import db
from app.models import Base, include_in_schema_comparison


def test_upgrade_head_on_an_empty_database_creates_every_table(app: Flask) -> None:
    # The session fixture ran `upgrade` on an empty database.
    with app.app_context(), db.engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_models_and_migrations_do_not_drift(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        include = include_in_schema_comparison(conn.dialect.name)
        context = MigrationContext.configure(conn, opts={"compare_type": True, "include_object": include})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_hot_query_indexes_exist(app: Flask) -> None:
    with app.app_context(), db.engine.connect() as conn:
        inspector = inspect(conn)
        checkin_indexes = {ix["name"] for ix in inspector.get_indexes("checkins")}
        outbox_indexes = {ix["name"] for ix in inspector.get_indexes("outbox_messages")}
    assert {
        "ix_checkins_person_id_checked_in_at",
        "ix_checkins_venue_id_checked_in_at",
        "ix_checkins_open_planned_checkout_at",
        "ix_checkins_checked_in_at",
        "uq_checkins_one_open_visit_per_person",
    } <= checkin_indexes
    assert "ix_outbox_messages_due" in outbox_indexes


def test_every_reference_to_a_purged_table_is_indexed(app: Flask) -> None:
    """Deleting a row (the retention purge, an erasure) looks up the rows that refer to it, to cascade or
    set NULL; a referencing column that leads no index turns each deleted row into a read of the whole
    referencing table."""
    from app.services.retention import TARGETS

    purged = {target.model.__tablename__ for target in TARGETS}
    unindexed = []
    with app.app_context(), db.engine.connect() as conn:
        inspector = inspect(conn)
        for table in inspector.get_table_names():
            leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(table)}
            leading |= {tuple(uq["column_names"][:1]) for uq in inspector.get_unique_constraints(table)}
            leading.add(tuple(inspector.get_pk_constraint(table)["constrained_columns"][:1]))
            for fk in inspector.get_foreign_keys(table):
                if fk["referred_table"] in purged and tuple(fk["constrained_columns"][:1]) not in leading:
                    unindexed.append(f"{table}.{fk['constrained_columns'][0]} -> {fk['referred_table']}")
    assert purged >= {"checkins", "people", "exposures", "notices"}
    assert unindexed == []
