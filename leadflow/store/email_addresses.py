"""Exactly one plain email address: what a lead's or a rep's email is and an envelope holds.

A CRM field such as ``a@x.test, evil@x.test`` or ``Victim <v@x.test>, Evil <e@y.test>`` is a
list of recipients to a mail parser; stored as an email it made the relay receive two RCPT TO.
``email-validator`` (the library behind pydantic's ``EmailStr``) decides what one address is:
no display name, no list, no comment, no quoted local part, no IP literal. Only the syntax is
checked, never DNS, and reserved and single-label domains (``example.com``, ``x.test``,
``intranet``) pass: whether a domain takes mail is the relay's to say, and tests need them.
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9.-]+)")
"""An ASCII address whose local part is RFC 5322's dot-atom: the validator accepts such a local
part as it is, so only the domain and the lengths are left to check."""
_MAX_LOCAL_PART = 64
_MAX_ADDRESS = 254


def address_problem(text: str) -> str | None:
    """None when ``text`` is exactly one plain address, else email-validator's reason.

    The validator costs about 0.1 ms an address, which would double the time of a large import.
    So the common form (:data:`_PLAIN_ADDRESS`) is taken here, its domain checked by the
    validator once per domain; anything else goes to the validator whole.
    tests/test_email_addresses.py holds the two ways to the same answers.
    """
    plain = _PLAIN_ADDRESS.fullmatch(text)
    if (
        plain is not None
        and len(text) <= _MAX_ADDRESS
        and len(plain[1]) <= _MAX_LOCAL_PART
        and _plain_domain(plain[2])
    ):
        return None
    return _validated(text)


@lru_cache(maxsize=65536)
def _plain_domain(domain: str) -> bool:
    # The length limit also holds for an address with the Unicode form of an IDNA (xn--)
    # domain, which can be longer: the validator sees such addresses whole.
    return "xn--" not in domain.lower() and _validated(f"postmaster@{domain}") is None


def _validated(text: str) -> str | None:
    try:
        validate_email(
            text,
            check_deliverability=False,
            test_environment=True,
            globally_deliverable=False,
        )
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        return reason[:1].lower() + reason[1:]
    return None


def recipient_address(recipient: str) -> str:
    """The one address of an outbox recipient: ``ann@x.test`` or ``Ann Lee <ann@x.test>``.

    Raises :class:`ValueError` with the reason when ``recipient`` holds no address, more than
    one (a list), or one that is not plain: the envelope gets exactly this one, or nothing.
    """
    if address_problem(recipient) is None:  # the common case: a lead's or a rep's email
        return recipient
    if "\r" in recipient or "\n" in recipient:
        msg = "it contains a line break"
        raise ValueError(msg)
    mailboxes = getaddresses([recipient])
    if len(mailboxes) != 1 or not mailboxes[0][1]:
        msg = f"it names {sum(1 for _name, address in mailboxes if address)} addresses"
        raise ValueError(msg)
    address = mailboxes[0][1]
    problem = address_problem(address)
    if problem is not None:
        raise ValueError(problem)
    return address


def ascii_address(address: str) -> str:
    """``address`` as it can travel without SMTPUTF8: a Unicode domain in its IDNA (xn--) form.

    Raises :class:`ValueError` when the local part is not ASCII (``björn@x.test``): the
    validator accepts such an address, but neither the envelope nor the ``To`` header leadflow
    writes can carry it, so the message is failed with this reason rather than retried.
    """
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        msg = (
            f"the part before the @-sign of {address!r} is not ASCII, which needs SMTPUTF8 "
            "and leadflow sends ASCII addresses only"
        )
        raise ValueError(msg)
    import idna

    try:
        # IDNA 2008 with UTS 46 mapping, as browsers and mail servers resolve names today:
        # Python's own codec is IDNA 2003, which maps ``straße.de`` to another domain,
        # ``strasse.de``.
        return f"{local}@{idna.encode(domain, uts46=True).decode('ascii')}"
    except UnicodeError as exc:
        msg = f"the domain of {address!r} has no IDNA form ({exc})"
        raise ValueError(msg) from None


def sending_problem(address: str) -> str | None:
    """Why the sender would refuse ``address`` (one plain address), or None.

    :func:`ascii_address`'s rule, applied where an email is stored (import, HTTP): the
    validator accepts ``björn@x.test`` (SMTPUTF8), which the sender fails for good, so the
    address is refused at the door instead of stored and never sent.
    """
    if address.isascii():  # the common case: sent as it is
        return None
    return _non_ascii_problem(address)


@lru_cache(maxsize=1024)
def _non_ascii_problem(address: str) -> str | None:
    try:
        ascii_address(address)
    except ValueError as exc:
        return str(exc)
    return None


def is_recipient(recipient: str | None) -> bool:
    """Whether ``recipient`` names exactly one address (a CRM's ``n/a``, blank or list does not)."""
    if recipient is None:
        return False
    return _is_recipient(recipient)


@lru_cache(maxsize=8192)
def _is_recipient(recipient: str) -> bool:
    # Remembered: a firing asks twice of its email's address (before rendering and as the
    # outbox row is made), and a batch's emails go to the same few reps.
    try:
        recipient_address(recipient)
    except ValueError:
        return False
    return True
