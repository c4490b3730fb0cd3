"""Private messages: writing, the inbox, sent messages, marking read."""

from datetime import datetime

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user, login_required

import blocks
import fedfetch
from database import db
from forms import MarkReadForm, MessageForm
from mailboxes import Mailbox
from models import Message, User
from web import (
    error_page,
    form_page,
    int_arg,
    list_page,
    page_links,
    paginate,
    redirect_with,
    wants_json,
)

bp = Blueprint("messages", __name__)


def _message_recipient(username: str) -> User | Response:
    """The user to write to, or an error page saying why not (4xx)."""
    recipient = User.by_username(username)
    if recipient is None and current_app.config["FEDERATION"] and "@" in username:
        try:  # an account on another server, not known here yet
            recipient = fedfetch.remote_account(username)
        except fedfetch.FetchError:
            recipient = None
    if recipient is None:
        return error_page(404, _("There is no user called %(username)s.", username=username))
    if recipient.id == current_user.id:
        return error_page(400, _("You cannot send a private message to yourself."))
    if blocks.either_blocks(current_user.id, recipient.id):
        return error_page(
            403, _("You cannot send private messages to %(username)s.", username=username)
        )
    return recipient


@bp.route("/send_message/<username>", methods=["GET", "POST"])
@login_required
def send_message(username: str) -> ResponseReturnValue:
    recipient = _message_recipient(username)
    if not isinstance(recipient, User):  # the error page
        return recipient
    form = MessageForm()
    if form.validate_on_submit():
        Mailbox(current_user).send(recipient, form.message.data)
        db.session.commit()
        return redirect_with(
            "success",
            _("Your message to %(username)s has been sent.", username=recipient.username),
            "people.user",
            username=recipient.username,
        )
    # Replying: the message answered is shown above the form (only one sent to this user).
    reply_to = int_arg("reply_to", 0)  # ids start at 1: 0 answers nothing
    answered = db.session.scalar(Mailbox(current_user).received_one(reply_to)) if reply_to else None
    heading = _("Send a private message to %(username)s", username=recipient.username)
    return form_page(
        form, _("Send message"), heading=heading, template="send_message.html", answered=answered
    )


@bp.route("/messages")
@login_required
def messages() -> str:
    """The messages sent to the current user, newest first. Only reads: the page marks them
    read with a POST (a link from another site must not clear the badge)."""
    page = paginate(Mailbox(current_user).received())
    newer, older = page_links(page, "messages.messages")
    newest = max((message.timestamp for message in page), default=None)
    # To the microsecond: the newest message itself must count as read.
    form = MarkReadForm(up_to=newest.isoformat() + "Z" if newest else "")
    return render_template(
        "messages.html",
        title=_("Messages"),
        messages=page,
        newer_url=newer,
        older_url=older,
        form=form,
    )


@bp.route("/messages/read", methods=["POST"])
@login_required
def mark_messages_read() -> ResponseReturnValue:
    """Messages up to the newest one the page showed are read (the page script posts this)."""
    form = MarkReadForm()
    if not form.validate_on_submit():
        return error_page(400)
    Mailbox(current_user).mark_read(parse_utc(form.up_to.data))
    db.session.commit()
    if wants_json():
        return jsonify({"unread": Mailbox(current_user).unread_count()})
    return redirect(url_for("messages.messages"))


def parse_utc(text: str | None) -> datetime | None:
    """`2024-05-01T12:00:00.123456Z` → a naive UTC datetime; None when missing or malformed."""
    try:
        return datetime.fromisoformat((text or "").replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


@bp.route("/messages/sent")
@login_required
def sent_messages() -> str:
    """The messages the current user sent, newest first."""
    query = Mailbox(current_user).sent()
    return list_page(
        "messages.html",
        query,
        "messages.sent_messages",
        "messages",
        title=_("Sent messages"),
        sent=True,
    )


@bp.route("/messages/newer")
@login_required
def newer_messages() -> str:
    """Messages received after message `after` (HTML fragments, newest first), for an open
    /messages page. Only reads: the page marks them read once it has shown them."""
    after = int_arg("after", 0)
    query = Mailbox(current_user).received().where(Message.id > after)
    found = db.session.scalars(query.limit(current_app.config["POSTS_PER_PAGE"])).all()
    return render_template("_messages.html", messages=found)
