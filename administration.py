"""Running the site's accounts: disabling and enabling them, making admins, and the rule
that someone can always run the site. /admin, the command line, the API and the account's
own settings all come here."""

import sqlalchemy as sa

from database import db, execute_dml
from i18n import N_
from models import User

# Refused to whoever would disable, demote or delete the one admin left who can sign in.
LAST_ADMIN = N_("That is the last enabled admin: make another account an admin first.")


def disable(user: User) -> None:
    """Lock the account: no sign-in, and its sessions and API tokens stop working now.

    The posts, follows and messages stay (the caller commits).
    """
    user.disabled = True
    user.end_all_sessions()


def enable(user: User) -> None:
    """Let a disabled account sign in again (the caller commits)."""
    user.disabled = False


def make_admin(user: User, flag: bool = True) -> None:
    """Give (or take away) access to /admin (the caller commits)."""
    user.is_admin = flag


def refuse_admin_change(user: User, actor: User) -> str | None:
    """Why `actor` may not disable, demote or delete `user` from /admin, or None.

    An admin cannot lock themselves out (there might be no other admin to let them back
    in), nor take away the last enabled admin (`refuse_leaving_no_admin`).
    """
    if actor.id == user.id:
        return N_("You cannot disable, demote or delete your own account here.")
    return refuse_leaving_no_admin(user)


def refuse_leaving_no_admin(user: User) -> str | None:
    """LAST_ADMIN when `user` is the only admin that is not disabled, else None: the one
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
    return LAST_ADMIN if admins == [user.id] else None
