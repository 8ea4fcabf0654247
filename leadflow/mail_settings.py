"""The ``mail:`` section of the configuration: sender, relay, retries, frequency cap, send
window and engagement tracking."""

from __future__ import annotations

import functools
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadflow.durations import format_duration
from leadflow.setting_types import Duration, Number, Section, TimeOfDay, WholeNumber


class SmtpSettings(Section):
    host: str = "localhost"
    port: WholeNumber = Field(default=25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    timeout: Duration = timedelta(seconds=30)
    """Bounds opening a connection, and MAIL, RCPT, DATA and the message's write."""
    data_done_timeout: Duration = timedelta(minutes=10)
    """How long the reply to the message's final "." is waited for: a relay answers after its
    end-of-data checks, and giving up sooner does not stop it delivering (RFC 5321 4.5.3.2.6,
    Postfix's ``smtp_data_done_timeout``). No reply by then: the outcome is unknown."""
    connections: WholeNumber = Field(default=4, ge=1, le=64)
    rate_per_second: Number = Field(default=50.0, gt=0)
    ca_file: Path | None = None
    """Extra CA bundle to trust for the relay's certificate (a private relay)."""

    @property
    def longest_delivery(self) -> timedelta:
        """A delivery's longest time: a connection (``timeout``), the commands and the
        message's write (``timeout``), the reply to its end (``data_done_timeout``)."""
        return 2 * self.timeout + self.data_done_timeout


class RetrySettings(Section):
    first_delay: Duration = timedelta(seconds=30)
    max_delay: Duration = timedelta(hours=1)
    give_up_after: Duration = timedelta(days=2)


class FrequencyCap(Section):
    messages: WholeNumber = Field(default=3, ge=1)
    window: Duration = timedelta(days=7)


class SendWindow(Section):
    """Marketing email goes out only between these local times of the recipient."""

    start: TimeOfDay = time(8, 0)
    end: TimeOfDay = time(20, 0)


_BASE_URL = re.compile(r"^https?://[^/?#\s]+(/[^?#\s]*)?$")


class TrackingSettings(Section):
    """Engagement tracking of marketing email: an open pixel and signed click redirects served
    by the daemon (docs/email.md, "Engagement tracking"). Off unless turned on: a pixel is a
    decision about the recipients' privacy, not a side effect of having a public URL."""

    enabled: bool = False
    base_url: str | None = None
    """The daemon's public URL as recipients reach it, e.g. ``https://leadflow.example.com``."""
    scanner_window: Duration = timedelta(seconds=10)
    """A hit this soon after the message was sent is a security gateway's, not a person's."""
    repeat_window: Duration = timedelta(hours=1)
    """The same open or click again within this time is kept but earns nothing."""

    @field_validator("base_url")
    @classmethod
    def _public_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not _BASE_URL.match(url):
            msg = f"expected an http(s) URL without a query, e.g. https://leadflow.example.com; got {url!r}"
            raise ValueError(msg)
        return url.rstrip("/")

    @model_validator(mode="after")
    def _enabled_needs_a_url(self) -> TrackingSettings:
        if self.enabled and self.base_url is None:
            msg = (
                "base_url is required when enabled is true: "
                "the daemon's public URL, e.g. https://leadflow.example.com"
            )
            raise ValueError(msg)
        return self


class MailSettings(Section):
    transport: Literal["maildir", "smtp"] = "maildir"
    maildir: Path = Path("state/maildir")
    sender: str = Field(default="leadflow <leadflow@localhost>", alias="from")
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    """An unsubscribe page of your own (the CRM's preference centre), with ``{external_id}`` and
    ``{token}``; unset: leadflow's own page at ``tracking.base_url`` (docs/email.md)."""
    unsubscribe_secret: SecretStr | None = None
    """HMAC key for unsubscribe tokens; set it in production (a secret: environment only)."""
    message_id_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    """After the ``@`` of every Message-ID; unset: the ``from`` address's domain when it is a
    full domain name (``acme.com``), else ``leadflow``. Spam filters score a Message-ID whose
    domain has no dot (SpamAssassin's ``MSGID_NOFQDN``)."""
    smtp: SmtpSettings = SmtpSettings()
    retry: RetrySettings = RetrySettings()
    lease: Duration = Field(default=timedelta(minutes=15), validate_default=True)
    """How long a sender holds the rows it claimed; longer than a delivery's longest time."""
    batch_size: WholeNumber = Field(default=100, ge=1, le=10_000)
    concurrency: WholeNumber = Field(default=8, ge=1, le=256)
    poll_interval: Duration = timedelta(seconds=2)
    frequency_cap: FrequencyCap = FrequencyCap()
    send_window: SendWindow = SendWindow()
    tracking: TrackingSettings = TrackingSettings()
    keep_sent: Duration = timedelta(days=90)
    """Settled outbox rows (sent, failed, suppressed) older than this are deleted by the daemon's
    retention job; pending and sending rows never are."""

    @property
    def message_id_host(self) -> str:
        """The domain after a Message-ID's ``@``: :attr:`message_id_domain`, else the sender's."""
        if self.message_id_domain is not None:
            return self.message_id_domain
        return _full_domain_of(self.sender) or "leadflow"

    @field_validator("sender", "reply_to")
    @classmethod
    def _one_address(cls, value: str | None) -> str | None:
        # The envelope sender is this address (parseaddr): "not an address" made it "not", and
        # relays accepting that wrote From: not an address into every message.
        if value is not None:
            problem = _address_problem(value)
            if problem is not None:
                msg = (
                    f"{value!r} is not one email address ({problem}); write e.g. "
                    "'Leadflow <leadflow@example.com>'"
                )
                raise ValueError(msg)
        return value

    @field_validator("keep_sent")
    @classmethod
    def _keep_sent_covers_the_cap(cls, keep: timedelta, info: ValidationInfo) -> timedelta:
        # The frequency cap counts the lead's marketing rows of its window: pruning inside the
        # window would let a lead get more email than the cap allows.
        cap = info.data.get("frequency_cap")
        if isinstance(cap, FrequencyCap) and keep < cap.window:
            msg = (
                f"must be at least frequency_cap.window ({format_duration(cap.window)}), "
                f"which counts the rows it would delete; got {format_duration(keep)}"
            )
            raise ValueError(msg)
        return keep

    @field_validator("lease")
    @classmethod
    def _lease_outlasts_a_delivery(cls, lease: timedelta, info: ValidationInfo) -> timedelta:
        # A lease shorter than a delivery's longest time would let a second sender claim a
        # message that is still being delivered (or whose reply the relay still owes), and
        # send it twice.
        # Only SMTP's times bound a delivery: a maildir store was refused for a lease shorter
        # than timeouts it never waits for.
        smtp = info.data.get("smtp")
        by_smtp = info.data.get("transport") == "smtp"
        if by_smtp and isinstance(smtp, SmtpSettings) and lease <= smtp.longest_delivery:
            msg = (
                "must be longer than a delivery's longest time, twice smtp.timeout and "
                f"smtp.data_done_timeout (2 x {_spelled(smtp.timeout)} + "
                f"{_spelled(smtp.data_done_timeout)} = {_spelled(smtp.longest_delivery)}); "
                f"got {_spelled(lease)}"
            )
            raise ValueError(msg)
        return lease


@functools.lru_cache(maxsize=16)  # asked for each message enqueued
def _full_domain_of(address: str) -> str | None:
    """The ASCII (IDNA) domain of ``address`` when it has a dot, else None (``localhost``)."""
    from email.utils import parseaddr

    from leadflow.store.email_addresses import ascii_address

    domain = parseaddr(address)[1].rpartition("@")[2].rstrip(".")
    if "." not in domain:
        return None
    try:  # the domain as the mail's addresses travel (IDNA 2008)
        ascii_domain = ascii_address(f"x@{domain}").rpartition("@")[2]
    except ValueError:
        return None
    return ascii_domain.lower() if re.fullmatch(r"[A-Za-z0-9.-]+", ascii_domain) else None


def _address_problem(text: str) -> str | None:
    """None when ``text`` is one address, with or without a display name; else why not.

    Syntax only: a domain such as ``localhost`` (the default's) is the relay's to judge."""
    from email.utils import getaddresses

    found = getaddresses([text])
    if len(found) != 1:
        return "expected exactly one address"
    local, at, domain = found[0][1].rpartition("@")
    if not (at and local and domain) or any(char.isspace() for char in found[0][1]):
        return "expected exactly one address such as leadflow@example.com"
    return None


def _spelled(duration: timedelta) -> str:
    seconds = duration.total_seconds()
    return format_duration(duration) if seconds == int(seconds) else f"{seconds:g}s"
