"""likes and boosts from other servers, counted on posts (2026-12-07)."""
from alembic import op
import sqlalchemy as sa

revision = '4eac7c0f5001'
down_revision = 'b10c5a11f001'


def upgrade():
    op.create_table(
        'reaction',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('post_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('activity_id', sa.String(length=2048), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['post_id'], ['post.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('post_id', 'user_id', 'kind'),
        sa.UniqueConstraint('activity_id'),
    )
    op.create_index('ix_reaction_user_id', 'reaction', ['user_id'])
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('like_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('announce_count', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_column('announce_count')
        batch_op.drop_column('like_count')
    op.drop_index('ix_reaction_user_id', table_name='reaction')
    op.drop_table('reaction')
