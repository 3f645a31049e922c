"""index revoked personal code keys by revocation time, for the retention purge

Revision ID: i1_personal_code_key_purge
Revises: h1_rate_limit_counters
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "i1_personal_code_key_purge"
down_revision = "h1_rate_limit_counters"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(op.f("ix_personal_code_keys_revoked_at"), "personal_code_keys", ["revoked_at"])


def downgrade():
    op.drop_index(op.f("ix_personal_code_keys_revoked_at"), table_name="personal_code_keys")
