"""visitors and check-ins

Revision ID: b1_visitors
Revises: a1_operators
"""
from alembic import op
import sqlalchemy as sa
import app.models.base


# revision identifiers, used by Alembic.
revision = 'b1_visitors'
down_revision = 'a1_operators'
branch_labels = None
depends_on = None


def upgrade():
    # A login code keeps the (encrypted) number so the person is created only after confirmation.
    with op.batch_alter_table('login_codes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_enc', sa.LargeBinary(), nullable=True))


def downgrade():
    with op.batch_alter_table('login_codes', schema=None) as batch_op:
        batch_op.drop_column('phone_enc')
