"""Outgoing email through Flask-Mail; logged instead of sent when no MAIL_SERVER is set."""

import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_mail import Mail, Message

from account_links import email_change_token, reset_password_token
from i18n import mail_language
from models import User

mail = Mail()
log = logging.getLogger("microblog.mail")


def mail_configured() -> bool:
    return bool(current_app.config.get("MAIL_SERVER"))


def send_email(
    subject: str,
    recipients: Iterable[str],
    text_body: str,
    html_body: str,
    attachments: Iterable[tuple[str, str, bytes]] = (),
) -> bool:
    """Send one message synchronously; return False when mail is not configured.

    `attachments` holds (filename, content_type, data) tuples. SMTP errors propagate
    so that a caller (a Huey task) can retry.
    """
    if not mail_configured():
        log.info("Mail not configured; not sending %r to %s", subject, recipients)
        return False
    message = Message(subject, recipients=list(recipients), body=text_body, html=html_body)
    for filename, content_type, data in attachments:
        message.attach(filename, content_type, data)
    mail.send(message)
    return True


def site_link(endpoint: str, **values: Any) -> str:
    """An absolute link for a mail: built from SITE_URL, never from a request's Host header
    (which anyone can forge), and so the same in the web process and in the worker."""
    parts = urlsplit(current_app.config["SITE_URL"])
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "http"
    )
    return adapter.build(endpoint, values, force_external=True)


def send_templated(subject: str, recipient: str, template: str, **context: object) -> bool:
    """Send `email/<template>.txt` and `.html`, rendered with `context`, to one address."""
    return send_email(
        f"[Microblog] {subject}",
        [recipient],
        render_template(f"email/{template}.txt", **context),
        render_template(f"email/{template}.html", **context),
    )


def send_password_reset_email(user: User) -> bool:
    link = site_link("accounts.reset_password", token=reset_password_token(user))
    with force_locale(mail_language(user)):
        subject = _("Reset your password")
        return send_templated(subject, user.email or "", "reset_password", user=user, link=link)


def send_email_change_emails(user: User, new_email: str) -> bool:
    """The confirmation link to the new address, and a notice to the current one."""
    token = email_change_token(user, new_email)
    link = site_link("accounts.confirm_email", token=token)
    context = {"user": user, "new_email": new_email, "link": link}
    settings = site_link("accounts.settings")
    with force_locale(mail_language(user)):
        subject = _("Confirm your new email address")
        sent = send_templated(subject, new_email, "confirm_email", **context)
        send_templated(
            _("Your email address is being changed"),
            user.email or "",
            "email_change_notice",
            settings_link=settings,
            **context,
        )
    return sent
