"""Mail is sent by the worker: a mail server that takes 15 s to answer holds no web request."""

import asyncio
import re
import time

import pytest

from tests.conftest import SMTPRecorder
from tests.live import Browser, free_port, wait_for

pytestmark = pytest.mark.consumer
SMTP_DELAY = 15
SITE_URL = "http://microblog.example.org"  # mailed links name the site, not the request


class SlowSMTPRecorder(SMTPRecorder):
    """Takes SMTP_DELAY seconds to accept each message."""

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(SMTP_DELAY)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def slow_smtp():
    from aiosmtpd.controller import Controller

    recorder = SlowSMTPRecorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    recorder.port = controller.port
    try:
        yield recorder
    finally:
        controller.stop()


def test_reset_form_returns_at_once_and_the_worker_delivers_the_mail(live, slow_smtp):
    site = live(MAIL_SERVER="127.0.0.1", MAIL_PORT=slow_smtp.port, SITE_URL=SITE_URL)
    site.start_web()
    site.start_consumer()
    browser = Browser(site.url)
    token = browser.csrf_token("/reset_password_request")

    started = time.monotonic()
    status, page = browser.submit(
        "/reset_password_request", {"email": "alice@example.com", "csrf_token": token}
    )
    elapsed = time.monotonic() - started

    assert status == 200 and b"Check your email for the instructions" in page
    assert elapsed < 2, f"the form took {elapsed:.1f} s"
    assert slow_smtp.messages == []
    (message,) = wait_for(lambda: slow_smtp.messages, timeout=SMTP_DELAY + 20, interval=0.2,
                          what="the reset mail")  # fmt: skip
    assert message["To"] == "alice@example.com"
    text = message.get_body(("plain",)).get_content()
    link = re.search(re.escape(SITE_URL) + r"(/reset_password/\S+)", text).group(1)
    assert link in message.get_body(("html",)).get_content()
    status, page, _ = browser.get(link)
    assert status == 200 and b"Choose a new password" in page
