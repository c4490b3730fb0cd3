"""uploaded avatars

A user's uploaded picture is stored as files named by their id; the version (when it was
made) is part of the picture's URL, so the files can be cached for good. None: no upload.
(2026-11-21)."""
from alembic import op
import sqlalchemy as sa


revision = '59c9b4379fa8'
down_revision = '5416538babff'


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('avatar_version', sa.Integer(), nullable=True))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('avatar_version')
