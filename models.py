"""The site's models and their domain logic: users, posts, follows, notifications, API
tokens, rate-limit hits and messages. The `db` object and the helpers are in database.py,
the background jobs' rows in jobs.py."""

import functools
import hashlib
import json
import logging
import math
import re
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Optional, cast

import orjson
import sqlalchemy as sa
import sqlalchemy.orm as so
from blinker import Namespace
from flask import current_app, url_for
from flask_login import UserMixin
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.security import check_password_hash, generate_password_hash

import language_detection
from avatars import AVATAR_SIZES
from i18n import N_, phrase, store_phrases

if TYPE_CHECKING:
    from huey.api import TaskWrapper


from database import (
    MAX_ROW_ID,
    Model,
    _dialect_insert,
    _insert_unless_conflict,
    db,
    execute_dml,
    partial_unique_index,
    utcnow,
)
from jobs import (
    TASK_BANNER_LIFETIME,
    Task,
    TaskStatus,
)

# What other modules act on without this one knowing them (the Mastodon API keeps its
# notifications and tokens by them). Each is sent inside the transaction the caller commits.
events = Namespace()
sessions_ended = events.signal("sessions-ended")  # sender: the User
followed = events.signal("followed")  # sender: the follower; `user`: the one followed
published = events.signal("published")  # sender: the Post, flushed
message_sent = events.signal("message-sent")  # sender: the Message, flushed

# Named limits: the columns, the forms and the OpenAPI document all read these.
USERNAME_MAX = 64
# Letters, digits, '.', '_' and '-'. `\Z`, not `$`: "$" also matches before a trailing newline.
USERNAME_PATTERN = r"^[A-Za-z0-9_.-]+\Z"
EMAIL_MAX = 120
PASSWORD_MIN = 8
PASSWORD_MAX = 128
POST_MAX = 140
ABOUT_ME_MAX = 140
MESSAGE_MAX = 140
# A server's host name, with a port when it has one.
DOMAIN_MAX = 255
# The longest URL kept for things that come from other servers (ids, links).
URL_MAX = 2048
# A language tag as pages and mail use it ("en", "es"; room for "pt-BR" and the like).
LANGUAGE_MAX = 16


# What "a character" is for every text limit above (the forms, the API, the importer, the
# columns, and the page's counter, which counts the same way): a Unicode code point of the
# text with its line breaks as LF. Browsers send a textarea's line breaks as CRLF; counted
# as two they made the server refuse what the counter allowed. A combining mark is a code
# point of its own ("é" typed as e + U+0301 is two): simple, and the same on both sides.
LINE_BREAK = re.compile(r"\r\n?")


def plain_text(text: str) -> str:
    """`text` with its line breaks as LF, as it is counted and stored."""
    return LINE_BREAK.sub("\n", text) if "\r" in text else text


def text_length(text: str) -> int:
    """How many characters `text` has for the limits: code points, a line break one."""
    return len(plain_text(text))


LAST_SEEN_RESOLUTION = timedelta(minutes=1)
RESET_TOKEN_MAX_AGE = 3600  # seconds
EMAIL_CHANGE_TOKEN_MAX_AGE = 24 * 3600  # seconds


def new_session_generation() -> str:
    """A fresh random session generation (see `User.get_id`)."""
    return secrets.token_hex(16)


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character `\\`) matching values that contain `text` as typed:
    `%` and `_` in it are literal characters, not wildcards."""
    for special in ("\\", "%", "_"):
        text = text.replace(special, "\\" + special)
    return f"%{text}%"


# Refused to whoever would disable, demote or delete the one admin left who can sign in.
LAST_ADMIN = N_("That is the last enabled admin: make another account an admin first.")
REGISTRATION_CLOSED = N_("Registration is closed on this site: an administrator creates accounts.")


def registration_open() -> bool:
    """Whether visitors may create their own accounts (MICROBLOG_REGISTRATION). When closed,
    only admins do: the command line and /admin."""
    return current_app.config["MICROBLOG_REGISTRATION"] == "open"


def normalize_email(email: str) -> str:
    """The form an address is stored and compared in: surrounding spaces dropped."""
    return email.strip()


@functools.cache
def _decoy_password_hash() -> str:
    # Checked against when the username is unknown, so that a failed sign-in costs the
    # same time whether or not the account exists (no probing for usernames by timing).
    return generate_password_hash(secrets.token_hex(16))


followers = sa.Table(
    "followers",
    db.metadata,
    sa.Column("follower_id", sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("followed_id", sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    # Follower counts look rows up by the second column.
    sa.Index("ix_followers_followed_id", "followed_id"),
)


class User(UserMixin, Model):
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    username: so.Mapped[str] = so.mapped_column(sa.String(USERNAME_MAX), index=True, unique=True)
    # None for remote accounts, which have no address and no password here.
    email: so.Mapped[str | None] = so.mapped_column(sa.String(EMAIL_MAX), index=True, unique=True)
    # The server of a remote account ("mastodon.example"), None for a local one. A remote
    # account's username is its handle, name@domain; local usernames cannot contain "@".
    domain: so.Mapped[str | None] = so.mapped_column(sa.String(DOMAIN_MAX), index=True)
    password_hash: so.Mapped[str | None] = so.mapped_column(sa.String(256))
    about_me: so.Mapped[str | None] = so.mapped_column(sa.String(ABOUT_ME_MAX))
    last_seen: so.Mapped[datetime | None] = so.mapped_column(default=utcnow)
    # Part of every session cookie and remember-me token: a new value signs out every copy.
    # (The empty server default only serves rows written without the ORM; signing in gives
    # them a value.)
    session_generation: so.Mapped[str] = so.mapped_column(
        sa.String(32), default=new_session_generation, server_default=""
    )
    # Admins see /admin. A disabled account cannot sign in and its sessions and tokens stop
    # working; its posts stay where they are.
    is_admin: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    disabled: so.Mapped[bool] = so.mapped_column(default=False, server_default=sa.false())
    # The language pages and mail use ("en", "es"); None follows the browser's Accept-Language.
    language: so.Mapped[str | None] = so.mapped_column(sa.String(LANGUAGE_MAX))
    # When the uploaded picture was made (Unix time), None without one: part of its URL, so
    # that the files can be cached for good and a new picture is a new address.
    avatar_version: so.Mapped[int | None] = so.mapped_column()

    posts: so.WriteOnlyMapped["Post"] = so.relationship(
        back_populates="author", passive_deletes=True
    )
    following: so.WriteOnlyMapped["User"] = so.relationship(
        secondary=followers,
        primaryjoin=(followers.c.follower_id == id),
        secondaryjoin=(followers.c.followed_id == id),
        back_populates="followers",
        passive_deletes=True,
    )
    followers: so.WriteOnlyMapped["User"] = so.relationship(
        secondary=followers,
        primaryjoin=(followers.c.followed_id == id),
        secondaryjoin=(followers.c.follower_id == id),
        back_populates="following",
        passive_deletes=True,
    )
    notifications: so.WriteOnlyMapped["Notification"] = so.relationship(
        back_populates="user", passive_deletes=True
    )
    tasks: so.WriteOnlyMapped["Task"] = so.relationship(back_populates="user", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<User {self.username}>"

    # --- accounts -------------------------------------------------------------
    @classmethod
    def named(cls, username: str) -> sa.Select:
        """The user with that username, as a query (for `db.first_or_404`)."""
        return sa.select(cls).where(cls.username == username)

    @classmethod
    def by_username(cls, username: str) -> Optional["User"]:
        return db.session.scalar(cls.named(username))

    @classmethod
    def by_email(cls, email: str) -> Optional["User"]:
        """The user with that address, compared without regard to case."""
        address = normalize_email(email).lower()
        return db.session.scalar(sa.select(cls).where(sa.func.lower(cls.email) == address))

    @classmethod
    def register(
        cls, username: str, email: str, password: str, about_me: str | None = None
    ) -> "User":
        """Add a new account to the session (the caller commits)."""
        user = cls(username=username, email=normalize_email(email), about_me=about_me)
        user.set_password(password)
        db.session.add(user)
        return user

    @classmethod
    def authenticate(cls, username: str, password: str) -> Optional["User"]:
        """The user with that username and password, else None (also for a disabled one)."""
        user = cls.by_username(username)
        if user is None:
            check_password_hash(_decoy_password_hash(), password)
            return None
        return user if user.check_password(password) and user.is_active else None

    @property
    def is_active(self) -> bool:
        """Flask-Login's word: False for a disabled account, which `login_user` refuses."""
        return not self.disabled

    # --- administration -------------------------------------------------------------
    def disable(self) -> None:
        """Lock the account: no sign-in, and its sessions and API tokens stop working now.

        The posts, follows and messages stay (the caller commits).
        """
        self.disabled = True
        self.end_all_sessions()

    def enable(self) -> None:
        """Let a disabled account sign in again (the caller commits)."""
        self.disabled = False

    def make_admin(self, flag: bool = True) -> None:
        """Give (or take away) access to /admin (the caller commits)."""
        self.is_admin = flag

    def refuse_admin_change(self, actor: "User") -> str | None:
        """Why `actor` may not disable, demote or delete this account from /admin, or None.

        An admin cannot lock themselves out (there might be no other admin to let them back
        in), nor take away the last enabled admin (`refuse_leaving_no_admin`).
        """
        if actor.id == self.id:
            return N_("You cannot disable, demote or delete your own account here.")
        return self.refuse_leaving_no_admin()

    def refuse_leaving_no_admin(self) -> str | None:
        """LAST_ADMIN when this is the only admin that is not disabled, else None: the one
        rule for disabling, demoting and deleting, from /admin, the command line or the
        account's own settings, so that someone can always run the site.

        Holds the enabled admins until the transaction ends (the caller then changes this
        account and commits): two admins removing each other at once would otherwise both
        see the other still there. PostgreSQL locks their rows; SQLite, which has no row
        locks, takes its one write lock with an update that changes nothing.
        """
        enabled = sa.and_(User.is_admin.is_(True), User.disabled.is_(False))
        if db.session.get_bind().dialect.name == "sqlite":
            hold = sa.update(User).where(enabled).values(is_admin=User.is_admin)
            execute_dml(hold.execution_options(synchronize_session=False))
        admins = db.session.scalars(sa.select(User.id).where(enabled).with_for_update()).all()
        return LAST_ADMIN if admins == [self.id] else None

    def delete_account(self) -> list[str]:
        """Delete the user and, through the foreign keys' ON DELETE CASCADE, their posts,
        messages, follows, notifications, tasks and tokens. Returns the names of their export
        files, for the caller to remove once the deletion is committed."""
        files = db.session.scalars(
            sa.select(Task.result_file).where(
                Task.user_id == self.id, Task.result_file.is_not(None)
            )
        ).all()
        db.session.delete(self)
        db.session.flush()
        return [name for name in files if name]

    def delete_some_posts(self, limit: int) -> int:
        """Delete up to `limit` of the user's posts, so that deleting an account holds the
        write lock a short while at a time; how many went (the caller commits)."""
        some = sa.select(Post.id).where(Post.user_id == self.id).limit(limit).scalar_subquery()
        statement = sa.delete(Post).where(Post.id.in_(some))
        return execute_dml(statement.execution_options(synchronize_session=False)).rowcount

    def task_ids(self) -> list[str]:
        """The ids of all the user's tasks (the files of some are named by them)."""
        return list(db.session.scalars(sa.select(Task.id).where(Task.user_id == self.id)))

    @classmethod
    def search(cls, text: str = "") -> sa.Select:
        """Users whose username or e-mail contains `text` (any case), by username."""
        query = sa.select(cls).order_by(sa.func.lower(cls.username), cls.id)
        if text.strip():
            pattern = contains_pattern(text.strip().lower())
            query = query.where(
                sa.or_(
                    sa.func.lower(cls.username).like(pattern, escape="\\"),
                    sa.func.lower(cls.email).like(pattern, escape="\\"),
                )
            )
        return query

    # --- sessions ---------------------------------------------------------------
    def get_id(self) -> str:
        """What Flask-Login keeps in the session and the remember-me cookie: the id plus the
        session generation, so that rotating the generation ends every copy of both."""
        return f"{self.id}:{self.session_generation}"

    @classmethod
    def from_session_id(cls, session_id: str) -> Optional["User"]:
        """The user a session's id (`get_id()`) names, if its generation is still current."""
        user_id, _, generation = str(session_id).partition(":")
        if not user_id.isdigit() or not generation:
            return None  # also a cookie from before sessions were revocable
        user = db.session.get(cls, int(user_id)) if int(user_id) <= MAX_ROW_ID else None
        if user is None or not secrets.compare_digest(user.session_generation, generation):
            return None
        return user if user.is_active else None  # a disabled account's sessions end at once

    def end_sessions(self) -> None:
        """Sign out every browser: each session cookie and remember-me token stops working."""
        self.session_generation = new_session_generation()

    def end_all_sessions(self) -> None:
        """Sign out everywhere: every browser session and every API token (the caller
        commits). For a password change or reset, a disabled account, "sign out everywhere"."""
        self.end_sessions()
        db.session.execute(sa.delete(ApiToken).where(ApiToken.user_id == self.id))
        sessions_ended.send(self)

    def change_password(self, new_password: str) -> None:
        """Set a new password and end every session and API token (the caller commits)."""
        self.set_password(new_password)
        self.end_all_sessions()

    # --- changing the e-mail address ---------------------------------------------
    def get_email_change_token(self, new_email: str) -> str:
        """A signed link token that sets `new_email` once opened (see `confirm_email_change`).

        It names the current address too, so it works once: after the change it no longer
        matches."""
        data = {"id": self.id, "old": self.email, "new": normalize_email(new_email)}
        return _email_change_serializer().dumps(data)

    @staticmethod
    def email_change_from_token(token: str) -> tuple[Optional["User"], str]:
        """The user and new address a valid, unexpired, unused token names; (None, "") else."""
        try:
            data = _email_change_serializer().loads(token, max_age=EMAIL_CHANGE_TOKEN_MAX_AGE)
            user = db.session.get(User, int(data["id"]))
            new_email = str(data["new"])
        except (BadSignature, KeyError, TypeError, ValueError, OverflowError):
            return None, ""
        if user is None or data.get("old") != user.email:
            return None, ""
        return user, new_email

    def update_profile(
        self,
        username: str | None = None,
        about_me: str | None = None,
        email: str | None = None,
    ) -> None:
        """Change the given profile fields (the caller commits)."""
        if username is not None:
            self.username = username
        if about_me is not None:
            self.about_me = about_me
        if email is not None:
            self.email = normalize_email(email)

    def choose_language(self, language: str | None) -> None:
        """Pages and mail in `language` from now on; None (or "") follows the browser
        (the caller commits)."""
        self.language = language or None

    def delete_post(self, post_id: int) -> bool:
        """Delete one of this user's own posts; False when it is not theirs or is gone."""
        post = db.session.scalar(self.posts_select().where(Post.id == post_id))
        if post is None:
            return False
        db.session.delete(post)
        return True

    def publish(self, body: str) -> "Post":
        """Add a post by this user, with the language it is written in (the caller commits)."""
        body = plain_text(body).strip()
        post = Post(body=body, author=self, language=language_detection.detect(body))
        db.session.add(post)
        db.session.flush()
        published.send(post)
        return post

    # --- import -----------------------------------------------------------------
    def import_posts(self, batch: Sequence["ImportablePost"]) -> int:
        """Add a batch of imported posts, skipping those whose key this user already has;
        how many were added (the caller commits)."""
        return self.import_posts_json(orjson.dumps([tuple(post) for post in batch]))

    def import_posts_json(self, posts: bytes) -> int:
        """`import_posts` for a batch written as JSON: an array of [body, timestamp, source
        id, key] arrays, the timestamp naive UTC in ISO 8601 (as orjson writes a datetime,
        and `importer.spool` a batch).

        One INSERT … SELECT from the database's own JSON functions: the rows never become
        Python objects (which cost more than the insert itself for a million posts). ON
        CONFLICT DO NOTHING leaves out a post imported before, or twice in one batch,
        without spoiling the transaction.
        """
        sqlite = db.session.get_bind().dialect.name == "sqlite"
        statement = IMPORT_POSTS_SQLITE if sqlite else IMPORT_POSTS_POSTGRESQL
        values = {"posts": posts.decode(), "user_id": self.id}
        added = cast(sa.CursorResult[Any], db.session.execute(statement, values)).rowcount
        if added and sqlite:
            # The search index's insert trigger skips imported rows (one FTS5 insert per row
            # cost more than the rest of the import): they are indexed here, at once. They
            # are the newest `added` rows: this transaction holds SQLite's write lock, so
            # their ids follow one another at the end of the table.
            db.session.execute(INDEX_NEWEST_POSTS_SQLITE, {"count": added})
        return added

    def imported_post_count(self) -> int:
        """How many of the user's posts came from an import."""
        query = sa.select(sa.func.count()).where(
            Post.user_id == self.id, Post.import_key.is_not(None)
        )
        return db.session.execute(query).scalar_one()

    def follow_usernames(self, usernames: Sequence[str]) -> int:
        """Follow each of these users that exists here (not oneself); how many new follows."""
        wanted = sa.select(sa.literal(self.id), User.id).where(
            User.username.in_(usernames), User.id != self.id
        )
        statement = (
            _dialect_insert(followers)
            .from_select(["follower_id", "followed_id"], wanted)
            .on_conflict_do_nothing()
            .returning(followers.c.followed_id)
        )
        return len(db.session.execute(statement).all())

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        if not self.password_hash:  # no password set: nothing matches
            return False
        return check_password_hash(self.password_hash, password)

    def avatar(self, size: int) -> str:
        """The URL of the user's picture, `size` pixels square: the uploaded one (in the
        smallest stored size that is large enough), else Gravatar's when the site turned it
        on, else the one generated here from the username."""
        if self.avatar_version:
            stored = next((s for s in AVATAR_SIZES if s >= size), AVATAR_SIZES[-1])
            file = self.avatar_file(stored)
            return url_for("people.avatar_file", file=file, v=self.avatar_version)
        if current_app.config.get("MICROBLOG_GRAVATAR"):
            digest = hashlib.md5((self.email or "").strip().lower().encode("utf-8")).hexdigest()
            return f"https://www.gravatar.com/avatar/{digest}?d=identicon&s={size}"
        return url_for("people.generated_avatar", username=self.username, size=size)

    def avatar_file(self, size: int) -> str:
        """The file name of the uploaded picture in one of AVATAR_SIZES."""
        return f"{self.id}-{size}.webp"

    def avatar_files(self) -> list[str]:
        """The file names of the uploaded picture in every size (none without one)."""
        return [self.avatar_file(size) for size in AVATAR_SIZES] if self.avatar_version else []

    def set_avatar(self, version: int) -> None:
        """The uploaded picture's files are in place; `version` makes its URLs new."""
        self.avatar_version = version

    def seen_now(self) -> bool:
        """Update `last_seen`, at most once a minute; True when the row changed."""
        now = utcnow()
        if self.last_seen and now - self.last_seen < LAST_SEEN_RESOLUTION:
            return False
        self.last_seen = now
        return True

    # --- following -------------------------------------------------------
    def follow(self, user: "User") -> None:
        if not self.is_following(user):
            self.following.add(user)
            followed.send(self, user=user)

    def unfollow(self, user: "User") -> None:
        if self.is_following(user):
            self.following.remove(user)

    def is_following(self, user: "User") -> bool:
        query = self.following.select().where(User.id == user.id)
        return db.session.scalar(query) is not None

    def followers_count(self) -> int:
        query = sa.select(sa.func.count()).where(followers.c.followed_id == self.id)
        return db.session.execute(query).scalar_one()

    def following_count(self) -> int:
        query = sa.select(sa.func.count()).where(followers.c.follower_id == self.id)
        return db.session.execute(query).scalar_one()

    def followers_select(self) -> sa.Select:
        """The users who follow this user, by name."""
        return self.followers.select().order_by(User.username)

    def following_select(self) -> sa.Select:
        """The users this user follows, by name."""
        return self.following.select().order_by(User.username)

    @classmethod
    def named_like(cls, text: str) -> sa.Select:
        """Users whose name contains `text` (any case): exact match first, then by name."""
        name = sa.func.lower(cls.username)
        return (
            sa.select(cls)
            .where(name.contains(text.lower(), autoescape=True))
            .order_by((name == text.lower()).desc(), cls.username)
        )

    def following_usernames(self) -> list[str]:
        """The usernames this user follows, by name (for an export)."""
        query = sa.select(User.username).where(User.id.in_(self.followed_ids()))
        return list(db.session.scalars(query.order_by(User.username)))

    def followed_ids(self) -> sa.Select:
        """The ids of the users this user follows, as a subquery."""
        return sa.select(followers.c.followed_id).where(followers.c.follower_id == self.id)

    def following_posts(self, rows: int = 26) -> sa.Select:
        """The home timeline: own posts and followed users' posts, newest first; `rows` is
        how many of them the caller reads (offset + limit), which decides the plan.

        SQLite can answer in two ways. Walking the timestamp index newest-first stops once
        `rows` posts of the timeline have gone by: cheap when the timeline is a good share
        of all posts, but for someone who follows few it reads nearly the whole table to
        find them. Reading the timeline's posts through the (user_id, timestamp) index and
        sorting them costs what the timeline holds. `_timeline_is_sparse` picks the cheaper;
        `user_id + 0` is what keeps SQLite off the user_id index for the walk.
        """
        sparse = self._timeline_is_sparse(rows)
        return (
            sa.select(Post)
            .where(self._in_timeline(use_user_index=sparse))
            .options(so.joinedload(Post.author))
            .order_by(Post.timestamp.desc(), Post.id.desc())
        )

    def _timeline_is_sparse(self, rows: int) -> bool:
        """Whether sorting the whole timeline costs less than walking the posts table for
        `rows` of it.

        With T posts of N in the timeline, spread through time, the walk reads about
        rows * N / T posts and the sort T: the sort wins while T * T < rows * N. T is
        counted through the user_id index and only up to that bound; N is the highest post
        id (no table scan), which is at least the number of posts.
        """
        table = db.session.scalar(sa.select(sa.func.max(Post.id))) or 0
        bound = math.isqrt(rows * table)
        within = sa.select(Post.id).where(self._in_timeline(use_user_index=True)).limit(bound + 1)
        held = db.session.scalar(sa.select(sa.func.count()).select_from(within.subquery()))
        return (held or 0) <= bound

    def _in_timeline(self, use_user_index: bool = False) -> sa.ColumnElement[bool]:
        if use_user_index:
            # One IN list of authors: SQLite searches the index once per author, where an
            # OR of the user and the followed ones costs a merge of two row sets.
            authors = self.followed_ids().union_all(sa.select(sa.literal(self.id)))
            return Post.user_id.in_(authors)
        author_id = Post.user_id + 0
        return sa.or_(author_id == self.id, author_id.in_(self.followed_ids()))

    def following_posts_count(self) -> int:
        """How many posts the home timeline holds, counted through the user_id index."""
        query = sa.select(sa.func.count(Post.id)).where(
            sa.or_(Post.user_id == self.id, Post.user_id.in_(self.followed_ids()))
        )
        return db.session.execute(query).scalar_one()

    def new_posts_count(self, after_id: int, cap: int) -> int:
        """How many home-timeline posts are newer than post `after_id`, counting at most
        `cap` + 1 (enough to say "more than `cap`")."""
        newer = sa.select(Post.id).where(self._in_timeline(), Post.id > after_id).limit(cap + 1)
        return db.session.execute(
            sa.select(sa.func.count()).select_from(newer.subquery())
        ).scalar_one()

    def posts_select(self) -> sa.Select:
        """The user's own posts, newest first."""
        return (
            sa.select(Post)
            .where(Post.user_id == self.id)
            .options(so.joinedload(Post.author))
            .order_by(Post.timestamp.desc(), Post.id.desc())
        )

    # --- password reset ---------------------------------------------------
    def _password_fingerprint(self) -> str:
        # Part of the reset token: once the password changes, old tokens stop matching.
        return hashlib.sha256((self.password_hash or "").encode()).hexdigest()[:16]

    def get_reset_password_token(self) -> str:
        return _reset_serializer().dumps({"id": self.id, "pw": self._password_fingerprint()})

    @staticmethod
    def verify_reset_password_token(token: str) -> Optional["User"]:
        """The user a valid, unexpired, unused token belongs to, else None."""
        try:
            data = _reset_serializer().loads(token, max_age=RESET_TOKEN_MAX_AGE)
            user = db.session.get(User, int(data["id"]))
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if user is None or data.get("pw") != user._password_fingerprint():
            return None
        return user

    # --- notifications ------------------------------------------------------
    def add_notification(self, name: str, data: Any) -> "Notification":
        """Replace this user's notification of that name with a new one."""
        db.session.execute(
            sa.delete(Notification).where(
                Notification.user_id == self.id, Notification.name == name
            )
        )
        notification = Notification(name=name, payload_json=json.dumps(data), user_id=self.id)
        db.session.add(notification)
        return notification

    # --- background tasks -----------------------------------------------------
    def launch_task(
        self, task_function: "TaskWrapper", description: str, *args: Any, task_id: str | None = None
    ) -> Optional["Task"]:
        """Record a task, commit, then enqueue it with the same id.

        The row is committed first so the worker always finds it, whichever process is
        faster. The task function is called as `task_function(user_id, *args)`. `task_id` is
        for a task whose input was stored under its id before it starts (an upload).

        Returns None when a task of that name is already queued or running for this user
        (the partial unique index decides, so concurrent requests start one task), and a
        `failed` row when the queue could not take it.
        """
        task_id, user_id = task_id or str(uuid.uuid4()), self.id
        row = {
            "id": task_id,
            "name": task_function.name,
            "description": description,
            "user_id": user_id,
            # Kept so that a task whose worker died can be put back in the queue as it was.
            "arguments": json.dumps([user_id, *args]),
        }
        inserted = db.session.execute(_insert_unless_conflict(Task, row)).first() is not None
        if inserted:
            # In the same commit as the row: every open page learns of it while it waits.
            db.session.get_one(Task, task_id).notify()
        db.session.commit()
        if not inserted:
            return None
        try:
            # In Huey's immediate mode (tests) this runs the whole task before returning.
            task_function.huey.enqueue(task_function.task_class((user_id, *args), None, id=task_id))
        except Exception as exc:  # the queue is down: the row must not stay "queued" forever
            logging.getLogger("microblog").exception("Could not enqueue task %s", task_id)
            Task.change(
                task_id,
                [TaskStatus.QUEUED],
                status=TaskStatus.FAILED,
                message=store_phrases(phrase("Could not start: %(reason)s", reason=str(exc))),
            )
        return db.session.get(Task, task_id, populate_existing=True)

    def tasks_in_progress(self) -> list["Task"]:
        """Active tasks plus recently finished ones not dismissed yet: the page banners."""
        recent = utcnow() - TASK_BANNER_LIFETIME
        query = (
            sa.select(Task)
            .where(
                Task.user_id == self.id,
                sa.or_(
                    Task.status.in_(TaskStatus.active()),
                    sa.and_(Task.dismissed.is_(False), Task.finished_at > recent),
                ),
            )
            .order_by(Task.created_at)
        )
        return list(db.session.scalars(query))

    def tasks_select(self) -> sa.Select:
        """The user's task history, newest first."""
        return sa.select(Task).where(Task.user_id == self.id).order_by(Task.created_at.desc())

    # --- private messages -----------------------------------------------------
    # (the `last_message_read_time` column and the relationships are declared here, not at
    # the top of the class, to keep this feature in one block)
    last_message_read_time: so.Mapped[datetime | None] = so.mapped_column(default=None)
    messages_sent: so.WriteOnlyMapped["Message"] = so.relationship(
        foreign_keys="Message.sender_id", back_populates="author", passive_deletes=True
    )
    messages_received: so.WriteOnlyMapped["Message"] = so.relationship(
        foreign_keys="Message.recipient_id", back_populates="recipient", passive_deletes=True
    )

    def posts_count(self) -> int:
        return db.session.execute(
            sa.select(sa.func.count()).where(Post.user_id == self.id)
        ).scalar_one()

    def send_message(self, recipient: "User", body: str) -> "Message":
        """Send `body` to `recipient` and refresh their unread badge (caller commits)."""
        message = Message(author=self, recipient=recipient, body=body.strip())
        db.session.add(message)
        db.session.flush()
        message_sent.send(message)
        recipient.add_notification("unread_message_count", recipient.unread_message_count())
        return message

    def unread_message_count(self) -> int:
        query = sa.select(sa.func.count()).where(Message.recipient_id == self.id)
        if self.last_message_read_time is not None:
            query = query.where(Message.timestamp > self.last_message_read_time)
        return db.session.execute(query).scalar_one()

    def received_messages_select(self) -> sa.Select:
        """Messages sent to this user, newest first."""
        return (
            sa.select(Message)
            .where(Message.recipient_id == self.id)
            .options(so.joinedload(Message.author))
            .order_by(Message.timestamp.desc(), Message.id.desc())
        )

    def sent_messages_select(self) -> sa.Select:
        """Messages this user sent, newest first."""
        return (
            sa.select(Message)
            .where(Message.sender_id == self.id)
            .options(so.joinedload(Message.recipient))
            .order_by(Message.timestamp.desc(), Message.id.desc())
        )

    def received_message(self, message_id: int) -> sa.Select:
        """A message sent to this user (anyone else's looks like a missing one)."""
        return self.received_messages_select().where(Message.id == message_id)

    def mark_messages_read(self, up_to: datetime | None = None) -> None:
        """Messages received up to `up_to` (the newest one the reader saw; default now) are
        read; every open page's badge shows what is left."""
        moment = min(up_to, utcnow()) if up_to else utcnow()
        if self.last_message_read_time and self.last_message_read_time >= moment:
            return
        self.last_message_read_time = moment
        self.add_notification("unread_message_count", self.unread_message_count())


# What `User.import_posts` takes for each post: (body, timestamp, source id, import key),
# as an importer.ImportedPost holds them.
ImportablePost = tuple[str, datetime, str | None, str]

# The posts of a batch (see `User.import_posts_json`), in their order. SQLite keeps a
# DATETIME as the text SQLAlchemy writes, "2024-05-01 12:00:00.000000"; orjson wrote
# "2024-05-01T12:00:00", with ".123456" only when there are microseconds. `WHERE true`
# tells SQLite's parser that ON CONFLICT belongs to the INSERT.
IMPORT_POSTS_SQLITE = sa.text(
    "INSERT INTO post (body, timestamp, user_id, import_key) "
    "SELECT json_extract(value, '$[0]'), "
    "  substr(json_extract(value, '$[1]'), 1, 10) || ' ' || "
    "  substr(json_extract(value, '$[1]'), 12, 8) || "
    "  coalesce(nullif(substr(json_extract(value, '$[1]'), 20), ''), '.000000'), "
    "  :user_id, json_extract(value, '$[3]') "
    "FROM json_each(:posts) WHERE true ORDER BY key "
    "ON CONFLICT DO NOTHING"
)
IMPORT_POSTS_POSTGRESQL = sa.text(
    "INSERT INTO post (body, timestamp, user_id, import_key) "
    "SELECT post ->> 0, CAST(post ->> 1 AS timestamp), :user_id, post ->> 3 "
    "FROM json_array_elements(CAST(:posts AS json)) WITH ORDINALITY AS batch(post, number) "
    "ORDER BY number "
    "ON CONFLICT DO NOTHING"
)
# Imported rows skip the search index's insert trigger (see search.py): `import_posts_json`
# indexes its `count` new rows, the last ones of the table, with this one statement.
INDEX_NEWEST_POSTS_SQLITE = sa.text(
    "INSERT INTO post_fts(rowid, body) SELECT id, body FROM post "
    "WHERE id > (SELECT max(id) FROM post) - :count"
)


def _reset_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="reset-password")


def _email_change_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="change-email")


class Post(Model):
    __table_args__ = (
        sa.Index("ix_post_user_id_timestamp", "user_id", "timestamp"),
        # An imported post once per account, however often its archive is imported. Partial:
        # posts written here have no key and cost the index nothing.
        partial_unique_index(
            "uq_post_user_id_import_key", "user_id", "import_key", where="import_key IS NOT NULL"
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    body: so.Mapped[str] = so.mapped_column(sa.String(POST_MAX))
    timestamp: so.Mapped[datetime] = so.mapped_column(index=True, default=utcnow)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    # Where an imported post came from (a SHA-256 in hex, see importer.post_key); None for
    # posts written here.
    import_key: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    # The language it is written in ("en", "es", …); "" when it could not be told (too short,
    # only links); None when nobody has looked yet (posts from before detection, imported
    # posts): the worker fills those in (`Post.detect_languages`).
    language: so.Mapped[str | None] = so.mapped_column(sa.String(LANGUAGE_MAX))
    # Posts from other servers: their ActivityPub id (the one key for Update, Delete and
    # duplicates), the page to read them on, and their content, sanitised; `body` then
    # holds its text, shortened to POST_MAX, for search and previews.
    ap_id: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX), index=True, unique=True)
    url: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    html: so.Mapped[str | None] = so.mapped_column(sa.Text)

    author: so.Mapped[User] = so.relationship(back_populates="posts")

    def __repr__(self) -> str:
        return f"<Post {self.body}>"

    @property
    def known_language(self) -> str | None:
        """The detected language, or None when it is unknown (or not looked for yet)."""
        return self.language or None

    @classmethod
    def detect_languages(
        cls,
        after_id: int,
        limit: int,
        detect_all: Callable[[list[str]], list[str]] | None = None,
    ) -> tuple[int, int]:
        """Look up the language of up to `limit` posts that have none yet, after `after_id`
        in id order, with `detect_all` (texts → their languages; by default here, in this
        process); returns the last id looked at (`after_id` when none was left) and how many
        were looked at (the caller commits).

        Walking the ids once (rather than asking again for any NULL row) reads the table
        once, with no index for the posts still to do.
        """
        rows = db.session.execute(
            sa.select(cls.id, cls.body)
            .where(cls.id > after_id, cls.language.is_(None))
            .order_by(cls.id)
            .limit(limit)
        ).all()
        if not rows:
            return after_id, 0
        if detect_all is None:
            found = [language_detection.detect(body) for _post_id, body in rows]
        else:
            found = detect_all([body for _post_id, body in rows])
        values = [
            {"post_id": post_id, "found": language}
            for (post_id, _body), language in zip(rows, found, strict=True)
        ]
        table = cast(sa.Table, cls.__table__)
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("post_id"), table.c.language.is_(None))
            .values(language=sa.bindparam("found"))
        )
        db.session.execute(statement, values)
        return rows[-1][0], len(rows)


class Notification(Model):
    __table_args__ = (sa.Index("ix_notification_user_id_timestamp", "user_id", "timestamp"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(128))
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    # A float (Unix time) so the browser can ask for "newer than" without parsing dates.
    timestamp: so.Mapped[float] = so.mapped_column(default=time.time)
    payload_json: so.Mapped[str] = so.mapped_column(sa.Text)

    user: so.Mapped[User] = so.relationship(back_populates="notifications")

    def get_data(self) -> Any:
        return json.loads(self.payload_json)


# --- API tokens and rate limiting --------------------------------------------------

API_TOKEN_LIFETIME = timedelta(hours=1)


def hash_api_token(token: str) -> str:
    """The stored form of a bearer token: a leaked database holds no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(Model):
    """A bearer token for the JSON API; only its SHA-256 is kept."""

    __tablename__ = "api_token"

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    expires_at: so.Mapped[datetime]

    user: so.Mapped[User] = so.relationship()

    @staticmethod
    def issue(user: User) -> tuple[str, "ApiToken"]:
        """Add a new token for `user` (dropping their expired ones); the clear token and row."""
        db.session.execute(
            sa.delete(ApiToken).where(ApiToken.user_id == user.id, ApiToken.expires_at <= utcnow())
        )
        token = secrets.token_urlsafe(32)
        row = ApiToken(
            token_hash=hash_api_token(token),
            user_id=user.id,
            expires_at=utcnow() + API_TOKEN_LIFETIME,
        )
        db.session.add(row)
        return token, row

    def revoke(self) -> None:
        """Delete this token (the caller commits)."""
        db.session.delete(self)

    @staticmethod
    def find(token: str) -> Optional["ApiToken"]:
        """The unexpired token row matching `token`, else None (also for a disabled user's)."""
        query = (
            sa.select(ApiToken)
            .join(ApiToken.user)
            .where(
                ApiToken.token_hash == hash_api_token(token),
                ApiToken.expires_at > utcnow(),
                User.disabled.is_(False),
            )
        )
        return db.session.scalar(query)


class RateLimitHit(Model):
    """One counted attempt; the rate limiter counts a key's rows inside its window.

    Kept in the database (not in process memory) so every gunicorn worker sees the
    same counts.
    """

    __tablename__ = "rate_limit_hit"
    __table_args__ = (sa.Index("ix_rate_limit_hit_key_at", "key", "at"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(200))
    at: so.Mapped[float] = so.mapped_column(index=True, default=time.time)


class Message(Model):
    """A private message; only its recipient (and its author) may read it."""

    # The inbox and the unread count both look messages up by recipient, newest first.
    __table_args__ = (sa.Index("ix_message_recipient_id_timestamp", "recipient_id", "timestamp"),)

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    sender_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    recipient_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    body: so.Mapped[str] = so.mapped_column(sa.String(MESSAGE_MAX))
    timestamp: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author: so.Mapped[User] = so.relationship(
        foreign_keys=[sender_id], back_populates="messages_sent"
    )
    recipient: so.Mapped[User] = so.relationship(
        foreign_keys=[recipient_id], back_populates="messages_received"
    )

    def __repr__(self) -> str:
        return f"<Message {self.body}>"


# Built once: constructing a statement costs more than running it on this hot path.
NOTIFICATIONS_SINCE = (
    sa.select(Notification.name, Notification.payload_json, Notification.timestamp)
    .where(
        Notification.user_id == sa.bindparam("user_id"),
        Notification.timestamp > sa.bindparam("since"),
        # A disabled account's open pages read nothing more (one primary-key lookup).
        sa.exists().where(User.id == sa.bindparam("user_id"), User.disabled.is_(False)),
    )
    .order_by(Notification.timestamp.asc())
)


SESSION_GENERATION_OF = sa.select(User.session_generation).where(User.id == sa.bindparam("user_id"))


def notifications_payload(session_id: str, since: float) -> list[dict] | None:
    """What `GET /notifications` returns for the session id Flask-Login keeps (`User.get_id`),
    read with two indexed Core queries (no ORM objects); None when that session has ended.

    Every open page polls this every few seconds, so it skips everything it can.
    """
    user_id, _, generation = session_id.partition(":")
    if not user_id.isdigit() or int(user_id) > MAX_ROW_ID:
        return None
    # A pooled connection of its own: no ORM Session to set up and tear down.
    with db.engine.connect() as connection:
        current = connection.scalar(SESSION_GENERATION_OF, {"user_id": int(user_id)})
        if current is None or not secrets.compare_digest(current, generation):
            return None
        rows = connection.execute(NOTIFICATIONS_SINCE, {"user_id": int(user_id), "since": since})
        return [
            {"name": name, "data": json.loads(payload), "timestamp": timestamp}
            for name, payload, timestamp in rows
        ]
