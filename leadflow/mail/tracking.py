"""Tracked marketing email: an open pixel in the HTML and every web link through a redirect.

With ``mail.tracking.enabled`` the rendered bodies of a marketing email are rewritten once, when
it is queued: each ``http(s)`` link of an ``<a href>`` in the HTML and each one in the text
becomes ``BASE/t/c/<token>`` (the unsubscribe link ``BASE/t/u/<token>``), and a 1x1 pixel
``BASE/t/o/<token>.gif`` goes before ``</body>``. The tokens are signed
(:mod:`leadflow.mail.tracking_tokens`); the daemon's routes (:mod:`leadflow.http.tracking`)
record each hit and redirect. The ``List-Unsubscribe`` header keeps the plain unsubscribe URL:
a mail client's one-click unsubscribe must not depend on leadflow's HTTP server.

This runs for every nurture email a firing queues, so it is a few regular expression passes
and one HMAC per link, nothing more.
"""

from __future__ import annotations

import html as html_text
import re
from collections.abc import Callable

from leadflow.mail.tracking_tokens import CODES, Kind, Signer, tracking_key
from leadflow.settings import Settings

_ANCHOR_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.IGNORECASE
)
"""An anchor's web link; stylesheets and images (``<link href>``, ``<img src>``) stay."""
_TEXT_URL = re.compile(r"https?://[^\s<>\"']+")
_TRAILING = ".,;:!?)]}"
"""Punctuation that ends a sentence after a URL in text, not part of it."""


def tracked_bodies(
    text: str,
    html: str | None,
    *,
    settings: Settings,
    message_id: str,
    lead: str,
    template: str,
    unsubscribe_url: str | None,
) -> tuple[str, str | None]:
    """``text`` and ``html`` with links through the tracking redirects and, in the HTML, the
    open pixel; ``lead`` is the lead's external id, ``message_id`` the outbox Message-ID."""
    base = settings.mail.tracking.base_url
    if base is None:  # pragma: no cover - the settings refuse tracking without a base URL
        return text, html
    signer = Signer(tracking_key(settings), message_id, lead, template)
    own = f"{base}/t/"
    done: dict[str, str] = {}  # the HTML and the text mostly carry the same links

    def tracked(url: str) -> str:
        found = done.get(url)
        if found is not None:
            return found
        # leadflow's own unsubscribe page is under /t/ too, and still goes through /t/u/.
        kind: Kind = "unsubscribe" if url == unsubscribe_url else "click"
        if kind == "click" and url.startswith(own):
            return url
        done[url] = link = f"{base}/t/{CODES[kind]}/{signer.token(kind, url)}"
        return link

    tracked_text = _TEXT_URL.sub(_text_link(tracked), text)
    if html is None:
        return tracked_text, None
    pixel_token = signer.token("open")
    pixel = (
        f'<img src="{base}/t/o/{pixel_token}.gif" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    tracked_html = _ANCHOR_HREF.sub(_html_link(tracked), html)
    end = tracked_html.rfind("</body>")
    if end < 0:
        return tracked_text, tracked_html + pixel
    return tracked_text, f"{tracked_html[:end]}{pixel}\n{tracked_html[end:]}"


def _text_link(tracked: Callable[[str], str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        url = found.rstrip(_TRAILING)
        return tracked(url) + found[len(url) :]

    return replace


def _html_link(tracked: Callable[[str], str]) -> Callable[[re.Match[str]], str]:
    def replace(match: re.Match[str]) -> str:
        # The attribute is HTML-escaped (``&amp;``); the redirect goes to the URL it means.
        url = html_text.unescape(match.group(3))
        quote = match.group(2)
        return f"{match.group(1)}{quote}{tracked(url)}{quote}"

    return replace
