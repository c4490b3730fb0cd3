"""Languages: Flask-Babel, the reader's locale, and `flask translate init|update|compile`.

The catalogues live in translations/<lang>/LC_MESSAGES/messages.po; the compiled .mo files
are built from them (`translate compile`, or `./run.sh` when they are missing or stale) and
are not kept in git.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

import click
from flask import current_app, has_request_context, request
from flask.cli import AppGroup
from flask_babel import Babel, get_locale, gettext, ngettext
from flask_login import current_user

PROJECT_DIR = Path(__file__).resolve().parent
TRANSLATIONS_DIR = PROJECT_DIR / "translations"
BABEL_CFG = PROJECT_DIR / "babel.cfg"
DEFAULT_LANGUAGE = "en"
# Every language the site speaks, with its own name for the /settings menu.
LANGUAGES = {"en": "English", "es": "Español"}

babel = Babel()


def N_(text: str) -> str:
    """Marks `text` for the catalogue without translating it: for words stored in English
    (a task's message) and translated when they are shown."""
    return text


def select_locale() -> str:
    """The signed-in user's choice, else the browser's best match, else English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    user = current_user
    if user and user.is_authenticated and getattr(user, "language", None) in LANGUAGES:
        return user.language
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def init_app(app) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["page_language"] = lambda: str(get_locale() or DEFAULT_LANGUAGE)
    app.jinja_env.globals["script_strings"] = script_strings
    app.cli.add_command(translate_cli)


# Formatting the message fills its placeholders: these put them back for the script to fill.
KEEP_PLACEHOLDERS = {"over": "%(over)s", "limit": "%(limit)s"}


def script_strings() -> dict[str, str]:
    """What the page script says, in the page's language: it reads these from its own tag
    (`%(name)s` placeholders are filled in by the script)."""
    return {
        "charsLeft": gettext("%(left)s of %(limit)s characters left"),
        # The script picks the form by the count; each language gives both.
        "tooManyOne": ngettext(
            "%(over)s character too many (at most %(limit)s)",
            "%(over)s characters too many (at most %(limit)s)",
            1,
            **KEEP_PLACEHOLDERS,
        ),
        "tooManyOther": ngettext(
            "%(over)s character too many (at most %(limit)s)",
            "%(over)s characters too many (at most %(limit)s)",
            2,
            **KEEP_PLACEHOLDERS,
        ),
        "user": gettext("User"),
    }


def mail_language(user) -> str:
    """The language mail to `user` is written in: their choice, else English (a mail has
    no browser to ask)."""
    language = getattr(user, "language", None)
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


# --- catalogues ------------------------------------------------------------------------------


def pybabel(*args: str) -> None:
    """Run one pybabel command from the project directory; raise on failure."""
    command = [sys.executable, "-m", "babel.messages.frontend", "-q", *args]
    subprocess.run(command, check=True, cwd=PROJECT_DIR)


def extract(pot: Path) -> None:
    """Every marked message of the code and templates, into the template `pot`."""
    pybabel("extract", "-F", str(BABEL_CFG), "-k", "_l", "-k", "N_", "--no-location",
            "--sort-output", "--ignore-dirs", ".* _* node_modules tests migrations deploy",
            "-o", str(pot), ".")  # fmt: skip


def compile_catalogues(force: bool = False) -> list[Path]:
    """Compile each .po whose .mo is missing or older; return the catalogues compiled."""
    compiled = []
    for po in sorted(TRANSLATIONS_DIR.glob("*/LC_MESSAGES/messages.po")):
        mo = po.with_suffix(".mo")
        if force or not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            pybabel("compile", "-i", str(po), "-o", str(mo))
            compiled.append(po)
    return compiled


translate_cli = AppGroup("translate", help="Translation and localization commands.")


@translate_cli.command("init")
@click.argument("lang")
def init_command(lang: str) -> None:
    """Start the catalogue of a new language."""
    with tempfile.TemporaryDirectory() as scratch:
        pot = Path(scratch) / "messages.pot"
        extract(pot)
        pybabel("init", "-i", str(pot), "-d", str(TRANSLATIONS_DIR), "-l", lang)
    click.echo(f"Created {TRANSLATIONS_DIR / lang / 'LC_MESSAGES' / 'messages.po'}")


@translate_cli.command("update")
def update_command() -> None:
    """Bring every catalogue up to date with the messages marked in the code."""
    with tempfile.TemporaryDirectory() as scratch:
        pot = Path(scratch) / "messages.pot"
        extract(pot)
        pybabel("update", "--no-fuzzy-matching", "--ignore-obsolete",
                "-i", str(pot), "-d", str(TRANSLATIONS_DIR))  # fmt: skip


@translate_cli.command("compile")
def compile_command() -> None:
    """Compile every catalogue (the app reads the compiled .mo files)."""
    compiled = compile_catalogues(force=True)
    click.echo(f"Compiled {len(compiled)} catalogue(s).")
    current_app.logger.debug("compiled %s", compiled)


if __name__ == "__main__":
    # `python i18n.py`: what ./run.sh calls to compile stale catalogues before starting.
    compile_catalogues()
