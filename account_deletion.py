"""Deleting an account with everything in it: a task, since an account may hold millions of
posts, with the database's part and the files'."""

import sqlalchemy as sa
from flask import current_app
from huey.api import Task as HueyTask

import administration
import federation_out
from database import db, execute_dml
from i18n import N_, nphrase, store_phrases
from jobs import Task
from models import Post, User
from task_support import avatars_dir, exports_dir, log, running_task, upload_path
from user_tasks import launch_task
from worker import Progress, app_context, huey, tracked


def delete_some_posts(user: User, limit: int) -> int:
    """Delete up to `limit` of the user's posts, so that deleting an account holds the
    write lock a short while at a time; how many went (the caller commits)."""
    some = sa.select(Post.id).where(Post.user_id == user.id).limit(limit).scalar_subquery()
    statement = sa.delete(Post).where(Post.id.in_(some))
    return execute_dml(statement.execution_options(synchronize_session=False)).rowcount


def _task_ids(user: User) -> list[str]:
    """The ids of all the user's tasks (the files of some are named by them)."""
    return list(db.session.scalars(sa.select(Task.id).where(Task.user_id == user.id)))


def _delete_rows(user: User) -> list[str]:
    """Delete the user and, through the foreign keys' ON DELETE CASCADE, their posts,
    messages, follows, notifications, tasks and tokens. Returns the names of their export
    files, for the caller to remove once the deletion is committed."""
    files = db.session.scalars(
        sa.select(Task.result_file).where(Task.user_id == user.id, Task.result_file.is_not(None))
    ).all()
    db.session.delete(user)
    db.session.flush()
    return [name for name in files if name]


def delete_user(user: User, progress: "Progress | None" = None) -> int:
    """Delete an account with everything in it, then its files (commits as it goes); the
    number of posts deleted. The one way an account is deleted: the `delete_account` task,
    `flask user delete` and /admin all come here.

    Posts go first, a batch per transaction with `progress`, so that other writers wait for
    a moment at most; then the user row, whose foreign keys take the messages, follows,
    notifications, tasks and tokens with it. Run again after a crash, it carries on.
    """
    # Locked first, in the transaction of the caller's checks: the account can do nothing
    # more, and an admin being deleted no longer counts as one while the posts go.
    administration.disable(user)
    db.session.commit()
    federation_out.account_deleted(user)
    done = 0
    while deleted := delete_some_posts(user, current_app.config["MICROBLOG_EXPORT_BATCH_SIZE"]):
        db.session.commit()
        done += deleted
        if progress:
            progress.update(done)
    task_ids, pictures = _task_ids(user), user.avatar_files()
    files = _delete_rows(user)
    db.session.commit()
    for name in files:
        (exports_dir() / name).unlink(missing_ok=True)
    for task_id in task_ids:
        upload_path(task_id).unlink(missing_ok=True)
    for name in pictures:
        (avatars_dir() / name).unlink(missing_ok=True)
    return done


@tracked
@huey.task(context=True, name="delete_account")
def delete_account(user_id: int, task: HueyTask = None) -> int:
    """Delete a (disabled) account and everything in it; the number of posts deleted. Its
    own Task row goes with the account at the end."""
    with app_context():
        subjects = running_task(task.id, user_id)
        if subjects is None:
            return 0
        row, user = subjects
        total = user.posts_count()
        progress = Progress(row.id, total + 1, row.progress)
        deleting = nphrase(
            "Deleting the account and its %(num)s post…",
            "Deleting the account and its %(num)s posts…",
            total,
        )
        progress.write(row.progress, store_phrases(deleting))
        deleted = delete_user(user, progress)
        log.info("Task %s: deleted user %s and %d posts", task.id, user_id, deleted)
        return deleted


def start_account_deletion(user: User) -> Task | None:
    """Lock the account (no sign-in, every session and token ended) and launch the task
    that deletes it; None when a deletion is already under way."""
    administration.disable(user)
    db.session.commit()
    return launch_task(user, delete_account, N_("Deleting your account"))
