"""officials, cases and notices

Revision ID: c1_officials
Revises: b1_visitors
"""
from alembic import op
import sqlalchemy as sa
import app.models.base


# revision identifiers, used by Alembic.
revision = 'c1_officials'
down_revision = 'b1_visitors'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
