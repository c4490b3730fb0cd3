"""admin role and disabled accounts (2026-11-21)."""
from alembic import op
import sqlalchemy as sa


revision = '9ffd9d3927b7'
down_revision = 'ba8a4969aeac'


def upgrade():
    # Plain ADD COLUMN (SQLite has it), not a batch copy of the whole user table.
    # sa.false(), not '0': PostgreSQL refuses an integer default on a boolean column.
    op.add_column('user', sa.Column('is_admin', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('user', sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('disabled')
        batch_op.drop_column('is_admin')
