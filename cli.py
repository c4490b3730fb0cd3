"""Administration from the command line: `flask --app microblog user …`, `backup`, `restore`.

Every command checks its input with the web forms' rules, says what went wrong in one line
and exits with status 1 when it did nothing. They work whatever MICROBLOG_REGISTRATION says.
"""

import sys
import time
from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext
from flask_wtf import FlaskForm

import administration
import backup
import schema_migrations
from account_deletion import delete_user
from database import db
from forms import RegistrationForm, ResetPasswordForm, filled, first_error
from i18n import N_
from jobs import fail_all_active
from models import User

user_cli = AppGroup("user", help="Create, change and remove accounts.")


def init_app(app: Flask) -> None:
    app.cli.add_command(user_cli)
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)


# --- accounts -------------------------------------------------------------------------------


def read_password() -> str:
    """Asked twice at a terminal, hidden; from a pipe (a script), the first line of input."""
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True)
    line = sys.stdin.readline()
    if not line:
        raise click.ClickException("No password on standard input.")
    return line.rstrip("\r\n")


def check(form_class: type[FlaskForm], fields: dict[str, str]) -> FlaskForm:
    """The form filled with `fields` and validated, or exit naming the first problem."""
    form = filled(form_class, fields)
    if form.errors:
        field = next(iter(form.errors))
        raise click.ClickException(f"{field}: {first_error(form)}")
    return form


def named_user(username: str) -> User:
    user = User.by_username(username)
    if user is None:
        raise click.ClickException(f"There is no user called {username!r}.")
    return user


def refuse_leaving_no_admin(user: User) -> None:
    """Exit, changing nothing, when `user` is the last admin who can sign in."""
    refusal = administration.refuse_leaving_no_admin(user)
    if refusal:
        db.session.rollback()
        raise click.ClickException(refusal)


@user_cli.command("create")
@click.argument("username")
@click.argument("email")
@click.option("--admin", is_flag=True, help="Give the account access to /admin.")
def create_user(username: str, email: str, admin: bool) -> None:
    """Create an account (the password is asked for, or read from standard input)."""
    password = read_password()
    fields = {"username": username, "email": email, "password": password, "password2": password}
    form = check(RegistrationForm, fields)
    user = User.register(form.username.data, form.email.data, form.password.data)
    administration.make_admin(user, admin)
    db.session.commit()
    click.echo(f"Created {'admin ' if admin else ''}user {user.username}.")


@user_cli.command("set-password")
@click.argument("username")
def set_password(username: str) -> None:
    """Set a user's password: the way back in without a mail server. Like every other
    password change it signs the user out everywhere and revokes every API and app token."""
    user = named_user(username)
    password = read_password()
    form = check(ResetPasswordForm, {"password": password, "password2": password})
    user.change_password(form.password.data)
    db.session.commit()
    click.echo(f"Changed the password of {user.username}.")


@user_cli.command("disable")
@click.argument("username")
def disable_user(username: str) -> None:
    """Stop an account: no sign-in; its sessions and API tokens end now. Its posts stay."""
    user = named_user(username)
    refuse_leaving_no_admin(user)
    administration.disable(user)
    db.session.commit()
    click.echo(f"Disabled {user.username}.")


@user_cli.command("enable")
@click.argument("username")
def enable_user(username: str) -> None:
    """Let a disabled account sign in again."""
    user = named_user(username)
    administration.enable(user)
    db.session.commit()
    click.echo(f"Enabled {user.username}.")


@user_cli.command("delete")
@click.argument("username")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def delete_user_command(username: str, yes: bool) -> None:
    """Delete an account with its posts, messages, follows, tasks and exports."""
    user = named_user(username)
    if not yes:
        refuse_leaving_no_admin(user)
        db.session.rollback()  # holds no lock while waiting for the answer
        click.confirm(f"Delete {user.username} and everything they wrote?", abort=True)
    refuse_leaving_no_admin(user)
    name = user.username
    delete_user(user)
    click.echo(f"Deleted {name}.")


@user_cli.command("list")
def list_users() -> None:
    """Every account: id, username, e-mail, role and state."""
    for user in db.session.scalars(User.search()):
        role = "admin" if user.is_admin else "user"
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.id}\t{user.username}\t{user.email}\t{role}\t{state}")


# --- backups ----------------------------------------------------------------------------------


def live_database() -> Path:
    """The SQLite file the site uses; exit with pg_dump's advice on any other database."""
    try:
        return backup.sqlite_path(current_app.config["SQLALCHEMY_DATABASE_URI"])
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("backup")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def backup_command(file: Path | None) -> None:
    """Copy the database to FILE while the site runs (default: <data dir>/backups/app-<time>.db)."""
    source = live_database()
    if file is None:
        file = Path(current_app.config["DATA_DIR"]) / backup.BACKUP_DIR / backup.timestamped_name()
    if file.exists():
        raise click.ClickException(f"{file} already exists; choose another name.")
    started = time.monotonic()
    try:
        backup.take(source, file)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    size = file.stat().st_size / 1024 / 1024
    click.echo(f"Backed up {source} to {file} ({size:.1f} MB, {time.monotonic() - started:.1f} s).")


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def restore_command(file: Path) -> None:
    """Replace the database with the backup FILE. Stop the web server and the worker first:
    the command refuses while any process has the database open."""
    live = live_database()
    try:
        counts = backup.restore(file, live)
    except backup.BackupError as exc:
        raise click.ClickException(str(exc)) from None
    schema_migrations.upgrade()  # a backup taken by an older version gets this version's schema
    reason = N_("Stopped by a restore of the database. Please start it again.")
    stopped = fail_all_active(reason)
    db.session.commit()
    click.echo(
        f"Restored {file} to {live}: {counts['users']} users, {counts['posts']} posts"
        + (f"; {stopped} unfinished tasks marked failed." if stopped else ".")
    )
