"""outbox messages keep their SMS recipient's keyed hash, so erasing a person deletes every SMS to their number

A reply to a text from a number without an account (a mistyped venue code, say) names no person. When
that number's owner later erased their data, the reply stayed in the outbox, its recipient encrypted,
until the retention purge. The hash is the person's phone_hash, so erasure finds those messages through
an index. Messages queued before this migration have none; they leave with the retention purge.

Revision ID: o1_outbox_recipient_hash
Revises: n1_exposure_references
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "o1_outbox_recipient_hash"
down_revision = "n1_exposure_references"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("outbox_messages", sa.Column("recipient_hash", sa.LargeBinary(length=32), nullable=True))
    op.create_index("ix_outbox_messages_recipient_hash", "outbox_messages", ["recipient_hash"])


def downgrade():
    op.drop_index("ix_outbox_messages_recipient_hash", table_name="outbox_messages")
    with op.batch_alter_table("outbox_messages") as batch:
        batch.drop_column("recipient_hash")
