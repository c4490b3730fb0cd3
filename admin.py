"""The admin area under /admin: accounts, and a dashboard of the background jobs.

Only admins see it; for everyone else, visitors included, every URL here is a 404, exactly
as if the area did not exist. Each change is a POST carrying the CSRF token.
"""

import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from werkzeug.wrappers import Response
from wtforms import BooleanField

import administration
import inbound
import tasks
import worker
from account_deletion import delete_user as delete_account
from database import db
from forms import EmptyForm, RegistrationForm
from jobs import Task, TaskStatus, count_by_status, recent_failures
from models import User
from web import form_page, list_page

bp = Blueprint("admin", __name__, url_prefix="/admin")

# A consumer silent for longer than this is dropped from the dashboard (it was stopped).
FORGET_CONSUMER_SECONDS = 24 * 3600


@bp.before_request
def admins_only() -> None:
    if not current_user.is_authenticated or not current_user.is_admin:
        abort(404)


# --- accounts -------------------------------------------------------------------------------


class NewAccountForm(RegistrationForm):
    """Registration's form and rules, plus the role."""

    is_admin = BooleanField(_l("Administrator"))


@bp.route("/")
def users() -> str:
    """Every account, searchable by username or e-mail, a page at a time."""
    query = request.args.get("q", "")
    return list_page(
        "admin/users.html",
        User.search(query),
        "admin.users",
        "users",
        url_args={"q": query},
        title=_("Admin: users"),
        query=query,
        form=EmptyForm(),
    )


@bp.route("/users/new", methods=["GET", "POST"])
def new_user() -> ResponseReturnValue:
    """Create an account (also while registration is closed)."""
    form = NewAccountForm()
    if form.validate_on_submit():
        user = User.register(form.username.data, form.email.data, form.password.data)
        administration.make_admin(user, form.is_admin.data)
        db.session.commit()
        flash(_("Created the account %(username)s.", username=user.username), "success")
        return redirect(url_for("admin.users", q=user.username))
    return form_page(form, _("Admin: new account"), heading=_("Create an account"))


# What each button does to an account, and what the page then says.
CHANGES: dict[str, tuple[Callable[[User], None], Any]] = {
    "disable": (
        administration.disable,
        _l("%(username)s is disabled: signed out everywhere, and cannot sign in."),
    ),
    "enable": (administration.enable, _l("%(username)s can sign in again.")),
    "make-admin": (administration.make_admin, _l("%(username)s is now an admin.")),
    "remove-admin": (
        lambda user: administration.make_admin(user, False),
        _l("%(username)s is no longer an admin."),
    ),
}


@bp.route("/users/<row_id:user_id>/<any(disable, enable, 'make-admin', 'remove-admin'):change>",
          methods=["POST"])  # fmt: skip
def change_user(user_id: int, change: str) -> Response:
    user = db.first_or_404(sa.select(User).where(User.id == user_id))
    refusal = administration.refuse_admin_change(user, current_user)
    if refusal:
        flash(_(refusal), "warning")
    else:
        apply, message = CHANGES[change]
        apply(user)
        db.session.commit()
        flash(str(message) % {"username": user.username}, "success")
    return redirect(back_to_users())


@bp.route("/users/<row_id:user_id>/delete", methods=["GET", "POST"])
def delete_user(user_id: int) -> ResponseReturnValue:
    """GET asks for confirmation; POST deletes the account and everything in it."""
    user = db.first_or_404(sa.select(User).where(User.id == user_id))
    refusal = administration.refuse_admin_change(user, current_user)
    if refusal:
        flash(_(refusal), "warning")
        return redirect(back_to_users())
    form = EmptyForm()
    if form.validate_on_submit():
        name = user.username
        delete_account(user)
        flash(_("Deleted %(username)s and everything they wrote.", username=name), "success")
        return redirect(back_to_users())
    return render_template(
        "admin/delete_user.html", title=_("Admin: delete account"), user=user, form=form
    )


def back_to_users() -> str:
    """The users page the button was on (its search), else the first."""
    return url_for("admin.users", q=request.args.get("q") or None)


# --- the jobs dashboard ---------------------------------------------------------------------


@bp.route("/jobs")
def jobs() -> str:
    return render_template("admin/jobs.html", title=_("Admin: jobs"), **dashboard())


@bp.route("/jobs/status")
def jobs_status() -> str:
    """The dashboard's body alone: the page's script swaps it in every few seconds."""
    return render_template("admin/_jobs.html", **dashboard())


def dashboard() -> dict[str, Any]:
    """What /admin/jobs shows: the queue, the consumers, task counts and recent failures."""
    try:
        depth, beats, queue_error = worker.huey.pending_count(), worker.consumer_heartbeats(), None
    except Exception as exc:  # the page still shows what the database knows
        current_app.logger.exception("Could not read the task queue")
        depth, beats, queue_error = None, {}, str(exc)
    now = time.time()
    silent = current_app.config["MICROBLOG_CONSUMER_SILENT_SECONDS"]
    consumers = [
        {
            "name": name,
            "silent_for": now - beat,
            "alive": now - beat < silent,
        }
        for name, beat in sorted(beats.items(), key=lambda item: -item[1])
        if now - beat < FORGET_CONSUMER_SECONDS
    ]
    return {
        "queue_depth": depth,
        "queue_error": queue_error,
        "consumers": consumers,
        "counts": count_by_status(),
        "federation": inbound.federation_numbers(),
        "failures": recent_failures(),
        "restartable": tasks.RETRYABLE_TASKS,
        "form": EmptyForm(),
    }


@bp.route("/jobs/<task_id>/retry", methods=["POST"])
def retry_task(task_id: str) -> Response:
    """Start a failed task again, as a new task for the same user."""
    task = db.first_or_404(sa.select(Task).where(Task.id == task_id))
    if task.name not in tasks.RETRYABLE_TASKS or task.status != TaskStatus.FAILED:
        flash(_("Only a failed task of a kind users start can be retried."), "warning")
        return redirect(url_for("admin.jobs"))
    try:
        again = tasks.retry(task)
    except tasks.UploadGone:
        flash(
            _(
                "The file uploaded for this task is no longer kept (a failed import keeps it "
                "for %(days)s days, until another import of the same user fails): "
                "%(username)s needs to upload it again.",
                days=f"{current_app.config['MICROBLOG_EXPORT_EXPIRY_DAYS']:g}",
                username=task.user.username,
            ),
            "warning",
        )
        return redirect(url_for("admin.jobs"))
    if again is None:
        flash(
            _("%(username)s already has this task in progress.", username=task.user.username),
            "warning",
        )
    elif again.status == TaskStatus.FAILED:
        flash(_("The task could not be started: %(reason)s", reason=again.status_text), "danger")
    else:
        flash(
            _(
                "%(task)s: started again for %(username)s.",
                task=task.description_text,
                username=task.user.username,
            ),
            "success",
        )
    return redirect(url_for("admin.jobs"))
