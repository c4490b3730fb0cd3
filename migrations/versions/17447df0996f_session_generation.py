"""revocable sessions: a session generation per user (2026-11-21)."""
from alembic import op
import sqlalchemy as sa


revision = '17447df0996f'
down_revision = 'd26d5f0f89e0'


def upgrade():
    # A plain ADD COLUMN (no table rebuild: rebuilding "user" would cascade into every
    # table that refers to it), then a random value per existing user. Existing session
    # cookies (which hold the bare id) stop working: everyone signs in once more.
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_generation', sa.String(length=32), nullable=False, server_default='')
        )
    if op.get_bind().dialect.name == 'sqlite':
        random_hex = 'lower(hex(randomblob(16)))'
    else:
        random_hex = "md5(random()::text || clock_timestamp()::text || id::text)"
    op.execute(f'UPDATE "user" SET session_generation = {random_hex}')


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('session_generation')
