"""The home timeline: a user's own posts and those of the users they follow, newest first."""

import math
import time

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app

from database import db
from follows import Follows
from models import Post, User

# How long a timeline's plan (`_is_sparse`) is reused: it changes only as follows and posts
# pile up, a stale one costs time but never changes the result, and asking costs two queries
# on every home page.
PLAN_KEPT_SECONDS = 60
PLANS_KEPT = 10_000  # per app; all are dropped when it is full


class Timeline:
    """One user's home timeline, as queries."""

    def __init__(self, user: User):
        self.user = user
        self.followed_ids = Follows(user).followed_ids()

    def posts(self, rows: int = 26) -> sa.Select:
        """The timeline's posts, newest first; `rows` is how many of them the caller reads
        (offset + limit), which decides the plan.

        SQLite can answer in two ways. Walking the timestamp index newest-first stops once
        `rows` posts of the timeline have gone by: cheap when the timeline is a good share
        of all posts, but for someone who follows few it reads nearly the whole table to
        find them. Reading the timeline's posts through the (user_id, timestamp) index and
        sorting them costs what the timeline holds. `_is_sparse` picks the cheaper;
        `user_id + 0` is what keeps SQLite off the user_id index for the walk.
        """
        sparse = self._kept_plan(rows)
        return (
            sa.select(Post)
            .where(self._holds(use_user_index=sparse))
            .options(so.joinedload(Post.author))
            .order_by(Post.timestamp.desc(), Post.id.desc())
        )

    def count(self) -> int:
        """How many posts the timeline holds, counted through the user_id index."""
        query = sa.select(sa.func.count(Post.id)).where(
            sa.or_(Post.user_id == self.user.id, Post.user_id.in_(self.followed_ids))
        )
        return db.session.execute(query).scalar_one()

    def newer_count(self, after_id: int, cap: int) -> int:
        """How many timeline posts are newer than post `after_id`, counting at most `cap` + 1
        (enough to say "more than `cap`")."""
        newer = sa.select(Post.id).where(self._holds(), Post.id > after_id).limit(cap + 1)
        return db.session.execute(
            sa.select(sa.func.count()).select_from(newer.subquery())
        ).scalar_one()

    def _kept_plan(self, rows: int) -> bool:
        """`_is_sparse(rows)`, as it was answered within the last PLAN_KEPT_SECONDS."""
        plans: dict[tuple[int, int], tuple[float, bool]] = current_app.extensions.setdefault(
            "timeline_plans", {}
        )
        key, now = (self.user.id, rows), time.monotonic()
        kept = plans.get(key)
        if kept is None or now - kept[0] > PLAN_KEPT_SECONDS:
            if len(plans) >= PLANS_KEPT:
                plans.clear()
            kept = plans[key] = (now, self._is_sparse(rows))
        return kept[1]

    def _is_sparse(self, rows: int) -> bool:
        """Whether sorting the whole timeline costs less than walking the posts table for
        `rows` of it.

        With T posts of N in the timeline, spread through time, the walk reads about
        rows * N / T posts and the sort T: the sort wins while T * T < rows * N. T is
        counted through the user_id index and only up to that bound; N is the highest post
        id (no table scan), which is at least the number of posts.
        """
        table = db.session.scalar(sa.select(sa.func.max(Post.id))) or 0
        bound = math.isqrt(rows * table)
        within = sa.select(Post.id).where(self._holds(use_user_index=True)).limit(bound + 1)
        held = db.session.scalar(sa.select(sa.func.count()).select_from(within.subquery()))
        return (held or 0) <= bound

    def _holds(self, use_user_index: bool = False) -> sa.ColumnElement[bool]:
        """The condition a post of the timeline meets."""
        if use_user_index:
            # One IN list of authors: SQLite searches the index once per author, where an
            # OR of the user and the followed ones costs a merge of two row sets.
            authors = self.followed_ids.union_all(sa.select(sa.literal(self.user.id)))
            return Post.user_id.in_(authors)
        author_id = Post.user_id + 0
        return sa.or_(author_id == self.user.id, author_id.in_(self.followed_ids))
