"""Outgoing email through Flask-Mail; logged instead of sent when no MAIL_SERVER is set."""

import logging

from flask import current_app, has_request_context, render_template, request, url_for
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


def external_url(endpoint: str, **values) -> str:
    """An absolute link for a mail: SITE_URL plus the route's path, never the request's
    Host header (which anyone can forge)."""
    path = url_for(endpoint, **values)
    root = request.script_root if has_request_context() else ""
    if root and path.startswith(root):
        path = path[len(root) :]
    return current_app.config["SITE_URL"] + path


def send_templated(subject: str, recipient: str, template: str, **context) -> bool:
    """Send `email/<template>.txt` and `.html`, rendered with `context`, to one address."""
    return send_email(
        f"[Microblog] {subject}",
        [recipient],
        render_template(f"email/{template}.txt", **context),
        render_template(f"email/{template}.html", **context),
    )


def send_password_reset_email(user) -> bool:
    link = external_url("main.reset_password", token=user.get_reset_password_token())
    return send_templated("Reset your password", user.email, "reset_password", user=user, link=link)


def send_email_change_emails(user, new_email: str) -> bool:
    """The confirmation link to the new address, and a notice to the current one."""
    token = user.get_email_change_token(new_email)
    link = external_url("main.confirm_email", token=token)
    context = {"user": user, "new_email": new_email, "link": link}
    sent = send_templated("Confirm your new email address", new_email, "confirm_email", **context)
    settings = external_url("main.settings")
    send_templated(
        "Your email address is being changed",
        user.email,
        "email_change_notice",
        settings_link=settings,
        **context,
    )
    return sent
