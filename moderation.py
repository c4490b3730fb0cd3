"""Moderation: a user blocks an account or a whole domain (from a profile, listed in
/settings with their unblock buttons), and an admin blocks a domain for the whole site
(/admin/domains). The tables and the questions asked of them are in blocks.py."""

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response
from wtforms import StringField
from wtforms.validators import DataRequired, Length, ValidationError

import admin
import blocks
import federation_social
from blocks import DOMAIN_MAX, AccountBlock, DomainBlock, UserDomainBlock
from database import _insert_unless_conflict, db, execute_dml
from forms import EmptyForm
from mailboxes import Mailbox
from models import User, followers
from web import is_safe_next, list_page

bp = Blueprint("moderation", __name__)
admin_bp = Blueprint("moderation_admin", __name__, url_prefix="/admin/domains")
# As the rest of /admin: a 404 for anyone but an admin.
admin_bp.before_request(admin.admins_only)


class DomainForm(FlaskForm):
    """A domain to block or unblock: a host name, a URL on it, or an `@name@host` handle."""

    domain = StringField(_l("Domain"), validators=[DataRequired(), Length(max=DOMAIN_MAX)])

    def validate_domain(self, field: StringField) -> None:
        normal = blocks.normalize_domain(field.data or "")
        if normal is None:
            raise ValidationError(_l("That is not a domain name, such as example.org."))
        field.data = normal


# --- what a block does ----------------------------------------------------------------------


def remove_follows(user: User, others: sa.Select) -> None:
    """`user` no longer follows any of `others` (ids), nor do they follow `user`."""
    execute_dml(
        sa.delete(followers).where(
            sa.or_(
                sa.and_(followers.c.follower_id == user.id, followers.c.followed_id.in_(others)),
                sa.and_(followers.c.followed_id == user.id, followers.c.follower_id.in_(others)),
            )
        )
    )


def refresh_unread_count(user: User) -> None:
    """The unread badge leaves out (or counts again) the messages of blocked accounts."""
    blocks.changed()
    Mailbox(user).announce_unread()


def block_account(user: User, other: User) -> bool:
    """`user` blocks `other`: the follows between them end, and nothing of `other` reaches
    `user` any more; False when it was blocked already (the caller commits)."""
    row = {"user_id": user.id, "blocked_id": other.id}
    added = db.session.execute(_insert_unless_conflict(AccountBlock, row)).first() is not None
    remove_follows(user, sa.select(sa.literal(other.id)))
    refresh_unread_count(user)
    federation_social.account_block_changed(user, other, blocked=True)
    return added


def unblock_account(user: User, other: User) -> bool:
    """Lift `user`'s block of `other` (follows do not come back); False when there was none."""
    statement = sa.delete(AccountBlock).where(
        AccountBlock.user_id == user.id, AccountBlock.blocked_id == other.id
    )
    removed = execute_dml(statement).rowcount > 0
    refresh_unread_count(user)
    if removed:
        federation_social.account_block_changed(user, other, blocked=False)
    return removed


def block_domain(user: User, domain: str) -> bool:
    """`user` blocks every account on `domain` (normalized); False when it was blocked
    already (the caller commits)."""
    row = {"user_id": user.id, "domain": domain}
    added = db.session.execute(_insert_unless_conflict(UserDomainBlock, row)).first() is not None
    remove_follows(user, blocks.accounts_on(sa.select(sa.literal(domain))))
    refresh_unread_count(user)
    return added


def unblock_domain(user: User, domain: str) -> bool:
    statement = sa.delete(UserDomainBlock).where(
        UserDomainBlock.user_id == user.id, UserDomainBlock.domain == domain
    )
    removed = execute_dml(statement).rowcount > 0
    refresh_unread_count(user)
    return removed


def block_site_domain(domain: str, admin: User) -> bool:
    """Block `domain` for the whole site; False when it was blocked already."""
    row = {"domain": domain, "created_by_id": admin.id}
    added = db.session.execute(_insert_unless_conflict(DomainBlock, row)).first() is not None
    # No follow crosses to or from the domain any more, for anyone here.
    accounts = blocks.accounts_on(sa.select(sa.literal(domain)))
    execute_dml(
        sa.delete(followers).where(
            sa.or_(followers.c.follower_id.in_(accounts), followers.c.followed_id.in_(accounts))
        )
    )
    blocks.changed()
    return added


def unblock_site_domain(domain: str) -> bool:
    statement = sa.delete(DomainBlock).where(DomainBlock.domain == domain)
    return execute_dml(statement).rowcount > 0


def accounts_blocked_by(user: User) -> sa.Select:
    """The accounts `user` blocks, the newest block first."""
    return (
        sa.select(User)
        .join(AccountBlock, AccountBlock.blocked_id == User.id)
        .where(AccountBlock.user_id == user.id)
        .order_by(AccountBlock.created_at.desc(), User.username)
    )


@bp.before_app_request
def hide_site_blocked_accounts() -> None:
    """An account on a domain blocked for the whole site has no page here, nor anything
    under its name (profile, card, lists, messages, follows): a 404, as for nobody."""
    name = str((request.view_args or {}).get("username", ""))
    if "@" in name and blocks.domain_blocked(name.rpartition("@")[2]):
        abort(404)


@bp.app_context_processor
def block_helpers() -> dict[str, Any]:
    """What the profile and settings pages ask about blocks."""
    return {
        "blocks": blocks.blocks,
        "hidden_from": blocks.hidden_from,
        "blocked_accounts": lambda user: db.session.scalars(accounts_blocked_by(user)).all(),
        "blocked_domains": blocks.blocked_domains,
        "domain_form": DomainForm,
    }


# --- a user's blocks ------------------------------------------------------------------------


def back(default: str) -> Response:
    """To the page the button was on (a local `next`), else `default`."""
    target = request.args.get("next")
    return redirect(target if is_safe_next(target) else default)


def account_change(username: str, block: bool) -> Response:
    """Block or unblock `username`, then back to their profile."""
    other = db.first_or_404(User.named(username))
    profile = url_for("people.user", username=other.username)
    if other.id == current_user.id:
        flash(_("You cannot block yourself."), "warning")
        return back(profile)
    if block:
        block_account(current_user, other)
        message = _("You blocked %(username)s: you will not see them any more.", username=username)
    else:
        unblock_account(current_user, other)
        message = _("You unblocked %(username)s.", username=username)
    db.session.commit()
    flash(message, "success" if block else "info")
    return back(profile)


@bp.route("/block/<username>", methods=["POST"])
@login_required
def block(username: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    return account_change(username, block=True)


@bp.route("/unblock/<username>", methods=["POST"])
@login_required
def unblock(username: str) -> Response:
    if not EmptyForm().validate_on_submit():
        abort(400)
    return account_change(username, block=False)


def domain_change(block: bool) -> Response:
    """Block or unblock the domain the form names, then back (or say why not)."""
    settings = url_for("accounts.settings") + "#blocks"
    form = DomainForm()
    if not form.validate_on_submit():
        for error in form.domain.errors:
            flash(str(error), "danger")
        return back(settings)
    domain = form.domain.data
    if block:
        block_domain(current_user, domain)
        message = _("You blocked everyone on %(domain)s.", domain=domain)
    else:
        unblock_domain(current_user, domain)
        message = _("You unblocked %(domain)s.", domain=domain)
    db.session.commit()
    flash(message, "success" if block else "info")
    return back(settings)


@bp.route("/block_domain", methods=["POST"])
@login_required
def block_domain_view() -> Response:
    return domain_change(block=True)


@bp.route("/unblock_domain", methods=["POST"])
@login_required
def unblock_domain_view() -> Response:
    return domain_change(block=False)


# --- the site's blocks (admins) -------------------------------------------------------------


@admin_bp.route("/", methods=["GET", "POST"])
def domains() -> ResponseReturnValue:
    """The domains blocked for the whole site, and a form to block one more."""
    form = DomainForm()
    if form.validate_on_submit():
        domain = form.domain.data
        block_site_domain(domain, current_user)
        db.session.commit()
        flash(_("%(domain)s is blocked for the whole site.", domain=domain), "success")
        return redirect(url_for("moderation_admin.domains"))
    page = list_page(
        "admin/domains.html",
        blocks.site_blocked_domains(),
        "moderation_admin.domains",
        "blocked",
        title=_("Admin: blocked domains"),
        form=form,
        unblock_form=EmptyForm(),
    )
    return page, 400 if form.is_submitted() else 200


@admin_bp.route("/unblock", methods=["POST"])
def unblock_site() -> Response:
    form = DomainForm()
    if form.validate_on_submit():
        unblock_site_domain(form.domain.data)
        db.session.commit()
        flash(_("%(domain)s is no longer blocked.", domain=form.domain.data), "info")
    return redirect(url_for("moderation_admin.domains"))
