"""the venue overlap index holds every column the matcher reads

Revision ID: g1_matcher_index_only
Revises: f1_covering_venue_index
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "g1_matcher_index_only"
down_revision = "f1_covering_venue_index"
branch_labels = None
depends_on = None

_END_COLUMNS = ["venue_id", "checked_in_at", "checked_out_at", "planned_checkout_at"]


def upgrade():
    # Matching reads a venue's visits in a time range: with the person, entrance, party size and id in
    # the index too, both databases answer from the index alone (no table row per visit in range).
    op.drop_index("ix_checkins_venue_id_checked_in_at", table_name="checkins")
    op.create_index(
        "ix_checkins_venue_id_checked_in_at",
        "checkins",
        [*_END_COLUMNS, "person_id", "entrance_id", "party_size", "id"],
    )


def downgrade():
    op.drop_index("ix_checkins_venue_id_checked_in_at", table_name="checkins")
    op.create_index("ix_checkins_venue_id_checked_in_at", "checkins", _END_COLUMNS)
