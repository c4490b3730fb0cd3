"""Jinja filters that turn what users typed into what pages show: links and plurals."""

import re

from flask import url_for
from markupsafe import Markup, escape

from models import USERNAME_PATTERN

# A web address up to the next space or character that cannot be part of one in running
# text; trailing punctuation ("see https://example.com.") is the sentence's, not the URL's.
URL = re.compile(r"""\bhttps?://[^\s<>"'`]+""", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\""
# "@name" at the start or after a space or an opening bracket: not the middle of an e-mail.
NAME_CHARS = USERNAME_PATTERN.removeprefix("^").removesuffix("+\\Z")
MENTION = re.compile(rf"(?<![\w@]){re.escape('@')}({NAME_CHARS}+)")
LINKS = re.compile(f"{URL.pattern}|{MENTION.pattern}", re.IGNORECASE)


def linkify(text: str | None) -> Markup:
    """`text` escaped, with web addresses and @mentions made links (nofollow: they are
    what users typed, not what the site vouches for)."""
    text = text or ""
    pieces = []
    position = 0
    for match in LINKS.finditer(text):
        found = match.group()
        if match.group(1):  # a mention; a name does not end with a dot ("Hi @bob.")
            name = match.group(1).rstrip(".")
            found = "@" + name
            href = url_for("people.user", username=name)
            link = Markup('<a class="mention" href="%s">%s</a>') % (href, found)
        else:
            found = found.rstrip(URL_TRAILING)
            link = Markup('<a href="%s" rel="nofollow noopener">%s</a>') % (found, found)
        pieces.append(escape(text[position : match.start()]))
        pieces.append(link)
        position = match.start() + len(found)
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)
