"""messaging outbox

Revision ID: d1_messaging
Revises: c1_officials
"""
from alembic import op
import sqlalchemy as sa
import app.models.base


# revision identifiers, used by Alembic.
revision = 'd1_messaging'
down_revision = 'c1_officials'
branch_labels = None
depends_on = None

OLD_STATUSES = ('pending', 'sending', 'sent', 'delivered', 'failed', 'cancelled')
NEW_STATUSES = ('pending', 'sending', 'sent', 'unconfirmed', 'delivered', 'failed', 'cancelled')


def _status(values):
    return sa.Enum(*values, name='message_status', native_enum=False, create_constraint=True, length=24)


def upgrade():
    # A new status "unconfirmed": the CHECK constraint of the non-native enum is dropped and recreated.
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.alter_column(
            'status', existing_type=_status(OLD_STATUSES), type_=_status(NEW_STATUSES), existing_nullable=False
        )
        # The claim orders by (priority, next_attempt_at) over pending rows only; expired claims
        # get their own small index.
        batch_op.drop_index('ix_outbox_messages_due')
        batch_op.create_index(
            'ix_outbox_messages_due',
            ['priority', 'next_attempt_at'],
            unique=False,
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        )
        batch_op.create_index(
            'ix_outbox_messages_claimed_until',
            ['claimed_until'],
            unique=False,
            postgresql_where=sa.text("status = 'sending'"),
            sqlite_where=sa.text("status = 'sending'"),
        )


def downgrade():
    op.execute("UPDATE outbox_messages SET status = 'failed' WHERE status = 'unconfirmed'")
    with op.batch_alter_table('outbox_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_messages_claimed_until')
        batch_op.drop_index('ix_outbox_messages_due')
        batch_op.create_index(
            'ix_outbox_messages_due',
            ['next_attempt_at', 'priority'],
            unique=False,
            postgresql_where=sa.text("status IN ('pending', 'sending')"),
            sqlite_where=sa.text("status IN ('pending', 'sending')"),
        )
        batch_op.alter_column(
            'status', existing_type=_status(NEW_STATUSES), type_=_status(OLD_STATUSES), existing_nullable=False
        )
