"""received activities claimed in batches by the workers (2026-12-07).

`claimed_until` is a worker's lease on a received row (or, after an error, when it is tried
again); the index on `state` finds the received rows among all those applied."""
from alembic import op
import sqlalchemy as sa


revision = 'inb0xc1a1m01'
down_revision = 'c0ffee7d21a8'


def upgrade():
    with op.batch_alter_table('inbox_activities', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(), nullable=True))
    op.create_index('ix_inbox_activities_state', 'inbox_activities', ['state'])


def downgrade():
    op.drop_index('ix_inbox_activities_state', table_name='inbox_activities')
    with op.batch_alter_table('inbox_activities', schema=None) as batch_op:
        batch_op.drop_column('claimed_until')
