"""covering index for the venue overlap query

Revision ID: f1_covering_venue_index
Revises: e1_kiosks
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = "f1_covering_venue_index"
down_revision = "e1_kiosks"
branch_labels = None
depends_on = None


def upgrade():
    # The matching job filters a venue's visits by their end as well as their start; with the end
    # columns in the index the database never visits the table for visits that do not overlap.
    op.drop_index("ix_checkins_venue_id_checked_in_at", table_name="checkins")
    op.create_index(
        "ix_checkins_venue_id_checked_in_at",
        "checkins",
        ["venue_id", "checked_in_at", "checked_out_at", "planned_checkout_at"],
    )


def downgrade():
    op.drop_index("ix_checkins_venue_id_checked_in_at", table_name="checkins")
    op.create_index("ix_checkins_venue_id_checked_in_at", "checkins", ["venue_id", "checked_in_at"])
