"""Outgoing email through Flask-Mail; logged instead of sent when no MAIL_SERVER is set."""

import logging
from urllib.parse import urlsplit

from flask import current_app, render_template
from flask_mail import Mail, Message

mail = Mail()
log = logging.getLogger("microblog.mail")


def mail_configured() -> bool:
    return bool(current_app.config.get("MAIL_SERVER"))


def send_email(subject, recipients, text_body, html_body, attachments=()) -> bool:
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


def site_link(site_url: str, endpoint: str, **values) -> str:
    """An absolute link to one of the site's pages, for an email written outside any request
    (in the worker): `site_url` is where the site is, as the request that asked for the
    email saw it. The one place emails build their links."""
    parts = urlsplit(site_url)
    adapter = current_app.url_map.bind(
        parts.netloc, script_name=parts.path or "/", url_scheme=parts.scheme or "http"
    )
    return adapter.build(endpoint, values, force_external=True)


def send_password_reset_email(user, site_url: str) -> bool:
    token = user.get_reset_password_token()
    link = site_link(site_url, "main.reset_password", token=token)
    return send_email(
        "[Microblog] Reset your password",
        [user.email],
        render_template("email/reset_password.txt", user=user, link=link),
        render_template("email/reset_password.html", user=user, link=link),
    )
