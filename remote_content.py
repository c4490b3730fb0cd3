"""HTML from other servers, made safe to show: only links, paragraphs and line breaks survive
(nh3, the Python binding of the Ammonia sanitiser), and every link is marked as not ours."""

import html
import re

import nh3

ALLOWED_TAGS = {"a", "p", "br"}
ALLOWED_ATTRIBUTES = {"a": {"href"}}
LINK_SCHEMES = {"http", "https"}
# Lists, quotes and the like lose their tags but keep their text: these become breaks.
BLOCK_END = re.compile(r"</(p|div|li|blockquote|h[1-6]|pre)\s*>|<br\s*/?>", re.IGNORECASE)
TAG = re.compile(r"<[^>]*>")


def clean_html(markup: str) -> str:
    """`markup` with everything but links, paragraphs and line breaks taken out; links get
    rel="nofollow noopener" and open nothing but http(s)."""
    return nh3.clean(
        markup,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=LINK_SCHEMES,
        link_rel="nofollow noopener",
        strip_comments=True,
    )


def html_to_text(markup: str) -> str:
    """The text of `markup`: paragraphs and breaks as line breaks, no tags, no entities."""
    cleaned = nh3.clean(markup, tags={"p", "br"}, attributes={})
    text = BLOCK_END.sub("\n", cleaned)
    text = html.unescape(TAG.sub("", text))
    return re.sub(r"\n{3,}", "\n\n", text).strip()
