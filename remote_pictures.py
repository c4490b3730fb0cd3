"""Pictures of remote accounts. The worker fetches the picture a remote actor names (its
`icon`), checks and resizes it exactly as an upload, and the site serves it from here: no
reader's browser ever asks another server for anything.

Whenever a remote actor's icon URL is stored or changes, the picture is fetched once the
change is committed (in whichever process stored it); a picture that could not be fetched
is tried again after RETRY_AFTER, by the periodic sweep, which also catches up with any
fetch that was never queued."""

import logging
from datetime import datetime, timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app
from huey import crontab

import fedfetch
from actors import RemoteActor
from avatar_store import write_avatar
from avatars import AvatarError
from commit_hooks import after_commit
from database import Model, db, utcnow
from models import URL_MAX, User
from task_support import avatars_dir
from worker import app_context, huey

log = logging.getLogger("huey.microblog")

# A failed picture (the server was down, the file was no picture) is asked for again after this.
RETRY_AFTER = timedelta(days=1)
# Pictures the periodic sweep fetches at most per run.
SWEEP_BATCH = 20
# Why a fetch failed, as kept (an exception's text can be long).
ERROR_MAX = 200


class RemotePicture(Model):
    """Which icon URL a remote account's picture here was made from (or failed to be)."""

    __tablename__ = "remote_picture"

    user_id: so.Mapped[int] = so.mapped_column(
        sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True
    )
    source_url: so.Mapped[str] = so.mapped_column(sa.String(URL_MAX))
    fetched_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # None when the picture was made; else why not (it is tried again after RETRY_AFTER).
    error: so.Mapped[str | None] = so.mapped_column(sa.String(ERROR_MAX))


# --- the fetch ------------------------------------------------------------------------------


def refresh(user_id: int) -> str:
    """Make (or drop) the picture of remote account `user_id` from its actor's icon; what
    happened, in a word. Network errors and refused files are recorded, not raised."""
    user = db.session.get(User, user_id)
    remote = db.session.get(RemoteActor, user_id)
    if user is None or remote is None:
        return "gone"
    url, done = remote.icon_url, db.session.get(RemotePicture, user_id)
    if not url:
        drop_picture(user)
        return "no picture"
    if done is not None and done.source_url == url and done.error is None:
        return "unchanged"
    db.session.commit()  # no transaction held open while another server answers
    try:
        limit = current_app.config["MICROBLOG_AVATAR_MAX_BYTES"]
        write_avatar(user, fedfetch.fetch_bytes(url, max_bytes=limit))
    except (fedfetch.FetchError, AvatarError) as exc:
        log.warning("Picture of %s from %s refused: %s", user.username, url, exc)
        remember(user_id, url, str(exc)[:ERROR_MAX] or type(exc).__name__)
        return "failed"
    remember(user_id, url, None)
    return "made"


def remember(user_id: int, url: str, error: str | None) -> None:
    """Record what the picture of `user_id` was made from (or why it was not); commits."""
    row = db.session.get(RemotePicture, user_id) or RemotePicture(user_id=user_id)
    row.source_url, row.error, row.fetched_at = url, error, utcnow()
    db.session.add(row)
    db.session.commit()


def drop_picture(user: User) -> None:
    """The account has no picture any more: its files go, the generated one shows."""
    for name in user.avatar_files():
        (avatars_dir() / name).unlink(missing_ok=True)
    user.avatar_version = None
    db.session.execute(sa.delete(RemotePicture).where(RemotePicture.user_id == user.id))
    db.session.commit()


@huey.task(name="fetch_remote_picture")
def fetch_remote_picture(user_id: int) -> str:
    """Fetch, check and store the picture of one remote account."""
    with app_context():
        outcome = refresh(user_id)
        log.info("Picture of remote account %s: %s", user_id, outcome)
        return outcome


def waiting(limit: int) -> list[int]:
    """Remote accounts whose picture is missing, out of date, or failed long enough ago."""
    done = so.aliased(RemotePicture)
    query = (
        sa.select(RemoteActor.user_id)
        .outerjoin(done, done.user_id == RemoteActor.user_id)
        .where(
            RemoteActor.icon_url.is_not(None),
            sa.or_(
                done.user_id.is_(None),
                done.source_url != RemoteActor.icon_url,
                sa.and_(done.error.is_not(None), done.fetched_at < utcnow() - RETRY_AFTER),
            ),
        )
        .limit(limit)
    )
    return list(db.session.scalars(query))


@huey.periodic_task(crontab(minute="*/10"), name="fetch_waiting_remote_pictures")
def fetch_waiting_remote_pictures() -> int:
    """Catch up: fetch the pictures that no queued fetch made (a few per run)."""
    with app_context():
        for user_id in waiting(SWEEP_BATCH):
            refresh(user_id)
        return 0


# --- when an icon changes -------------------------------------------------------------------


@sa.event.listens_for(RemoteActor, "after_insert")
@sa.event.listens_for(RemoteActor, "after_update")
def icon_stored(_mapper: object, _connection: object, remote: RemoteActor) -> None:
    """An actor's icon URL is new: fetch its picture once that is committed."""
    session = so.object_session(remote)
    if session is not None and sa.inspect(remote).attrs.icon_url.history.has_changes():
        after_commit(fetch_remote_picture, remote.user_id, session=session)
