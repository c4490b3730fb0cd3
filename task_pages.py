"""Background task pages: export and import, the task history, banners, downloads."""

from collections.abc import Sequence
from typing import Any

from flask import (
    Blueprint,
    abort,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required
from werkzeug.wrappers import Response

from database import db
from exporting import send_export, start_export
from forms import EmptyForm, ImportForm
from importing import start_import
from jobs import Task, TaskStatus
from page_frame import frame_state
from user_tasks import task_history, tasks_in_progress
from web import form_page, is_safe_next, list_page, safe_referrer
from worker import huey, live_consumers

bp = Blueprint("task_pages", __name__)


@bp.app_context_processor
def inject_task_banners() -> dict[str, Any]:
    """The banners for the user's active and just-finished tasks, on every page."""
    # Templates are also rendered outside requests (emails, in the worker): no user there.
    if not has_request_context() or not current_user.is_authenticated:
        return {}
    tasks = tasks_in_progress(current_user) if frame_state(current_user).has_task_banners else []
    return {"task_banners": tasks, **worker_state(tasks)}


def worker_state(tasks: Sequence[Task]) -> dict[str, Any]:
    """What the banners of `tasks` say about the workers: `worker_missing` (a task waits in
    the queue and no consumer is alive) and `live_consumer_ids` (a running task whose
    consumer is not among them waits for the worker to restart). Asked only when a task is
    active."""
    if not any(task.is_active for task in tasks):
        return {"worker_missing": False, "live_consumer_ids": set()}
    live = {consumer.id for consumer in live_consumers()}
    waiting = any(task.status == TaskStatus.QUEUED for task in tasks)
    return {"worker_missing": waiting and not live, "live_consumer_ids": live}


@bp.route("/export_posts", methods=["POST"], endpoint="export_posts")
@login_required
def export_posts_view() -> Response:
    task = start_export(current_user)
    if task is None:
        flash(_("An export of your posts is already in progress."), "warning")
    elif task.status == TaskStatus.FAILED:
        flash(_("The export could not be started: %(reason)s", reason=task.status_text), "danger")
    return redirect(url_for("people.user", username=current_user.username))


@bp.route("/import", methods=["GET", "POST"], endpoint="import_posts")
@login_required
def import_posts_view() -> ResponseReturnValue:
    """Upload an archive; the worker imports it, with its progress in the task banner."""
    form = ImportForm()
    if not form.validate_on_submit():
        return form_page(form, _("Import posts"), template="import.html")
    task = start_import(current_user, form.file.data)
    if task is None:
        flash(_("An import of your posts is already in progress."), "warning")
    elif task.status == TaskStatus.FAILED:
        flash(_("The import could not be started: %(reason)s", reason=task.status_text), "danger")
    else:
        flash(_("Your file is uploaded; the import runs in the background."), "info")
    return redirect(url_for("people.user", username=current_user.username))


@bp.route("/tasks")
@login_required
def tasks() -> str:
    return list_page(
        "tasks.html",
        task_history(current_user),
        "task_pages.tasks",
        "tasks",
        title=_("Your tasks"),
        form=EmptyForm(),
    )


def own_task(task_id: str) -> Task:
    """The current user's task with that id; anyone else's (or none) is a 404."""
    if not current_user.is_authenticated:
        abort(404)
    return db.first_or_404(Task.owned_by(current_user.id, task_id))


@bp.route("/tasks/<task_id>/banner")
@login_required
def task_banner(task_id: str) -> str:
    """One task's banner, rendered here only: the page script swaps it in as the task moves."""
    task = own_task(task_id)
    if not task.shows_banner:
        return ""
    next_url = request.args.get("next")
    return render_template(
        "_task_banner.html",
        task=task,
        next_url=next_url if is_safe_next(next_url) else None,
        **worker_state([task]),
    )


@bp.route("/exports/<task_id>")
def download_export(task_id: str) -> Response:
    download = send_export(own_task(task_id))
    if download is None:
        abort(404)
    return download


@bp.route("/tasks/<task_id>/cancel", methods=["POST"])
@login_required
def cancel_task(task_id: str) -> Response:
    task = own_task(task_id)
    # The task's banner and its row say what became of it ("Cancelled.", "Cancelling…"):
    # a flash would say it a second time, in other words. Only a cancel that came too late,
    # whose task has no banner left to say so, gets one.
    if task.cancel(huey) is None and not task.shows_banner:
        flash(_("%(task)s: already finished.", task=task.description_text), "warning")
    return redirect(safe_referrer())


@bp.route("/tasks/<task_id>/dismiss", methods=["POST"])
@login_required
def dismiss_task(task_id: str) -> Response:
    task = own_task(task_id)
    if task.dismiss():
        db.session.commit()
    else:
        flash(_("A task still in progress cannot be dismissed; cancel it first."), "warning")
    return redirect(safe_referrer())
