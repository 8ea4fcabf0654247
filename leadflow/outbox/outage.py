"""A destination failing every message (the relay down, or refusing leadflow), told as one outage.

While the SMTP relay is down or refuses leadflow itself, every message fails alike at every
attempt: one warning per message and attempt was thousands of lines a minute with a large
outbox, and said one thing. The sender says it once when it starts (``outbox_relay_failing``,
with the reason), then at most once per :data:`SUMMARY_EVERY` of the outage while failures go on
(``outbox_relay_still_failing``: how long, how many attempts failed since the last line, how
many messages wait for their retry, the next retry), and once when a message of the channel is
delivered again (``outbox_relay_recovered``, with how long it was down). Each message's own
line (``outbox_relay_refused``, ``outbox_retry``) is logged at debug level meanwhile. Outages
that come and go faster than that (a relay refusing some domains, delivering others) are told
at most once per :data:`SUMMARY_EVERY` too (:class:`Outages`).

Time is the sender's clock, so the outage's length is the injected clock's in tests. The counts
are this sender's: with several senders, each tells of the messages it tried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from leadflow.durations import format_duration
from leadflow.errors import DeliveryError

SUMMARY_EVERY = timedelta(seconds=60)
"""The shortest time between two lines about one outage."""


def outage_reason(error: DeliveryError) -> str | None:
    """``refused`` (the relay refuses leadflow itself), ``unreachable`` (no connection, no
    answer), or None: a failure of this message alone (a mailbox, greylisting, the content), or
    one whose outcome is unknown (the relay may have delivered it)."""
    if error.permanent or error.outcome_unknown:
        return None
    if error.relay_refusal:
        return "refused"
    if error.unreachable:
        return "unreachable"
    return None


@dataclass
class _Outage:
    since: datetime
    announced: bool = False
    """Whether a line told of it (``outbox_relay_failing``): only then is its end told."""
    failed: int = 0
    """Attempts failed since the last line (all of them while it is not announced)."""
    total: int = 0
    """Attempts failed since the outage began."""
    waiting: dict[int, datetime] = field(default_factory=dict)
    """Messages whose last attempt failed this way: outbox id -> when they are tried again."""


@dataclass
class Outages:
    """The outage of each channel (by name) its sender sees, logged to ``log``.

    At most one line per ``every`` per channel, but for the recovery of an outage told of: a
    relay that refuses some recipients' domains and delivers others' (a Postfix allowing only
    its own domains) fails and delivers in turn, and an outage begun within ``every`` of the
    last line is not told at once, nor its end; it is told once ``every`` has passed, if it
    still goes on."""

    log: Any
    every: timedelta = SUMMARY_EVERY
    _current: dict[str, _Outage] = field(default_factory=dict)
    _last_line: dict[str, datetime] = field(default_factory=dict)

    def failed(
        self,
        channel: str,
        outbox_id: int,
        error: DeliveryError,
        reason: str,
        retry_at: datetime,
        now: datetime,
    ) -> None:
        """An attempt failed for ``reason`` (:func:`outage_reason`); tried again at ``retry_at``."""
        outage = self._current.setdefault(channel, _Outage(since=now))
        outage.failed += 1
        outage.total += 1
        outage.waiting[outbox_id] = retry_at
        last = self._last_line.get(channel)
        if last is not None and now - last < self.every:
            return
        self._last_line[channel] = now
        if not outage.announced:
            outage.announced = True
            self.log.warning(
                "outbox_relay_failing",
                channel=channel,
                reason=reason,
                error=str(error),
                outbox_id=outbox_id,
                failed_attempts=outage.failed,
                next_attempt_at=retry_at.isoformat(),
            )
        else:
            self.log.warning(
                "outbox_relay_still_failing",
                channel=channel,
                reason=reason,
                error=str(error),
                down_for=format_duration(now - outage.since),
                failed_attempts=outage.failed,
                waiting=len(outage.waiting),
                # A message whose retry time has passed is being tried again now.
                next_attempt_at=max(min(outage.waiting.values()), now).isoformat(),
            )
        outage.failed = 0

    def settled(self, channel: str, outbox_id: int, *, delivered: bool, now: datetime) -> None:
        """Message ``outbox_id`` no longer waits for the channel: ``delivered`` ends its outage."""
        outage = self._current.get(channel)
        if outage is None:
            return
        outage.waiting.pop(outbox_id, None)
        if not delivered:
            return
        del self._current[channel]
        if not outage.announced:
            return
        self._last_line[channel] = now
        self.log.info(
            "outbox_relay_recovered",
            channel=channel,
            down_for=format_duration(now - outage.since),
            failed_attempts=outage.total,
        )
