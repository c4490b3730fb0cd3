"""/admin/federation: what admins see of the servers we deliver to, in a real browser against
gunicorn and a consumer, and the same numbers on /admin/jobs, /readyz and `flask federation`."""

from datetime import timedelta

import sqlalchemy as sa

import deliveries
import health
from database import db, utcnow
from delivery_store import Delivery, FederationHost
from tests.conftest import browser_login
from tests.live import wait_for
from tests.receivers import HANG
from tests.test_deliveries import (
    FAST,
    deliver,
    note,
    pending,
    receivers,  # noqa: F401  (the fixture)
    start_site,
)
from tests.test_pages_browser import AXE, axe_violations

PAUSED_FOR_AN_HOUR = {
    **FAST,
    "FEDERATION_PAUSE_SECONDS": 3600.0,
    "FEDERATION_RETRY_MAX_SECONDS": 7200.0,
}


def pause(app, host):
    """A host that failed three times and is paused for an hour."""
    with app.app_context():
        now = utcnow()
        paused_until = now + timedelta(hours=1)
        db.session.add(
            FederationHost(host=host, failures=3, failing_since=now, paused_until=paused_until)
        )
        db.session.commit()


def test_paused_host_shown_and_released_in_the_browser(
    app,
    admin,
    live,
    monkeypatch,
    receivers,  # noqa: F811  (the fixture imported above)
    browser,
):
    alive = {"yes": False}
    server = receivers(lambda n: 202 if alive["yes"] else HANG)
    site = start_site(live, monkeypatch, MICROBLOG_ADMIN_REFRESH_MS=300, **PAUSED_FOR_AN_HOUR)
    site.start_web()
    for number in range(3):
        deliver(app, note(50 + number), [server.inbox])

    def state():
        with app.app_context():
            row = db.session.get(FederationHost, server.host)
            return row and row.state(utcnow())

    wait_for(lambda: state() == "paused", timeout=30, what="the host paused")
    context = browser.new_context(base_url=site.url, viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        browser_login(page, site.url, username="root")
        page.goto("/admin/federation/")
        row = page.locator(f'tr[data-host="{server.host}"]')
        assert row.get_attribute("data-state") == "paused"
        assert "paused" in row.locator(".host-state").inner_text()
        assert row.locator(".host-pending").inner_text() == "3"
        assert page.locator(".outbound-pending").get_attribute("data-pending") == "3"
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"fits a 390 px phone: {width}"
        if AXE.exists():
            assert axe_violations(page) == []
        # The server is back: "Retry now" sends everything at once, without waiting an hour.
        alive["yes"] = True
        row.get_by_role("button", name="Retry now").click()
        page.wait_for_url("**/admin/federation/")
        assert "being sent again" in page.locator(".alert").inner_text()
        # The page refreshes itself: the deliveries leave the queue and the host is ok.
        row = page.locator(f'tr[data-host="{server.host}"]')
        row.locator(".host-pending", has_text="0").wait_for(timeout=30_000)
        assert row.get_attribute("data-state") == "ok"
        assert len(server.activities) == 3
    finally:
        context.close()


def test_only_admins_see_it_and_retry_needs_the_csrf_token(app, client, auth, admin):
    pause(app, "down.example")
    assert client.get("/admin/federation/").status_code == 404  # signed out
    auth.login("alice")
    assert client.get("/admin/federation/").status_code == 404
    assert client.post("/admin/federation/retry", data={"host": "down.example"}).status_code in (
        400,
        404,
    )
    auth.logout()
    auth.login("root")
    page = client.get("/admin/federation/")
    assert page.status_code == 200 and b"down.example" in page.data
    refused = client.post("/admin/federation/retry", data={"host": "down.example"})
    assert refused.status_code == 400  # no CSRF token
    with app.app_context():
        assert db.session.get(FederationHost, "down.example").paused_until is not None


def test_backlog_on_readyz_jobs_and_cli(app, client, auth, admin, flask_cli):
    with app.app_context():
        deliveries.deliver(note(60), signer_id=None, inboxes=["https://late.example/inbox"])
        # Due for two hours: the workers are behind.
        db.session.execute(
            sa.update(Delivery).values(next_attempt_at=utcnow() - timedelta(hours=2))
        )
        db.session.commit()
        assert "1 deliveries are due" in deliveries.backlog_problem(health.DELIVERY_BACKLOG_SECONDS)
    ready = client.get("/readyz").get_json()
    assert "deliveries" in ready["missing"]
    assert ready["checks"]["deliveries"].startswith("1 deliveries are due, the oldest for 120")
    auth.login("root")
    jobs = client.get("/admin/jobs").get_data(as_text=True)
    assert 'class="outbound-pending" data-pending="1"' in jobs
    result = flask_cli("federation", "status")
    assert "outbound: 1 pending, 1 due" in result.stdout
    assert "late.example: ok, 1 pending, no attempt yet" in result.stdout
    assert pending(app) == 1
