"""officials, cases and notices

Revision ID: c1_officials
Revises: b1_visitors
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "c1_officials"
down_revision = "b1_visitors"
branch_labels = None
depends_on = None


def upgrade():
    # A visitor's companions share the visitor's check-in, so an exposure is unique per person too.
    with op.batch_alter_table("exposures") as batch_op:
        batch_op.drop_constraint("uq_exposures_case_checkin", type_="unique")
        batch_op.create_unique_constraint("uq_exposures_case_checkin_person", ["case_id", "checkin_id", "person_id"])


def downgrade():
    with op.batch_alter_table("exposures") as batch_op:
        batch_op.drop_constraint("uq_exposures_case_checkin_person", type_="unique")
        batch_op.create_unique_constraint("uq_exposures_case_checkin", ["case_id", "checkin_id"])
