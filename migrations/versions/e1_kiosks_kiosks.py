"""kiosks

Revision ID: e1_kiosks
Revises: d1_messaging
"""
from alembic import op
import sqlalchemy as sa
import app.models.base


# revision identifiers, used by Alembic.
revision = 'e1_kiosks'
down_revision = 'd1_messaging'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
