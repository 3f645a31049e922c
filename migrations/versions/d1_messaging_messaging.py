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


def upgrade():
    pass


def downgrade():
    pass
