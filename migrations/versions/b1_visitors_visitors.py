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
    pass


def downgrade():
    pass
