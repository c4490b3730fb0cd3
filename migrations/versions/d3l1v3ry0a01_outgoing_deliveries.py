"""outgoing deliveries to other servers: activities, deliveries, hosts (2026-12-07)."""
from alembic import op
import sqlalchemy as sa


revision = 'd3l1v3ry0a01'
down_revision = 'd1a9c7e55001'


def upgrade():
    op.create_table('federation_host',
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('failing_since', sa.DateTime(), nullable=True),
    sa.Column('paused_until', sa.DateTime(), nullable=True),
    sa.Column('probe_until', sa.DateTime(), nullable=True),
    sa.Column('delivered', sa.Integer(), nullable=False),
    sa.Column('refused', sa.Integer(), nullable=False),
    sa.Column('dropped', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('last_success_at', sa.DateTime(), nullable=True),
    sa.PrimaryKeyConstraint('host', name=op.f('pk_federation_host'))
    )
    op.create_table('outgoing_activity',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('signer_id', sa.Integer(), nullable=True),
    sa.Column('key_id', sa.String(length=2048), nullable=False),
    sa.Column('private_pem', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outgoing_activity'))
    )
    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('activity_id', sa.Integer(), nullable=False),
    sa.Column('inbox', sa.String(length=2048), nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('claimed_until', sa.DateTime(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['activity_id'], ['outgoing_activity.id'], name=op.f('fk_delivery_activity_id_outgoing_activity'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery')),
    sa.UniqueConstraint('activity_id', 'inbox', name=op.f('uq_delivery_activity_id'))
    )
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.create_index('ix_delivery_next_attempt_at', ['next_attempt_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_activity_id'), ['activity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_delivery_host'), ['host'], unique=False)


def downgrade():
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_host'))
        batch_op.drop_index(batch_op.f('ix_delivery_activity_id'))
        batch_op.drop_index('ix_delivery_next_attempt_at')

    op.drop_table('delivery')
    op.drop_table('outgoing_activity')
    op.drop_table('federation_host')
