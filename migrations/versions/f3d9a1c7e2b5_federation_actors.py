"""federation: remote accounts, actor keys, follow requests, tombstones, remote posts, inbox

A remote account is a user row with a domain and no e-mail address (e-mail becomes
nullable); its actor data is a row of remote_actor. Local users' key pairs and the
instance actor's are made when first needed. Posts from other servers keep their
ActivityPub id, their link and their sanitised HTML. (2026-12-07)."""
import re

import sqlalchemy as sa
from alembic import op


revision = 'f3d9a1c7e2b5'
down_revision = '3f1c2a7be914'

URL_MAX = 2048


def set_email_nullable(nullable):
    """user.email NULL or NOT NULL. On PostgreSQL an ALTER. SQLite cannot alter a column,
    and rebuilding the table would (with foreign keys on) cascade the DROP to every post and
    follow: it edits the table's definition in place instead, the procedure SQLite documents
    for removing or adding a NOT NULL constraint (the stored rows do not change)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.alter_column('user', 'email', existing_type=sa.String(120), nullable=nullable)
        return
    sql = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type='table' AND name='user'"
    ).scalar_one()
    column = re.compile(r'(\bemail\s+VARCHAR\(120\))(\s+NOT NULL)?', re.IGNORECASE)
    new_sql = column.sub(lambda m: m[1] + ("" if nullable else " NOT NULL"), sql, count=1)
    if new_sql == sql:
        return
    version = bind.exec_driver_sql("PRAGMA schema_version").scalar_one()
    bind.exec_driver_sql("PRAGMA writable_schema=ON")
    bind.exec_driver_sql(
        "UPDATE sqlite_master SET sql=? WHERE type='table' AND name='user'", (new_sql,)
    )
    bind.exec_driver_sql(f"PRAGMA schema_version={int(version) + 1}")
    bind.exec_driver_sql("PRAGMA writable_schema=OFF")


def upgrade():
    set_email_nullable(True)
    op.add_column('user', sa.Column('domain', sa.String(255), nullable=True))
    op.create_index('ix_user_domain', 'user', ['domain'])
    op.add_column('post', sa.Column('ap_id', sa.String(URL_MAX), nullable=True))
    op.add_column('post', sa.Column('url', sa.String(URL_MAX), nullable=True))
    op.add_column('post', sa.Column('html', sa.Text(), nullable=True))
    op.create_index('ix_post_ap_id', 'post', ['ap_id'], unique=True)
    op.create_table(
        'local_actor_key',
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('user.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('private_pem', sa.Text(), nullable=False),
        sa.Column('public_pem', sa.Text(), nullable=False),
    )
    op.create_table(
        'instance_actor_key',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('private_pem', sa.Text(), nullable=False),
        sa.Column('public_pem', sa.Text(), nullable=False),
    )
    op.create_table(
        'remote_actor',
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('user.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('actor_url', sa.String(URL_MAX), nullable=False, unique=True),
        sa.Column('inbox', sa.String(URL_MAX), nullable=False),
        sa.Column('shared_inbox', sa.String(URL_MAX), nullable=True),
        sa.Column('outbox', sa.String(URL_MAX), nullable=True),
        sa.Column('followers_url', sa.String(URL_MAX), nullable=True),
        sa.Column('following_url', sa.String(URL_MAX), nullable=True),
        sa.Column('profile_url', sa.String(URL_MAX), nullable=True),
        sa.Column('key_id', sa.String(URL_MAX), nullable=False),
        sa.Column('public_key_pem', sa.Text(), nullable=False),
        sa.Column('icon_url', sa.String(URL_MAX), nullable=True),
        sa.Column('display_name', sa.String(255), nullable=True),
        sa.Column('summary_html', sa.Text(), nullable=True),
        sa.Column('followers_count', sa.Integer(), nullable=True),
        sa.Column('following_count', sa.Integer(), nullable=True),
        sa.Column('posts_count', sa.Integer(), nullable=True),
        sa.Column('fetched_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_remote_actor_key_id', 'remote_actor', ['key_id'])
    op.create_table(
        'follow_request',
        sa.Column('follower_id', sa.Integer(), sa.ForeignKey('user.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('followed_id', sa.Integer(), sa.ForeignKey('user.id', ondelete='CASCADE'),
                  primary_key=True),
        sa.Column('activity_id', sa.String(URL_MAX), nullable=False, unique=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'tombstone',
        sa.Column('ap_id', sa.String(URL_MAX), primary_key=True),
        sa.Column('deleted_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'inbox_activities',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('activity_id', sa.String(URL_MAX), nullable=False, unique=True),
        sa.Column('actor_url', sa.String(URL_MAX), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('received_at', sa.DateTime(), nullable=False),
    )
    op.create_index('ix_inbox_activities_received_at', 'inbox_activities', ['received_at'])


def downgrade():
    op.drop_index('ix_inbox_activities_received_at', table_name='inbox_activities')
    op.drop_table('inbox_activities')
    op.drop_table('tombstone')
    op.drop_table('follow_request')
    op.drop_index('ix_remote_actor_key_id', table_name='remote_actor')
    op.drop_table('remote_actor')
    op.drop_table('instance_actor_key')
    op.drop_table('local_actor_key')
    op.drop_index('ix_post_ap_id', table_name='post')
    op.drop_column('post', 'html')
    op.drop_column('post', 'url')
    op.drop_column('post', 'ap_id')
    # Remote accounts have no address: they go before the column is NOT NULL again.
    op.execute(sa.text('DELETE FROM "user" WHERE domain IS NOT NULL'))
    op.drop_index('ix_user_domain', table_name='user')
    op.drop_column('user', 'domain')
    set_email_nullable(False)
