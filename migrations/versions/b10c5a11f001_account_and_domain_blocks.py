"""account and domain blocks (2026-12-07)."""
from alembic import op
import sqlalchemy as sa

revision = 'b10c5a11f001'
down_revision = '7a51d0c0a5e1'


def upgrade():
    op.create_table(
        'account_block',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('blocked_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['blocked_id'], ['user.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'blocked_id'),
    )
    op.create_index('ix_account_block_blocked_id', 'account_block', ['blocked_id'])
    op.create_table(
        'user_domain_block',
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('domain', sa.String(length=260), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'domain'),
    )
    op.create_table(
        'domain_block',
        sa.Column('domain', sa.String(length=260), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('domain'),
    )


def downgrade():
    op.drop_table('domain_block')
    op.drop_table('user_domain_block')
    op.drop_index('ix_account_block_blocked_id', table_name='account_block')
    op.drop_table('account_block')
