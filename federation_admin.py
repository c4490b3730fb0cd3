"""What admins see of federation: /admin/federation (each known server with its state, the
queues in and out, "retry now" for a paused server) and `flask federation …` with the same
numbers. Only admins see the page; for everyone else it is a 404, like all of /admin."""

from datetime import datetime
from typing import Any

import click
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.cli import AppGroup
from flask_babel import gettext as _
from werkzeug.wrappers import Response

import admin
import deliveries
import delivery_store
import inbound
from database import db, utcnow
from delivery_store import FederationHost
from forms import EmptyForm

bp = Blueprint("federation_admin", __name__, url_prefix="/admin/federation")
bp.before_request(admin.admins_only)


def overview() -> dict[str, Any]:
    """The page's numbers: the queues, and each server with its state."""
    now = utcnow()
    hosts, total = delivery_store.hosts_overview()
    return {
        "numbers": inbound.federation_numbers(),
        "hosts": hosts,
        "hosts_total": total,
        "now": now,
        "form": EmptyForm(),
    }


@bp.route("/")
def federation() -> str:
    return render_template("admin/federation.html", title=_("Admin: federation"), **overview())


@bp.route("/status")
def federation_status() -> str:
    """The page's body alone: the page's script swaps it in every few seconds."""
    return render_template("admin/_federation.html", **overview())


@bp.route("/retry", methods=["POST"])
def retry_host() -> Response:
    """Send a paused server's deliveries now, without waiting for its next probe."""
    host = (request.form.get("host") or "").strip().lower()
    if not host or db.session.get(FederationHost, host) is None:
        flash(_("No such server."), "warning")
    else:
        count = deliveries.retry_now(host)
        flash(
            _("%(host)s: %(count)s deliveries are being sent again.", host=host, count=count),
            "success",
        )
    return redirect(url_for("federation_admin.federation"))


# --- the same numbers on the command line ---------------------------------------------------

federation_cli = AppGroup("federation", help="Deliveries to other servers.")


def _age(moment: datetime | None, now: datetime) -> str:
    seconds = delivery_store.seconds_between(moment, now)
    return "-" if seconds is None else f"{seconds:.0f} s"


@federation_cli.command("status")
def status_command() -> None:
    """The queues, and each known server with its state and counts."""
    queues = inbound.federation_numbers()
    now = utcnow()
    out = queues["outbound"]
    click.echo(
        f"outbound: {out['pending']} pending, {out['due']} due, oldest pending "
        f"{_age(out['oldest'], now)}, oldest due {_age(out['oldest_due'], now)}"
    )
    received = queues["inbound"]
    click.echo(f"inbound: {received['pending']} pending, oldest {_age(received['oldest'], now)}")
    hosts, total = delivery_store.hosts_overview(limit=10_000)
    for entry in hosts:
        row = entry["row"]
        state = entry["state"]
        if row is not None and row.paused_until is not None:
            state += f" until {row.paused_until.isoformat(timespec='seconds')}Z"
        counts = (
            f"delivered {row.delivered}, refused {row.refused}, dropped {row.dropped}"
            if row is not None
            else "no attempt yet"
        )
        click.echo(f"{entry['host']}: {state}, {entry['pending']} pending, {counts}")
    if total > len(hosts):
        click.echo(f"… and {total - len(hosts)} more servers")


@federation_cli.command("retry")
@click.argument("host")
def retry_command(host: str) -> None:
    """Close HOST's breaker and send its deliveries now."""
    host = host.strip().lower()
    if db.session.get(FederationHost, host) is None:
        raise click.ClickException(f"no such server: {host}")
    click.echo(f"{host}: {deliveries.retry_now(host)} deliveries are being sent again")
