"""The follow graph: who follows whom, seen from one user (`Follows(user)`)."""

from collections.abc import Sequence

import sqlalchemy as sa

from database import _dialect_insert, db
from models import User, followed, followers


class Follows:
    """One user's follows: whom they follow and who follows them."""

    def __init__(self, user: User):
        self.user = user

    def follow(self, other: User) -> None:
        if not self.is_following(other):
            self.user.following.add(other)
            followed.send(self.user, user=other)

    def unfollow(self, other: User) -> None:
        if self.is_following(other):
            self.user.following.remove(other)

    def is_following(self, other: User) -> bool:
        query = self.user.following.select().where(User.id == other.id)
        return db.session.scalar(query) is not None

    def followers_count(self) -> int:
        return db.session.execute(self._count(followers.c.followed_id)).scalar_one()

    def following_count(self) -> int:
        return db.session.execute(self._count(followers.c.follower_id)).scalar_one()

    def counts(self) -> tuple[int, int]:
        """How many follow this user and how many they follow, in one query."""
        query = sa.select(
            self._count(followers.c.followed_id).scalar_subquery(),
            self._count(followers.c.follower_id).scalar_subquery(),
        )
        followers_count, following_count = db.session.execute(query).one()
        return followers_count, following_count

    def _count(self, side: sa.Column[int]) -> sa.Select[int]:
        """The number of follow rows whose `side` is this user."""
        return sa.select(sa.func.count()).where(side == self.user.id)

    def followers_select(self) -> sa.Select:
        """The users who follow this user, by name."""
        return self.user.followers.select().order_by(User.username)

    def following_select(self) -> sa.Select:
        """The users this user follows, by name."""
        return self.user.following.select().order_by(User.username)

    def following_usernames(self) -> list[str]:
        """The usernames this user follows, by name (for an export)."""
        query = sa.select(User.username).where(User.id.in_(self.followed_ids()))
        return list(db.session.scalars(query.order_by(User.username)))

    def followed_ids(self) -> sa.Select:
        """The ids of the users this user follows, as a subquery."""
        return sa.select(followers.c.followed_id).where(followers.c.follower_id == self.user.id)

    def follow_usernames(self, usernames: Sequence[str]) -> int:
        """Follow each of these users that exists here (not oneself); how many new follows."""
        wanted = sa.select(sa.literal(self.user.id), User.id).where(
            User.username.in_(usernames), User.id != self.user.id
        )
        statement = (
            _dialect_insert(followers)
            .from_select(["follower_id", "followed_id"], wanted)
            .on_conflict_do_nothing()
            .returning(followers.c.followed_id)
        )
        return len(db.session.execute(statement).all())
