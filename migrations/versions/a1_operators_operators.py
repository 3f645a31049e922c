"""operators and venues

Revision ID: a1_operators
Revises: 9b48fde7266e
"""
from alembic import op
import sqlalchemy as sa
import app.models.base


# revision identifiers, used by Alembic.
revision = 'a1_operators'
down_revision = '9b48fde7266e'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
