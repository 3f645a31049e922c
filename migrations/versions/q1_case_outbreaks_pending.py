"""the matching job counts venue outbreaks once per run: cases remember that theirs are still to count

Each batch of 100 cases counted the outbreaks at its venues, reading every active case's visits there,
so a run of N cases read about N²/200 case visits: 12 of the 59 s of 10,000 cases against 10M visits.
A batch now marks its cases, and the run counts the marked cases' venues once after its batches. A run
that stops half-way leaves the mark for the next run.

Revision ID: q1_case_outbreaks_pending
Revises: p1_exposure_references_unlocked
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "q1_case_outbreaks_pending"
down_revision = "p1_exposure_references_unlocked"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("cases", sa.Column("outbreaks_pending", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.create_index(
        "ix_cases_outbreaks_pending",
        "cases",
        ["id"],
        postgresql_where=sa.text("outbreaks_pending"),
        sqlite_where=sa.text("outbreaks_pending = 1"),
    )


def downgrade():
    op.drop_index("ix_cases_outbreaks_pending", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("outbreaks_pending")
