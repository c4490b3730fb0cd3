"""Jinja filters that turn what users typed into what pages show: links and plurals; and
what every post card of a page shares, worked out once per page."""

import copy
import functools
import re
from collections.abc import Callable
from urllib.parse import quote, urlsplit

from flask import current_app, request, url_for
from flask_babel import get_locale, gettext, ngettext
from flask_login import current_user
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

import translation
from database import MAX_ROW_ID
from models import USERNAME_PATTERN, Post, User

# A web address up to the next space or character that cannot be part of one in running
# text; trailing punctuation ("see https://example.com.") is the sentence's, not the URL's.
URL = re.compile(r"""\bhttps?://[^\s<>"'`]+""", re.IGNORECASE)
URL_TRAILING = ".,;:!?)]}'\""
# "@name" at the start or after a space or an opening bracket: not the middle of an e-mail;
# "@name@host" (a port allowed) names an account on another server.
NAME_CHARS = USERNAME_PATTERN.removeprefix("^").removesuffix("+\\Z")
HOST = r"(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+(?::[0-9]{1,5})?"
MENTION = re.compile(rf"(?<![\w@]){re.escape('@')}({NAME_CHARS}+)(?:@({HOST}))?")
LINKS = re.compile(f"{URL.pattern}|{MENTION.pattern}", re.IGNORECASE)


def mentioned_username(name: str, host: str | None, here: str) -> tuple[str, str]:
    """What a mention's match covers and the username it names here: `name` for a local
    account (also written `@name@<this site's host>`), `name@host` for a remote one. A name
    does not end with a dot ("Hi @bob.")."""
    if host and not name.endswith("."):
        return f"@{name}@{host}", name if host.lower() == here else f"{name}@{host.lower()}"
    name = name.rstrip(".")
    return "@" + name, name


def site_host() -> str:
    """This site's host as handles name it, with its port when it has one."""
    return urlsplit(current_app.config["SITE_URL"]).netloc.lower()


def linkify(text: str | None) -> Markup:
    """`text` escaped, with web addresses and @mentions made links (nofollow: they are
    what users typed, not what the site vouches for)."""
    text = text or ""
    if "@" not in text and "://" not in text:  # most posts: nothing to link
        return escape(text)
    here = site_host()
    pieces = []
    position = 0
    for match in LINKS.finditer(text):
        found = match.group()
        if match.group(1):  # a mention
            found, username = mentioned_username(match.group(1), match.group(2), here)
            href = url_for("people.user", username=username)
            link = Markup('<a class="mention" href="%s">%s</a>') % (href, found)
        else:
            found = found.rstrip(URL_TRAILING)
            link = Markup('<a href="%s" rel="nofollow noopener">%s</a>') % (found, found)
        pieces.append(escape(text[position : match.start()]))
        pieces.append(link)
        position = match.start() + len(found)
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)


# What werkzeug leaves unquoted in a path segment: a name goes into a URL as url_for writes it.
PATH_SAFE = "!$&'()*+,/:;=@"


# Stand-ins written into a kept card where the CSRF token and the page its delete form
# returns to go: both change with every request, the rest of a card does not.
CSRF_MARK = "CARD-CSRF-TOKEN"
NEXT_MARK = "CARD-NEXT-PAGE"
CARDS_KEPT = 1000  # per app (about 1.5 KB each); all are dropped when it is full


class CardKit:
    """What the post cards of one page share: their words, their URLs up to the part that
    changes, the CSRF token and the translation language, each worked out once instead of
    once per post (`url_for` and `gettext` cost tens of microseconds a call); and each
    author's links, once per author. `card` keeps each card written for the next page that
    shows the same post the same way."""

    # Stand-ins built into a URL where a post id or a username goes, then cut out.
    POST_ID = MAX_ROW_ID
    USERNAME = "USERNAME"

    def __init__(self) -> None:
        self.said = gettext("said")
        self.translate = gettext("Translate")
        self.delete = gettext("Delete")
        self.delete_confirm = gettext("Delete this post?")
        self.csrf_token = generate_csrf()
        self.translate_url = url_for("posts.translate_post")
        self.translate_into = translation.offer_target()
        self.viewer_id = current_user.id if current_user.is_authenticated else None
        mark = str(self.POST_ID)
        # The first occurrence is the path's: `next` (the page) may hold the mark as well.
        self._post = url_for("posts.post", post_id=self.POST_ID).partition(mark)[::2]
        delete = url_for("posts.delete_post", post_id=self.POST_ID, next=request.full_path)
        self._delete = delete.partition(mark)[::2]
        self._user = url_for("people.user", username=self.USERNAME).rpartition(self.USERNAME)[::2]
        popup = url_for("people.user_popup", username=self.USERNAME)
        self._popup = popup.rpartition(self.USERNAME)[::2]
        self._authors: dict[int, tuple[str, str, str]] = {}
        # Everything of the page that a card writes, but the token and the delete's `next`.
        self._page_key = (
            str(get_locale()),
            self.said,
            self.translate,
            self.delete,
            self.delete_confirm,
            self.translate_url,
            self.translate_into,
            self._post,
            self._user,
            self._popup,
            self._delete[0],
        )

    def card(self, post: Post, write: Callable[..., str]) -> Markup:
        """`post`'s card as `write` (the post_card macro) writes it with this kit. It is
        kept per app under a key of everything the card shows, so that the next page showing
        the post the same way (to anyone) reuses it: writing a card costs more than the
        page's queries for it. The CSRF token and the page are filled in each time."""
        key = (
            self._page_key,
            post.id,
            post.user_id == self.viewer_id,
            post.timestamp,
            post.language,
            post.body,
            post.html,
            post.like_count,
            post.announce_count,
            post.author.username,
            self.author(post.author),
        )
        kept: dict[tuple[object, ...], str] = current_app.extensions.setdefault("post_cards", {})
        card = kept.get(key)
        if card is None:
            if len(kept) >= CARDS_KEPT:
                kept.clear()  # simpler than an LRU, and safe between threads
            card = kept[key] = str(write(post, kit=self._with_marks))
        (token_mark, token), (next_mark, next_page) = self._filled_in
        return Markup(card.replace(token_mark, token).replace(next_mark, next_page))

    @functools.cached_property
    def _filled_in(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """What replaces the stand-ins in a kept card on this page: the token, and the end of
        the delete form's URL (as the card writes it, escaped)."""
        return (CSRF_MARK, self.csrf_token), (self._marked_delete[1], str(escape(self._delete[1])))

    @functools.cached_property
    def _with_marks(self) -> "CardKit":
        """This kit with stand-ins for the token and the delete's `next` (see `card`)."""
        marked = copy.copy(self)
        marked.csrf_token = CSRF_MARK
        marked._delete = self._marked_delete
        return marked

    @functools.cached_property
    def _marked_delete(self) -> tuple[str, str]:
        delete = url_for("posts.delete_post", post_id=self.POST_ID, next=NEXT_MARK)
        prefix, suffix = delete.partition(str(self.POST_ID))[::2]
        return prefix, suffix

    def author(self, user: User) -> tuple[str, str, str]:
        """`user`'s profile URL, user card URL and 48-pixel picture URL."""
        links = self._authors.get(user.id)
        if links is None:
            name = quote(user.username, safe=PATH_SAFE)
            links = (
                name.join(self._user),
                name.join(self._popup),
                user.avatar(48),
            )
            self._authors[user.id] = links
        return links

    def permalink(self, post: Post) -> str:
        return str(post.id).join(self._post)

    def delete_action(self, post: Post) -> str:
        return str(post.id).join(self._delete)

    def reactions(self, post: Post) -> str:
        """ "3 likes · 1 boost": what other servers' accounts did to the post ("" for none)."""
        counts = [
            ngettext("%(num)d like", "%(num)d likes", post.like_count) if post.like_count else "",
            ngettext("%(num)d boost", "%(num)d boosts", post.announce_count)
            if post.announce_count
            else "",
        ]
        return " · ".join(count for count in counts if count)

    def offers_translation(self, post: Post) -> bool:
        return translation.offered(post.known_language, self.translate_into)
