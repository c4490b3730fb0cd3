"""Languages: Flask-Babel, the reader's locale, and `flask translate init|update|compile`.

The catalogues live in translations/<lang>/LC_MESSAGES/messages.po; the compiled .mo files
are built from them (`translate compile`, or `./run.sh` when they are missing or stale) and
are not kept in git.
"""

import functools
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from gettext import NullTranslations
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app, has_app_context, has_request_context, request
from flask.cli import AppGroup
from flask_babel import Babel, format_decimal, get_locale, get_translations, gettext, ngettext
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


@dataclass(frozen=True)
class Phrase:
    """A sentence kept in a form every language can be made from: its English (and English
    plural, chosen by the count `num`) and its values. `str()` gives the English; `shown()`
    the reader's language. For what the worker writes and a reader sees later."""

    msgid: str
    plural: str | None = None
    values: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self._written(NullTranslations(), lambda number: f"{number:,}")

    def shown(self) -> str:
        """In the current locale, numbers written as its readers write them (English when
        there is no app, hence no locale)."""
        if not has_app_context():
            return str(self)
        return self._written(get_translations(), format_decimal)

    def _written(
        self, translations: NullTranslations, write_number: Callable[[int | float], str]
    ) -> str:
        """The form `translations` give (the count `num` chooses among plural forms), with
        the values filled in and numbers written by `write_number`. (flask_babel's ngettext
        cannot write the count for the locale: its own `num` argument is the count.)"""
        if self.plural is None:
            text = translations.gettext(self.msgid)
        else:
            text = translations.ngettext(self.msgid, self.plural, self.values["num"])
        if not self.values:
            return text
        return text % {k: write_number(v) if is_number(v) else v for k, v in self.values.items()}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> Any:
    """2.0 as 2 (a limit of "2 MiB", not "2.0 MiB"); anything else as it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def phrase(msgid: str, **values: Any) -> Phrase:
    """A sentence to translate when shown (marked for the catalogue like `_`)."""
    return Phrase(msgid, None, {k: _whole(v) for k, v in values.items()})


def nphrase(singular: str, plural: str, num: int, **values: Any) -> Phrase:
    """A sentence whose form follows the count `num` (`%(num)s`), translated when shown."""
    return Phrase(singular, plural, {"num": num, **{k: _whole(v) for k, v in values.items()}})


class PhrasedError(Exception):
    """An error whose reason the user reads, in their language: `phrases` (`str()` gives
    the English)."""

    def __init__(self, *phrases: Phrase):
        super().__init__(" ".join(map(str, phrases)))
        self.phrases = phrases

    def shown(self) -> str:
        """The reason in the reader's language."""
        return " ".join(p.shown() for p in self.phrases)


# A stored message that starts so is a list of phrases (older rows hold plain English).
STORED_PHRASES = '{"phrases":'


def store_phrases(*phrases: Phrase) -> str:
    """The text to keep in a column, for `show_stored` to put in the reader's language."""
    return json.dumps({"phrases": [[p.msgid, p.plural, p.values] for p in phrases]})


def show_stored(text: str) -> str:
    """A stored message in the current language: the phrases of `store_phrases`, joined,
    or a plain message (translated when it is one of the catalogue's)."""
    if not text.startswith(STORED_PHRASES):
        return gettext(text)
    phrases = json.loads(text)["phrases"]
    return " ".join(Phrase(msgid, plural, values).shown() for msgid, plural, values in phrases)


def select_locale() -> str:
    """The signed-in user's choice, else the browser's best match, else English."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    user = current_user
    if user and user.is_authenticated and getattr(user, "language", None) in LANGUAGES:
        return user.language
    return request.accept_languages.best_match(list(LANGUAGES)) or DEFAULT_LANGUAGE


def init_app(app: Flask) -> None:
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    babel.init_app(app, locale_selector=select_locale)
    app.jinja_env.globals["page_language"] = lambda: str(get_locale() or DEFAULT_LANGUAGE)
    app.jinja_env.globals["script_strings_json"] = script_strings_json
    app.cli.add_command(translate_cli)


# Formatting the message fills its placeholders: these put them back for the script to fill.
KEEP_PLACEHOLDERS = {"over": "%(over)s", "limit": "%(limit)s"}


@functools.cache
def _script_strings_json(language: str) -> str:
    return json.dumps(script_strings())


def script_strings_json() -> str:
    """`script_strings` as JSON, written once per language (every page carries it)."""
    return _script_strings_json(str(get_locale() or DEFAULT_LANGUAGE))


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
        "translating": gettext("Translating…"),
        "translated": gettext("Translated"),
        "translationUnavailable": gettext("Translation service unavailable."),
    }


def mail_language(user: object) -> str:
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
    pybabel("extract", "-F", str(BABEL_CFG), "-k", "_l", "-k", "N_", "-k", "phrase",
            "-k", "nphrase:1,2", "--no-location",
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
        pybabel("update", "--no-fuzzy-matching", "--ignore-obsolete", "--width", "100",
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
