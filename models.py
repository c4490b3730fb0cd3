"""The site's models: users (identity, sign-in, sessions, the profile), posts, follows, API
tokens, rate-limit hits and messages. The `db` object and the helpers are in database.py,
the background jobs' rows in jobs.py, notifications in notifications.py; what a user does
with follows, timelines, messages, tasks and imports lives in modules of its own
(follows.py, timeline.py, mailboxes.py, user_tasks.py, importing.py, administration.py)."""

import functools
import hashlib
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Optional, cast

import sqlalchemy as sa
import sqlalchemy.orm as so
from blinker import Namespace
from flask import current_app, url_for
from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

import language_detection
from avatars import AVATAR_SIZES
from database import MAX_ROW_ID, Model, db, partial_unique_index, utcnow
from i18n import N_
from jobs import Task
from notifications import Notification

# What other modules act on without this one knowing them (the Mastodon API keeps its
# notifications and tokens by them). Each is sent inside the transaction the caller commits.
events = Namespace()
sessions_ended = events.signal("sessions-ended")  # sender: the User
followed = events.signal("followed")  # sender: the follower; `user`: the one followed
published = events.signal("published")  # sender: the Post, flushed
message_sent = events.signal("message-sent")  # sender: the Message, flushed
# A post (local or from another server) names a local account who does not block its author:
# mentions.record sends it, once per post and account. Sender: the Post; `user`: the one named.
mention_recorded = events.signal("mention-recorded")

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


def new_session_generation() -> str:
    """A fresh random session generation (see `User.get_id`)."""
    return secrets.token_hex(16)


def contains_pattern(text: str) -> str:
    """A LIKE pattern (escape character `\\`) matching values that contain `text` as typed:
    `%` and `_` in it are literal characters, not wildcards."""
    for special in ("\\", "%", "_"):
        text = text.replace(special, "\\" + special)
    return f"%{text}%"


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
    # When the account was made here (for a remote one: when this site first knew of it).
    # The epoch server default only serves rows written without the ORM.
    created_at: so.Mapped[datetime] = so.mapped_column(
        default=utcnow, server_default="1970-01-01 00:00:00"
    )
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
    # Messages received before this moment are read.
    last_message_read_time: so.Mapped[datetime | None] = so.mapped_column(default=None)
    messages_sent: so.WriteOnlyMapped["Message"] = so.relationship(
        foreign_keys="Message.sender_id", back_populates="author", passive_deletes=True
    )
    messages_received: so.WriteOnlyMapped["Message"] = so.relationship(
        foreign_keys="Message.recipient_id", back_populates="recipient", passive_deletes=True
    )

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

    # --- the profile ----------------------------------------------------------
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

    # --- posts ----------------------------------------------------------------
    def posts_select(self) -> sa.Select:
        """The user's own posts, newest first."""
        return (
            sa.select(Post)
            .where(Post.user_id == self.id)
            .options(so.joinedload(Post.author))
            .order_by(Post.timestamp.desc(), Post.id.desc())
        )

    def posts_count(self) -> int:
        return db.session.execute(
            sa.select(sa.func.count()).where(Post.user_id == self.id)
        ).scalar_one()


def users_named_like(text: str) -> sa.Select:
    """Users whose name contains `text` (any case): exact match first, then by name."""
    name = sa.func.lower(User.username)
    return (
        sa.select(User)
        .where(name.contains(text.lower(), autoescape=True))
        .order_by((name == text.lower()).desc(), User.username)
    )


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
    # How many accounts (on other servers) liked and boosted it: kept here, beside the post,
    # so that a page of post cards reads them with the posts (reactions.py keeps them exact).
    like_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
    announce_count: so.Mapped[int] = so.mapped_column(default=0, server_default="0")
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
    __table_args__ = (
        sa.Index("ix_message_recipient_id_timestamp", "recipient_id", "timestamp"),
        # A direct note from another server becomes one message per recipient, once.
        partial_unique_index(
            "uq_message_recipient_id_ap_id", "recipient_id", "ap_id", where="ap_id IS NOT NULL"
        ),
    )

    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    sender_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), index=True
    )
    recipient_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"))
    body: so.Mapped[str] = so.mapped_column(sa.String(MESSAGE_MAX))
    timestamp: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # A message from another server: its Note's id, and its content sanitised (in full;
    # `body` holds its text, shortened to MESSAGE_MAX).
    ap_id: so.Mapped[str | None] = so.mapped_column(sa.String(URL_MAX))
    html: so.Mapped[str | None] = so.mapped_column(sa.Text)

    author: so.Mapped[User] = so.relationship(
        foreign_keys=[sender_id], back_populates="messages_sent"
    )
    recipient: so.Mapped[User] = so.relationship(
        foreign_keys=[recipient_id], back_populates="messages_received"
    )

    def __repr__(self) -> str:
        return f"<Message {self.body}>"
