"""The home timeline picks its query plan by what it holds: a user who follows few posts
is answered through the user_id index, one who follows many by walking the timestamp index
newest-first. Times cannot be tested; SQLite's EXPLAIN QUERY PLAN and the rows can."""

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from database import db
from models import Post, User
from tests.helpers import add_posts, add_user, follow
from timeline import Timeline

PAGE = 25
BUSY_POSTS = 3000  # the busy author's posts: most of the table
QUIET_POSTS = 4  # the quiet author's


def seed(app, password_hash) -> dict:
    """ "sparse" follows only a quiet author, "dense" only a busy one; their posts interleave
    in time, so a timestamp walk for "sparse" must pass nearly every busy post."""
    ids = {n: add_user(app, n, password_hash) for n in ("sparse", "dense", "busy", "quiet")}
    start = datetime(2024, 1, 1)
    add_posts(app, ids["busy"], BUSY_POSTS, body="busy {i}", start=start)
    add_posts(app, ids["quiet"], QUIET_POSTS, body="quiet {i}", start=start, step=timedelta(days=1))
    follow(app, ids["sparse"], ids["quiet"])
    follow(app, ids["dense"], ids["busy"])
    return ids


def expected_page(app, author_ids, page) -> list[int]:
    """The post ids of page `page` of these authors' posts, newest first, sorted here."""
    with app.app_context():
        rows = db.session.execute(
            sa.select(Post.id, Post.timestamp).where(Post.user_id.in_(author_ids))
        ).all()
    ordered = [i for i, _t in sorted(rows, key=lambda row: (row[1], row[0]), reverse=True)]
    return ordered[(page - 1) * PAGE : page * PAGE]


def timeline(user_id, page=1) -> sa.Select:
    user = db.session.get_one(User, user_id)
    rows = page * PAGE + 1
    return Timeline(user).posts(rows).limit(PAGE).offset((page - 1) * PAGE)


def sqlite_plan(query) -> str:
    sql = str(query.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    with db.engine.connect() as connection:
        return "\n".join(row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


@pytest.fixture
def people(app, password_hash):
    return seed(app, password_hash)


def test_a_sparse_timeline_is_read_through_the_user_id_index(app, people):
    with app.app_context():
        plan = sqlite_plan(timeline(people["sparse"]))
    assert "ix_post_user_id_timestamp" in plan, plan
    assert "ix_post_timestamp" not in plan, plan


def test_a_dense_timeline_walks_the_timestamp_index(app, people):
    with app.app_context():
        plan = sqlite_plan(timeline(people["dense"]))
    assert "ix_post_timestamp" in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("page", [1, 2, 40])
def test_both_plans_give_the_right_page(app, people, page):
    with app.app_context():
        for viewer, author in (("sparse", "quiet"), ("dense", "busy")):
            got = [post.id for post in db.session.scalars(timeline(people[viewer], page))]
            assert got == expected_page(app, [people[viewer], people[author]], page), viewer


def test_both_plans_give_the_right_page_on_postgresql(pg_app, password_hash):
    ids = seed(pg_app, password_hash)
    with pg_app.app_context():
        for viewer, author in (("sparse", "quiet"), ("dense", "busy")):
            for page in (1, 2):
                got = [post.id for post in db.session.scalars(timeline(ids[viewer], page))]
                assert got == expected_page(pg_app, [ids[viewer], ids[author]], page), viewer
