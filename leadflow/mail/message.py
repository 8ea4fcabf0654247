"""The RFC 5322 message for an outbox row: headers, multipart/alternative, quoted-printable.

Built directly as bytes (an order of magnitude faster than ``email.message``), with every header
value checked for CR/LF so that nothing a template or a CRM field holds can inject a header.
"""

from __future__ import annotations

import binascii
import functools
from datetime import datetime, timedelta
from email.header import Header
from email.utils import format_datetime, formataddr, getaddresses, parseaddr

from leadflow.errors import DeliveryError
from leadflow.outbox.store import ClaimedMessage
from leadflow.settings import Settings
from leadflow.store.email_addresses import ascii_address, recipient_address


def envelope_sender(settings: Settings) -> str:
    return parseaddr(settings.mail.sender)[1]


def envelope_recipients(recipient: str) -> list[str]:
    """Exactly one address: a row holding a list fails for good, it never widens the envelope."""
    try:
        return [ascii_address(recipient_address(recipient))]
    except ValueError as exc:
        msg = (
            f"recipient {recipient!r} is not exactly one email address ({exc}); "
            "not sent: correct the email in the CRM and import it again"
        )
        raise DeliveryError(msg, permanent=True) from None


def build_message(message: ClaimedMessage, settings: Settings, now: datetime) -> bytes:
    """The RFC 5322 bytes: text, or multipart/alternative text+html, with the row's headers.

    Assembled directly rather than through ``email.message``: its header machinery costs about
    a millisecond per message, which alone would cap a sender below what a relay can take.
    Bodies are UTF-8 quoted-printable, so the ``=_`` boundary can never occur inside them.
    """
    headers = [
        ("From", _addresses(settings.mail.sender)),
        ("To", _addresses(message.recipient)),
    ]
    if settings.mail.reply_to:
        headers.append(("Reply-To", _addresses(settings.mail.reply_to)))
    headers += [
        ("Subject", _encoded("Subject", message.subject)),
        ("Date", _date_header(now.replace(microsecond=0), now.utcoffset())),
        ("Message-ID", message.message_id),
        *((str(name), _encoded(str(name), str(value))) for name, value in message.headers.items()),
        ("MIME-Version", "1.0"),
    ]
    if message.body_html is None:
        headers += _TEXT_PART
        body = _quoted_printable(message.body_text)
    else:
        boundary = "=_" + message.message_id.strip("<>").split("@")[0]
        headers.append(("Content-Type", f'multipart/alternative; boundary="{boundary}"'))
        body = b"".join(
            [
                f"--{boundary}\r\n".encode(),
                *(f"{k}: {v}\r\n".encode() for k, v in _TEXT_PART),
                b"\r\n",
                _quoted_printable(message.body_text),
                f"\r\n--{boundary}\r\n".encode(),
                *(f"{k}: {v}\r\n".encode() for k, v in _HTML_PART),
                b"\r\n",
                _quoted_printable(message.body_html),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("ascii") + b"\r\n" + body


_TEXT_PART = [
    ("Content-Type", 'text/plain; charset="utf-8"'),
    ("Content-Transfer-Encoding", "quoted-printable"),
]
_HTML_PART = [
    ("Content-Type", 'text/html; charset="utf-8"'),
    ("Content-Transfer-Encoding", "quoted-printable"),
]


@functools.lru_cache(maxsize=4)
def _date_header(now: datetime, _offset: timedelta | None) -> str:
    """``now`` as a Date header; one formatting per second, not per message. The offset is in
    the key because instants that compare equal in two zones are written differently."""
    return format_datetime(now)


def _quoted_printable(text: str) -> bytes:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    return binascii.b2a_qp(lines, istext=True).replace(b"\n", b"\r\n")


def _checked(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        msg = f"the {name} header may not contain a line break: {value!r}"
        raise ValueError(msg)
    return value


def _encoded(name: str, value: str) -> str:
    """The value as is when ASCII (a URL must not be folded), else RFC 2047 encoded words."""
    value = _checked(name, value)
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _addresses(value: str) -> str:
    """Address list with display names RFC 2047-encoded where needed."""
    _checked("address", value)
    if value.isascii():
        return value
    try:
        pairs = [(name, ascii_address(address)) for name, address in getaddresses([value])]
    except ValueError as exc:
        msg = f"recipient {value!r} cannot be sent: {exc}; correct the email in the CRM"
        raise DeliveryError(msg, permanent=True) from None
    return ", ".join(formataddr(pair, charset="utf-8") for pair in pairs)
