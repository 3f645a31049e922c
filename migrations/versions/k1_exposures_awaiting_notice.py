"""index the exposures approved and still waiting for their notice; the notice index skips the rest

Queuing notices (after every approval, and every minute in the policy job) looks for approved
exposures without a notice, and locks their cases. Through the status index it read every approved
exposure ever stored to find the few waiting ones; this partial index holds only those.

ix_exposures_notice_id serves a deleted notice's SET NULL, a lookup by a notice's id: it now holds
only exposures with a notice. The matcher's new exposures (no notice yet) no longer go into it, and
SQLite can no longer pick it to look for "no notice" among every new exposure.

Revision ID: k1_exposures_awaiting_notice
Revises: j1_open_visit_index_predicate
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "k1_exposures_awaiting_notice"
down_revision = "j1_open_visit_index_predicate"
branch_labels = None
depends_on = None

NAME = "ix_exposures_awaiting_notice"
CONDITION = "status = 'approved' AND notice_id IS NULL"


NOTICE_INDEX = "ix_exposures_notice_id"
WITH_NOTICE = "notice_id IS NOT NULL"


def upgrade():
    where = sa.text(CONDITION)
    op.create_index(NAME, "exposures", ["case_id"], postgresql_where=where, sqlite_where=where)
    op.drop_index(NOTICE_INDEX, table_name="exposures")
    where = sa.text(WITH_NOTICE)
    op.create_index(NOTICE_INDEX, "exposures", ["notice_id"], postgresql_where=where, sqlite_where=where)


def downgrade():
    op.drop_index(NOTICE_INDEX, table_name="exposures")
    op.create_index(NOTICE_INDEX, "exposures", ["notice_id"])
    op.drop_index(NAME, table_name="exposures")
