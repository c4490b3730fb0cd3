"""What the page script and monitors poll: notifications, /healthz, /readyz."""

import json
import logging
import secrets
from collections.abc import Callable

import sqlalchemy as sa
from flask import Blueprint, Response, jsonify, request, session
from flask.typing import ResponseReturnValue
from flask_login import current_user

import deliveries
import inbound
from database import MAX_ROW_ID, db
from models import User
from notifications import Notification
from web import login_manager
from worker import huey, live_consumers, seconds_since_last_heartbeat

log = logging.getLogger("microblog")

bp = Blueprint("health", __name__)

# Deliveries due, or received activities not applied, for longer than this mean the workers
# are behind: /readyz says so.
DELIVERY_BACKLOG_SECONDS = 3600
INBOX_BACKLOG_SECONDS = 3600


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


@bp.route("/notifications")
def notifications() -> ResponseReturnValue:
    """JSON notifications newer than `since` (a Unix time); read-only, cheap to poll.

    Every open page polls this, so it takes the user id Flask-Login keeps in the signed
    session instead of loading the User row, and reads with one indexed query.
    """
    session_id = session.get("_user_id")
    if session_id is None:
        # No session yet (say, only a "remember me" cookie): let Flask-Login decide.
        if not current_user.is_authenticated:
            return login_manager().unauthorized()
        session_id = current_user.get_id()
    since = request.args.get("since", 0.0, type=float) or 0.0
    payload = notifications_payload(str(session_id), since)
    if payload is None:  # signed out everywhere since this session began
        session.clear()
        return login_manager().unauthorized()
    return jsonify(payload)


@bp.route("/healthz")
def healthz() -> Response:
    """200 while this web process answers; it checks nothing else."""
    return jsonify(status="ok")


@bp.route("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database and the queue answer and a worker reported in recently; else
    503. `checks` says "ok" or what is wrong for each part; `missing` names the parts not
    ready."""
    checks = {"database": database_check(), "queue": queue_check()}
    # The heartbeats are kept in the database: with it down, nobody can tell.
    database_up = checks["database"] == "ok"
    down = "unknown: the database is down"
    checks["worker"] = worker_check() if database_up else down
    checks["deliveries"] = deliveries_check() if database_up else down
    checks["inbox"] = inbox_check() if database_up else down
    missing = [part for part, result in checks.items() if result != "ok"]
    body = {"status": "unavailable" if missing else "ok", "missing": missing, "checks": checks}
    return jsonify(body), 503 if missing else 200


def database_check() -> str:
    try:
        db.session.execute(sa.text("SELECT 1"))
    except Exception as exc:
        log.warning("Readiness: the database does not answer: %s", exc)
        db.session.rollback()
        return "the database does not answer"
    return "ok"


def queue_check() -> str:
    try:
        huey.pending_count()
    except Exception as exc:
        log.warning("Readiness: the task queue does not answer: %s", exc)
        return "the task queue does not answer"
    return "ok"


def worker_check() -> str:
    """ "ok" while some consumer is alive; otherwise how long since one was last heard."""
    try:
        if live_consumers():
            return "ok"
        silence = seconds_since_last_heartbeat()
    except Exception:
        log.exception("Readiness: could not read the worker heartbeats")
        return "the worker heartbeats cannot be read"
    if silence is None:  # none ever, or the last one stopped cleanly
        return "no worker is running"
    return f"no worker has reported in for {silence:.0f} s"


def deliveries_check() -> str:
    """ "ok" unless deliveries to other servers have been due for over an hour."""
    problem_of = deliveries.backlog_problem
    return _backlog_check(problem_of, DELIVERY_BACKLOG_SECONDS, "the delivery queue")


def inbox_check() -> str:
    """ "ok" unless activities other servers sent have waited over an hour to be applied."""
    problem_of = inbound.backlog_problem
    return _backlog_check(problem_of, INBOX_BACKLOG_SECONDS, "the received activities")


def _backlog_check(problem_of: Callable[[float], str | None], seconds: float, what: str) -> str:
    """ "ok", or what `problem_of(seconds)` says is late, or that `what` cannot be read."""
    try:
        problem = problem_of(seconds)
    except Exception:
        log.exception("Readiness: could not read %s", what)
        db.session.rollback()
        return f"{what} cannot be read"
    return problem or "ok"
