"""who each post mentions (2026-12-07)."""
from alembic import op
import sqlalchemy as sa

revision = '3e7710e5f001'
down_revision = '4eac7c0f5001'


def upgrade():
    op.create_table(
        'mention',
        sa.Column('post_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('seen', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(['post_id'], ['post.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['user_id'], ['user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('post_id', 'user_id'),
    )
    op.create_index('ix_mention_user_id_created_at', 'mention', ['user_id', 'created_at'])


def downgrade():
    op.drop_index('ix_mention_user_id_created_at', table_name='mention')
    op.drop_table('mention')
