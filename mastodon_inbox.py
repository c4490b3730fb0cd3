"""The Mastodon client API, part three: what comes to a reader — notifications (follows,
mentions, and private messages as `direct` mentions), markers, conversations — and search."""

from typing import Any

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, Field

import federation_in
import fedfetch
import ratelimit
import search
from database import db, isoformat_utc
from mailboxes import Mailbox
from mastodon_api import IdPath, PageQuery, find_accounts
from mastodon_contract import (
    body_fields,
    current_user_or_none,
    id_arg,
    id_page,
    is_id,
    limit_arg,
    masto_abort,
    me,
    not_found,
    paged,
    route,
    unprocessable,
)
from mastodon_entities import (
    MESSAGE_ID_BASE,
    Conversation,
    EmptyObject,
    Notification,
    NotificationPolicy,
    NotificationPolicyV1,
    SearchResults,
    account,
    message_status,
    status,
)
from mastodon_entities import (
    Marker as MarkerEntity,
)
from mastodon_store import TIMELINES, Marker, MastoNotification, conversation_partners
from models import Message, User

# --- notifications --------------------------------------------------------------------------

TYPES = ("follow", "mention")


def notification(row: MastoNotification) -> dict:
    shown_status = None
    if row.post is not None:
        shown_status = status(row.post)
    elif row.message is not None:
        shown_status = message_status(row.message)
    return Notification(
        id=str(row.id),
        type=row.type,  # type: ignore[arg-type]
        created_at=isoformat_utc(row.created_at),
        account=account(row.from_user),
        status=shown_status,
    ).dump()


def wanted_types() -> list[str]:
    types = request.args.getlist("types[]") + request.args.getlist("types")
    excluded = request.args.getlist("exclude_types[]") + request.args.getlist("exclude_types")
    return [kind for kind in (types or TYPES) if kind not in excluded]


@route(
    "get",
    "/v1/notifications",
    "Your notifications, newest first: follows and mentions (private messages are mentions "
    "with a `direct` status)",
    Notification,
    tag="notifications",
    scope="read:notifications",
    many=True,
    paging=True,
)
def notifications(query: PageQuery) -> Response:
    user = me()
    select = MastoNotification.of(user, wanted_types() or ["none"]).options(
        so.joinedload(MastoNotification.from_user)
    )
    select = select.where(
        MastoNotification.from_user_id.in_(sa.select(User.id).where(User.disabled.is_(False)))
    )
    rows, link = id_page(select, MastoNotification.id, default=15)
    return paged([notification(row) for row in rows], link)


@route(
    "get",
    "/v1/notifications/<row_id:id>",
    "One of your notifications",
    Notification,
    tag="notifications",
    scope="read:notifications",
)
def get_notification(path: IdPath) -> dict:
    row = MastoNotification.owned(me(), path.id)
    if row is None:
        not_found()
    return notification(row)


@route(
    "post",
    "/v1/notifications/clear",
    "Dismiss all your notifications",
    EmptyObject,
    tag="notifications",
    scope="write:notifications",
)
def clear_notifications() -> dict:
    MastoNotification.clear(me())
    db.session.commit()
    return {}


@route(
    "post",
    "/v1/notifications/<row_id:id>/dismiss",
    "Dismiss one of your notifications",
    EmptyObject,
    tag="notifications",
    scope="write:notifications",
)
def dismiss_notification(path: IdPath) -> dict:
    row = MastoNotification.owned(me(), path.id)
    if row is None:
        not_found()
    db.session.delete(row)
    db.session.commit()
    return {}


# This site holds no notification back (no filtering of strangers or new accounts): the
# policy says so, and the list of held-back requests is always empty (mastodon_instance.py).


@route(
    "get",
    "/v1/notifications/policy",
    "Which notifications are held back: none (v1 wording)",
    NotificationPolicyV1,
    tag="notifications",
    scope="read:notifications",
)
def notification_policy_v1() -> dict:
    return NotificationPolicyV1().dump()


@route(
    "get",
    "/v2/notifications/policy",
    "What happens to notifications from each kind of account: all are accepted",
    NotificationPolicy,
    tag="notifications",
    scope="read:notifications",
)
def notification_policy() -> dict:
    return NotificationPolicy().dump()


# --- push ------------------------------------------------------------------------------------

PUSH_SUBSCRIPTION = {"type": "object"}  # never answered: there is no subscription to show
NO_PUSH = "This site does not send push notifications; apps can poll /api/v1/notifications"
NO_SUBSCRIPTION = {
    "get": "Your push subscription: there is none (404)",
    "post": "Subscribe to push notifications: not supported here (404)",
    "put": "Change your push subscription: there is none (404)",
}


def _no_push_view(method: str, summary: str) -> None:
    def view() -> dict:
        masto_abort(404, NO_PUSH)

    view.__name__ = f"{method}_push_subscription"
    view.__doc__ = "Always 404: this site does not send push notifications."
    declare = route(
        method, "/v1/push/subscription", summary, PUSH_SUBSCRIPTION, tag="push", scope="push"
    )
    declare(view)


for _method, _summary in NO_SUBSCRIPTION.items():
    _no_push_view(_method, _summary)


@route(
    "delete",
    "/v1/push/subscription",
    "Remove your push subscription: there is none, so this always succeeds",
    EmptyObject,
    tag="push",
    scope="push",
)
def delete_push_subscription() -> dict:
    return {}


# --- markers ---------------------------------------------------------------------------------


def markers_of(user: User, timelines: list[str]) -> dict[str, dict]:
    return {
        marker.timeline: MarkerEntity(
            last_read_id=marker.last_read_id,
            version=marker.version,
            updated_at=isoformat_utc(marker.updated_at),
        ).dump()
        for marker in Marker.of(user, timelines)
    }


MARKERS = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Marker"}}


@route(
    "get",
    "/v1/markers",
    "Where you stopped reading (`timeline[]=home`, `timeline[]=notifications`)",
    MARKERS,
    tag="markers",
    scope="read:statuses",
)
def get_markers() -> dict:
    asked = request.args.getlist("timeline[]") + request.args.getlist("timeline")
    return markers_of(me(), [name for name in asked if name in TIMELINES])


class MarkersParams(BaseModel):
    """`home[last_read_id]` and `notifications[last_read_id]` (a form), or JSON objects."""


@route(
    "post",
    "/v1/markers",
    "Save where you stopped reading",
    MARKERS,
    tag="markers",
    scope="write:statuses",
)
def save_markers(params: MarkersParams) -> dict:
    user = me()
    fields = body_fields()
    saved = []
    for timeline in TIMELINES:
        value: Any = fields.get(timeline)
        last_read = value.get("last_read_id") if isinstance(value, dict) else None
        last_read = last_read or fields.get(f"{timeline}[last_read_id]")
        if last_read is None:
            continue
        if not isinstance(last_read, str | int) or not is_id(str(last_read)):
            unprocessable(f"Validation failed: {timeline} last_read_id must be an id")
        Marker.set(user, timeline, str(last_read))
        saved.append(timeline)
    db.session.commit()
    return markers_of(user, saved)


# --- conversations ---------------------------------------------------------------------------


@route(
    "get",
    "/v1/conversations",
    "Your private messages, one conversation per account, newest first",
    Conversation,
    tag="conversations",
    scope="read:statuses",
    many=True,
    paging=True,
)
def conversations(query: PageQuery) -> Response:
    user = me()
    max_id = id_arg("max_id")
    before = max_id - MESSAGE_ID_BASE if max_id and max_id > MESSAGE_ID_BASE else None
    rows = conversation_partners(user, before, limit_arg())
    shown = []
    for other_id, newest in rows:
        other = db.session.get(User, other_id)
        message = db.session.get(Message, newest)
        if other is None or message is None:
            continue
        unread = message.recipient_id == user.id and (
            user.last_message_read_time is None or message.timestamp > user.last_message_read_time
        )
        shown.append(
            Conversation(
                id=str(other.id),
                unread=unread,
                accounts=[account(other)],
                last_status=message_status(message),
            ).dump()
        )
    response = jsonify(shown)
    if rows:
        older = url_for(
            "mastodon.conversations", max_id=MESSAGE_ID_BASE + rows[-1][1], _external=True
        )
        response.headers["Link"] = f'<{older}>; rel="next"'
    return response


@route(
    "post",
    "/v1/conversations/<row_id:id>/read",
    "Mark your private messages as read",
    Conversation,
    tag="conversations",
    scope="write:conversations",
)
def read_conversation(path: IdPath) -> dict:
    user = me()
    rows = [row for row in conversation_partners(user, None, 1000) if row[0] == path.id]
    if not rows:
        not_found()
    Mailbox(user).mark_read()
    db.session.commit()
    other = db.session.get(User, rows[0][0])
    message = db.session.get(Message, rows[0][1])
    assert other is not None and message is not None
    return Conversation(
        id=str(other.id),
        unread=False,
        accounts=[account(other)],
        last_status=message_status(message),
    ).dump()


# --- search ---------------------------------------------------------------------------------


class SearchQuery(BaseModel):
    q: str = Field(max_length=search.MAX_QUERY_LENGTH)
    type: str | None = Field(None, pattern="^(accounts|statuses|hashtags)$")
    resolve: str | None = None
    limit: str | None = Field(None, pattern=r"^[0-9]{1,6}$")
    offset: str | None = Field(None, pattern=r"^[0-9]{1,6}$")


def searched_accounts(text: str, resolve: str | None, limit: int) -> list[User]:
    """Accounts by name; with `resolve=true`, `@name@host` (or an actor URL) is looked up
    on its server, as the search page does."""
    wanted = (resolve or "").lower() in ("1", "true")
    viewer = current_user_or_none()  # an app's own token looks up nothing elsewhere
    if (
        wanted
        and viewer
        and current_app.config["FEDERATION"]
        and fedfetch.names_remote_account(text)
    ):
        # Each lookup makes this server ask another: counted per user, as the search page's.
        retry_after = ratelimit.remote_lookup(viewer.id)
        if retry_after:
            refusal = ratelimit.refusal("account lookups", retry_after)
            masto_abort(429, refusal, {"Retry-After": str(retry_after)})
        try:
            user = fedfetch.remote_account(text)
        except fedfetch.FetchError:
            return []
        federation_in.fetch_remote_profile(user.id)
        return [user]
    return find_accounts(text, limit)


@route(
    "get",
    "/v2/search",
    "Accounts by username (or `@name@host`) and statuses by their words",
    SearchResults,
    tag="search",
    scope="read:search",
    refusals=[429],
)
def search_v2(query: SearchQuery) -> dict:
    limit = limit_arg()
    offset = int(query.offset or 0)
    accounts: list = []
    statuses: list = []
    if query.type in (None, "accounts") and offset == 0:
        accounts = [account(user) for user in searched_accounts(query.q, query.resolve, limit)]
    if query.type in (None, "statuses"):
        terms = search.parse_query(query.q)
        page = offset // limit + 1 if offset % limit == 0 else 1
        if page <= search.MAX_PAGE:
            results = search.search_posts(terms, page, limit)
            statuses = [status(post) for post in results.items if not post.author.disabled]
    return SearchResults(accounts=accounts, statuses=statuses, hashtags=[]).dump()
