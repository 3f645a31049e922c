"""the due auto check-out index no longer answers "this person's open visit"

Its condition was the same as that of uq_checkins_one_open_visit_per_person, so a planner whose
statistics saw no open visits could pick it for a person's open visit and scan every open visit. The
added "planned_checkout_at IS NOT NULL" is always true and implied by the auto check-out query.

Revision ID: j1_open_visit_index_predicate
Revises: i1_personal_code_key_purge
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "j1_open_visit_index_predicate"
down_revision = "i1_personal_code_key_purge"
branch_labels = None
depends_on = None

NAME = "ix_checkins_open_planned_checkout_at"


def _create(condition: str) -> None:
    where = sa.text(condition)
    op.create_index(NAME, "checkins", ["planned_checkout_at"], postgresql_where=where, sqlite_where=where)


def upgrade():
    op.drop_index(NAME, table_name="checkins")
    _create("checked_out_at IS NULL AND planned_checkout_at IS NOT NULL")


def downgrade():
    op.drop_index(NAME, table_name="checkins")
    _create("checked_out_at IS NULL")
