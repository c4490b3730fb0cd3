"""a user's created_at: when the account was made here, kept (2026-12-07).

Existing rows get the earliest time this site knows for the account: its first post, its
first private message sent, when its remote actor was first fetched, or its last visit."""
from alembic import op
import sqlalchemy as sa


revision = 'c0ffee7d21a8'
down_revision = 'd3l1v3ry0a01'

EARLIEST_KNOWN = '''
UPDATE "user" SET created_at = COALESCE((
    SELECT MIN(known.at) FROM (
        SELECT MIN(post.timestamp) AS at FROM post WHERE post.user_id = "user".id
        UNION ALL
        SELECT MIN(message.timestamp) FROM message WHERE message.sender_id = "user".id
        UNION ALL
        SELECT MIN(remote_actor.fetched_at) FROM remote_actor
            WHERE remote_actor.user_id = "user".id
        UNION ALL
        SELECT "user".last_seen
    ) AS known
), {now})
'''


def upgrade():
    # A plain ADD COLUMN (no table rebuild: rebuilding "user" would cascade into every
    # table that refers to it), then the back-fill.
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('created_at', sa.DateTime(), nullable=False,
                      server_default='1970-01-01 00:00:00')
        )
    if op.get_bind().dialect.name == 'sqlite':
        now = 'CURRENT_TIMESTAMP'
    else:
        now = "(CURRENT_TIMESTAMP AT TIME ZONE 'UTC')"
    op.execute(EARLIEST_KNOWN.format(now=now))


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('created_at')
