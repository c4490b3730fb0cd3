"""imported posts keep a dedup key

Each imported post stores a key of where it came from; a partial unique index on
(user_id, import_key) makes importing the same archive twice add nothing, while posts
written on the site (no key) stay out of the index. (2026-11-21)."""
from alembic import op
import sqlalchemy as sa


revision = '68d275d8c1c9'
down_revision = '9ffd9d3927b7'

ONLY_KEYED = sa.text('import_key IS NOT NULL')


def upgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('import_key', sa.String(length=64), nullable=True))
        batch_op.create_index(
            'uq_post_user_id_import_key', ['user_id', 'import_key'], unique=True,
            sqlite_where=ONLY_KEYED, postgresql_where=ONLY_KEYED,
        )


def downgrade():
    with op.batch_alter_table('post', schema=None) as batch_op:
        batch_op.drop_index('uq_post_user_id_import_key')
        batch_op.drop_column('import_key')
