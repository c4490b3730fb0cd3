"""which icon each remote account's picture was made from (2026-12-07)."""
from alembic import op
import sqlalchemy as sa

revision = '7e3a0b1c7f01'
down_revision = '3e7710e5f001'


def upgrade():
    op.create_table(
        'remote_picture',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('source_url', sa.String(length=2048), nullable=False),
        sa.Column('fetched_at', sa.DateTime(), nullable=False),
        sa.Column('error', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id'),
    )


def downgrade():
    op.drop_table('remote_picture')
