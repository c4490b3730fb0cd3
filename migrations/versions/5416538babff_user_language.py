"""user language (2026-11-21)."""
from alembic import op
import sqlalchemy as sa

revision = '5416538babff'
down_revision = '68d275d8c1c9'


def upgrade():
    # Nullable: existing accounts keep following their browser's language.
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('language')
