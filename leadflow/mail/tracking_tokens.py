"""The signed tokens in tracked email's pixel and links: what was sent to whom, and where to.

A token is ``PAYLOAD.SIGNATURE``, both base64url without padding: the payload is a compact JSON
list (kind, Message-ID, lead external id, template, target URL), the signature an HMAC-SHA256
of it, cut to 128 bits. The target travels inside the signed payload, so a redirect goes only
to a URL leadflow itself put in an email: change one character and the token is refused, which
is what keeps ``/t/c/`` from being an open redirect. Nothing is stored per link; a token stays
valid as long as the key does, after the outbox row it came from is pruned.

The key is derived from ``mail.unsubscribe_secret`` (set, or generated once and kept in the
store by :meth:`~leadflow.engine.runtime.Runtime.build`) with a label of its own, so every
process and replica on a store verifies the same tokens, and a tracking token can never pass
for an unsubscribe token or the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Literal

from leadflow.settings import Settings

Kind = Literal["open", "click", "unsubscribe"]
"""What a hit is: the pixel loaded, a link followed, the unsubscribe link followed."""

CODES: dict[Kind, str] = {"open": "o", "click": "c", "unsubscribe": "u"}
"""The letter of each kind, in a token and in its route (``/t/o/``, ``/t/c/``, ``/t/u/``)."""
_KINDS: dict[str, Kind] = {code: kind for kind, code in CODES.items()}
_LABEL = b"leadflow email tracking v1"
_SIGNATURE_BYTES = 16
MAX_TOKEN_LENGTH = 4096
"""Longer path segments are refused before any decoding: no link leadflow writes is this long."""
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_PROCESS_KEY = secrets.token_bytes(32)
"""Settings that reached no runtime (template checks on sample data) sign with a key random per
process: their links verify nowhere, as the unsubscribe links of such settings."""


@dataclass(frozen=True)
class TrackedLink:
    """What a token says: the kind of hit, the message, its lead and template, the target."""

    kind: Kind
    message_id: str
    lead: str
    """The lead's external id."""
    template: str
    url: str | None = None
    """Where a click or an unsubscribe goes; None for the pixel."""


def tracking_key(settings: Settings) -> bytes:
    """The HMAC key of tracking tokens: a sibling of the unsubscribe links' key."""
    secret = settings.mail.unsubscribe_secret
    if secret is None:
        return _PROCESS_KEY
    return _derived(secret.get_secret_value().encode())


@lru_cache(maxsize=8)
def _derived(secret: bytes) -> bytes:
    return hmac.digest(secret, _LABEL, "sha256")


class Signer:
    """Signs the tokens of one message: the fields its tokens share are encoded once, as this
    runs for every link of every tracked email a firing queues."""

    def __init__(self, key: bytes, message_id: str, lead: str, template: str) -> None:
        self._mac = _keyed(key)
        self._shared = ",".join(map(encode_basestring, (message_id, lead, template)))

    def token(self, kind: Kind, url: str | None = None) -> str:
        """The token of a hit of ``kind`` on ``url`` (None: the pixel) in this message."""
        # The same bytes json.dumps gives for the whole list, without encoding the rest again.
        target = "" if url is None else "," + encode_basestring(url)
        payload = f'["{CODES[kind]}",{self._shared}{target}]'.encode()
        mac = self._mac.copy()  # the key's pads are hashed once, not per token
        mac.update(payload)
        return f"{_encode(payload)}.{_encode(mac.digest()[:_SIGNATURE_BYTES])}"


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def verify(token: str, key: bytes, kind: Kind) -> TrackedLink | None:
    """The link ``token`` stands for when it is one leadflow signed for a hit of ``kind``;
    None for anything else (malformed, forged, altered, or a pixel token used as a link)."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    encoded_payload, encoded_signature = token.split(".")
    try:
        payload = _decode(encoded_payload)
        signature = _decode(encoded_signature)
    except (binascii.Error, ValueError):
        return None
    expected = hmac.digest(key, payload, "sha256")[:_SIGNATURE_BYTES]
    # Constant time: the comparison must not tell how much of a forged signature was right.
    if not hmac.compare_digest(signature, expected):
        return None
    return _link(payload, kind)


def _link(payload: bytes, kind: Kind) -> TrackedLink | None:
    try:
        fields = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):  # pragma: no cover - we signed it
        return None
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        return None  # pragma: no cover - we signed it
    if len(fields) not in (4, 5) or _KINDS.get(fields[0]) != kind:
        return None
    url = fields[4] if len(fields) == 5 else None
    if (url is None) != (kind == "open"):
        return None  # pragma: no cover - we signed it
    return TrackedLink(kind, fields[1], fields[2], fields[3], url)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(text: str) -> bytes:
    """The bytes of canonical unpadded base64url ``text``; ValueError for any other spelling,
    so no two tokens stand for the same bytes (a changed character is always refused)."""
    if not _BASE64URL.fullmatch(text):
        msg = "not base64url"
        raise ValueError(msg)
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _encode(raw) != text:
        msg = "not canonical base64url"
        raise ValueError(msg)
    return raw
