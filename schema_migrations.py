"""`flask db …` (Flask-Migrate, on alembic): the schema's migrations, set up when a command
needs them rather than by every process that makes the app.

Flask-Migrate imports alembic (and mako), about 8 MiB of memory in each web worker and
consumer that would never use it: only `flask db` and `flask restore` do. So it is
imported here, inside the functions, the one exception to imports at the top of a module.
"""

import logging

import click
from flask import Flask, current_app, g
from flask.cli import with_appcontext

import config as settings
import search
from database import db


def init_migrations(app: Flask) -> None:
    """Flask-Migrate on `app`, once (its commands read their settings from the app)."""
    if "migrate" in app.extensions:
        return
    # Imported after the app set up logging, alembic would list the plugins it loads on
    # every command.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from flask_migrate import Migrate  # lazily: see the module's docstring

    Migrate(
        app,
        db,
        directory=str(settings.PROJECT_DIR / "migrations"),
        include_name=search.alembic_include_name,
    )


def upgrade() -> None:
    """Bring the current app's database to the latest schema (`flask db upgrade`)."""
    init_migrations(current_app._get_current_object())  # type: ignore[attr-defined]
    from flask_migrate import upgrade as upgrade_schema  # lazily: see the module's docstring

    upgrade_schema()


class MigrationCommands(click.Group):
    """The `db` command group, standing in for Flask-Migrate's until one of its commands
    is asked for (the flask CLI has the app's context by then)."""

    def _commands(self) -> click.Group:
        init_migrations(current_app._get_current_object())  # type: ignore[attr-defined]
        # lazily: see the module's docstring (and it has no type stubs)
        from flask_migrate.cli import db as commands  # type: ignore[import-untyped]

        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self._commands().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return self._commands().get_command(ctx, cmd_name)


@click.group("db", cls=MigrationCommands)
@click.option("-d", "--directory", default=None, help="Migration script directory")
@click.option("-x", "--x-arg", multiple=True, help="Arguments for custom env.py scripts")
@with_appcontext
def migration_commands(directory: str | None, x_arg: tuple[str, ...]) -> None:
    """Perform database migrations."""
    # What Flask-Migrate's own group does: its commands read these.
    g.directory = directory
    g.x_arg = x_arg
