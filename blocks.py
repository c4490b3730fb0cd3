"""Blocks: the accounts and domains a user does not want to see or hear from, and the
domains the whole site refuses. The tables and the questions the rest of the site asks of
them; moderation.py makes and lifts blocks."""

import re
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import g, has_request_context

from database import Model, db, utcnow
from models import User

# A host name (253 characters at most) with room for ":port".
DOMAIN_MAX = 260
# One label of a host name, or an IPv4 address's digits: what a domain block may name.
HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class AccountBlock(Model):
    """`user_id` blocks `blocked_id`: neither follows the other any more, and the blocked
    account's posts, messages and mentions no longer reach the user."""

    __tablename__ = "account_block"
    __table_args__ = (sa.Index("ix_account_block_blocked_id", "blocked_id"),)

    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    blocked_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class UserDomainBlock(Model):
    """`user_id` blocks every account on `domain` (and its subdomains)."""

    __tablename__ = "user_domain_block"

    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    domain: so.Mapped[str] = so.mapped_column(sa.String(DOMAIN_MAX), primary_key=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class DomainBlock(Model):
    """An admin blocked `domain` (and its subdomains) for the whole site: its servers'
    requests are refused and its accounts shown nowhere."""

    __tablename__ = "domain_block"

    domain: so.Mapped[str] = so.mapped_column(sa.String(DOMAIN_MAX), primary_key=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # The admin who blocked it (None once that account is gone).
    created_by_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="SET NULL")
    )


# --- domains --------------------------------------------------------------------------------


def normalize_domain(text: str) -> str | None:
    """The domain a user typed, as blocks store it: lower case, IDNA-encoded, with its port
    if it named one; a URL or an `@name@host` handle gives its host. None when it is not a
    host name."""
    text = text.strip().lower()
    if "://" not in text:
        # A handle (`@name@host`, `name@host`) names its host after its last "@".
        text = "//" + text.rpartition("@")[2]
    try:
        parts = urlsplit(text)
        host, port = (parts.hostname or "").rstrip("."), parts.port
        host = host.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None
    labels = host.split(".")
    if not host or len(host) > 253 or not all(HOST_LABEL.fullmatch(label) for label in labels):
        return None
    return f"{host}:{port}" if port else host


def covering_domains(domain: str) -> list[str]:
    """The blocked domains that would cover `domain`: itself (with and without its port) and
    each domain it is under (`a.b.example.org` → `b.example.org`, `example.org`, `org`)."""
    normal = normalize_domain(domain)
    if normal is None:
        return []
    host = normal.partition(":")[0]
    labels = host.split(".")
    return list(dict.fromkeys([normal] + [".".join(labels[i:]) for i in range(len(labels))]))


# Built once: every inbox POST asks it, and building it cost more than running it.
BLOCKED_AMONG = (
    sa.select(DomainBlock.domain)
    .where(DomainBlock.domain.in_(sa.bindparam("domains", expanding=True)))
    .limit(1)
)


def domain_blocked(domain: str) -> bool:
    """Whether an admin blocked `domain`, or a domain it is under, for the whole site."""
    covering = covering_domains(domain)
    if not covering:
        return False
    return db.session.scalar(BLOCKED_AMONG, {"domains": covering}) is not None


def user_blocks_domain(user_id: int, domain: str) -> bool:
    """Whether the user blocked `domain` or a domain it is under."""
    covering = covering_domains(domain)
    if not covering:
        return False
    query = sa.select(UserDomainBlock.domain).where(
        UserDomainBlock.user_id == user_id, UserDomainBlock.domain.in_(covering)
    )
    return db.session.scalar(query.limit(1)) is not None


# --- accounts -------------------------------------------------------------------------------


def accounts_on(domains: sa.Select) -> sa.Select:
    """The ids of the accounts on any of `domains` (a select of one column of domain names)
    or on a domain under one, whatever their port."""
    listed = domains.subquery()
    domain, account_domain = listed.c[0], User.domain
    under = sa.literal("%.").concat(domain)
    covered = sa.or_(
        account_domain == domain,
        account_domain.like(domain.concat(":%")),
        account_domain.like(under),
        account_domain.like(under.concat(":%")),
    )
    return sa.select(User.id).join(listed, covered)


def site_blocked_accounts() -> sa.Select:
    """The ids of the accounts on the domains blocked for the whole site."""
    return accounts_on(sa.select(DomainBlock.domain))


def blocked_by(user: User) -> sa.Select:
    """The ids of the accounts hidden from `user`: those they block, those on domains they
    block, and those on domains blocked for the whole site (timelines, lists, mentions and
    the message inbox leave them out)."""
    domains = sa.select(UserDomainBlock.domain).where(UserDomainBlock.user_id == user.id)
    hidden = sa.union(
        sa.select(AccountBlock.blocked_id).where(AccountBlock.user_id == user.id),
        accounts_on(domains),
        site_blocked_accounts(),
    ).subquery()
    return sa.select(hidden.c[0])


def not_hidden_from(
    user: User, account_id: so.InstrumentedAttribute[int]
) -> sa.ColumnElement[bool]:
    """A filter: `account_id` is not one of the accounts hidden from `user`. No filter at all
    when nothing is hidden from them (most users block no one, and the filter's subqueries
    cost every page that lists posts or people more than its own query)."""
    if not hides_anyone(user):
        return sa.true()
    return account_id.not_in(blocked_by(user))


# Built once: whether the user blocks any account or domain, or the site any domain.
_ANY_BLOCK = sa.select(
    sa.or_(
        sa.exists().where(AccountBlock.user_id == sa.bindparam("user_id")),
        sa.exists().where(UserDomainBlock.user_id == sa.bindparam("user_id")),
        sa.exists().where(DomainBlock.domain.is_not(None)),
    )
)


def hides_anyone(user: User) -> bool:
    """Whether any account may be hidden from `user`; asked once per request."""
    if not has_request_context():
        return bool(db.session.scalar(_ANY_BLOCK, {"user_id": user.id}))
    known = g.setdefault("hides_anyone", {})
    if user.id not in known:
        known[user.id] = bool(db.session.scalar(_ANY_BLOCK, {"user_id": user.id}))
    return known[user.id]


def changed() -> None:
    """Blocks were made or lifted in this request: `hides_anyone` asks again."""
    if has_request_context():
        g.pop("hides_anyone", None)


def hidden_from(user: User, other: User) -> bool:
    """Whether `other` is one of the accounts hidden from `user` (`blocked_by`)."""
    if not hides_anyone(user):
        return False
    hidden = blocked_by(user).subquery()
    return db.session.scalar(sa.select(hidden.c[0]).where(hidden.c[0] == other.id)) is not None


def blocks(user_id: int, other_id: int) -> bool:
    """Whether `user_id` blocks `other_id`."""
    query = sa.select(AccountBlock.user_id).where(
        AccountBlock.user_id == user_id, AccountBlock.blocked_id == other_id
    )
    return db.session.scalar(query) is not None


def either_blocks(one_id: int, other_id: int) -> bool:
    """Whether either account blocks the other: then neither may follow or write to the
    other."""
    pair = sa.or_(
        sa.and_(AccountBlock.user_id == one_id, AccountBlock.blocked_id == other_id),
        sa.and_(AccountBlock.user_id == other_id, AccountBlock.blocked_id == one_id),
    )
    return db.session.scalar(sa.select(AccountBlock.user_id).where(pair).limit(1)) is not None


def blocked_accounts(user: User) -> sa.Select:
    """The ids of the accounts `user` blocks, newest block first (for the settings page)."""
    return (
        sa.select(AccountBlock.blocked_id)
        .where(AccountBlock.user_id == user.id)
        .order_by(AccountBlock.created_at.desc())
    )


def blocked_domains(user: User) -> list[str]:
    """The domains `user` blocks, by name."""
    query = sa.select(UserDomainBlock.domain).where(UserDomainBlock.user_id == user.id)
    return list(db.session.scalars(query.order_by(UserDomainBlock.domain)))


def site_blocked_domains() -> sa.Select:
    """The domains blocked for the whole site, by name (for /admin)."""
    return sa.select(DomainBlock).order_by(DomainBlock.domain)
