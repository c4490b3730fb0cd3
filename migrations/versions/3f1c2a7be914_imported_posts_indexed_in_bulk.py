"""imported posts indexed in bulk

On SQLite the search index's insert trigger skips rows with an import key: an import
indexes each batch of posts in one statement (one FTS5 insert per row made a large import
several times slower). PostgreSQL's generated column is unchanged. (2026-11-22)."""
from alembic import op


revision = '3f1c2a7be914'
down_revision = 'c3f1a7d2e9b4'

# Written out here rather than imported from search.py, so that this revision keeps doing
# what it did when search.py changes.
INSERT_TRIGGER = (
    "CREATE TRIGGER post_fts_insert AFTER INSERT ON post {when}BEGIN "
    "INSERT INTO post_fts(rowid, body) VALUES (new.id, new.body); END"
)


def replace_trigger(when):
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS post_fts_insert")
    op.execute(INSERT_TRIGGER.format(when=when))


def upgrade():
    replace_trigger("WHEN new.import_key IS NULL ")


def downgrade():
    replace_trigger("")
