"""index the two references to a visit that had none: deleting a visit no longer reads whole tables

Deleting a visit (the retention purge, a visitor's erasure) sets exposures.case_checkin_id and
notices.checkin_id to NULL where they pointed at it. Neither column had an index, so each deleted visit
read all of exposures and all of notices: with 100,000 exposures, a purge batch of 200 visits took
1.7 s on PostgreSQL, and at a city's scale the purge could not keep up with a day's visits.

Revision ID: m1_index_visit_references
Revises: l1_checkin_places_per_statement
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "m1_index_visit_references"
down_revision = "l1_checkin_places_per_statement"
branch_labels = None
depends_on = None

WITH_VISIT = "checkin_id IS NOT NULL"


def upgrade():
    op.create_index("ix_exposures_case_checkin_id", "exposures", ["case_checkin_id"])
    where = sa.text(WITH_VISIT)
    op.create_index("ix_notices_checkin_id", "notices", ["checkin_id"], postgresql_where=where, sqlite_where=where)


def downgrade():
    op.drop_index("ix_notices_checkin_id", table_name="notices")
    op.drop_index("ix_exposures_case_checkin_id", table_name="exposures")
