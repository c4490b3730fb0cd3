"""private messages from other servers: their note id and content (2026-12-07)."""
from alembic import op
import sqlalchemy as sa

revision = 'd1a9c7e55001'
down_revision = '7e3a0b1c7f01'


def upgrade():
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ap_id', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('html', sa.Text(), nullable=True))
    where = sa.text('ap_id IS NOT NULL')
    op.create_index(
        'uq_message_recipient_id_ap_id', 'message', ['recipient_id', 'ap_id'], unique=True,
        sqlite_where=where, postgresql_where=where,
    )


def downgrade():
    op.drop_index('uq_message_recipient_id_ap_id', table_name='message')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_column('html')
        batch_op.drop_column('ap_id')
