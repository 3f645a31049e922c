"""rate-limit counters shared by every worker (RATELIMIT_STORAGE_URI=database://)

Revision ID: h1_rate_limit_counters
Revises: g1_matcher_index_only
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "h1_rate_limit_counters"
down_revision = "g1_matcher_index_only"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "rate_limit_counters",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_counters")),
    )
    op.create_index(op.f("ix_rate_limit_counters_expires_at"), "rate_limit_counters", ["expires_at"])


def downgrade():
    op.drop_index(op.f("ix_rate_limit_counters_expires_at"), table_name="rate_limit_counters")
    op.drop_table("rate_limit_counters")
