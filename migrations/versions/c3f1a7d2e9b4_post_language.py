"""post language

The language a post is written in ("en", "es", …), for the "Translate" link; "" when it
could not be told. Existing posts start as NULL (not looked at yet): the worker fills them
in, in short batches, when it starts (2026-11-22).
"""
from alembic import op
import sqlalchemy as sa


revision = 'c3f1a7d2e9b4'
down_revision = '59c9b4379fa8'


def upgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('language')
