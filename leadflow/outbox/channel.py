"""What a channel is to the outbox: the one piece that knows what a row of its kind means.

The delivery loop (:mod:`leadflow.outbox.delivery`) hands each claimed row to the channel
registered for the row's ``channel`` value and learns the outcome from how :meth:`deliver`
ends: it returns (delivered), or raises :class:`~leadflow.errors.DeliveryError` with
``permanent`` saying whether retrying can help; anything else it raises counts as transient.
A channel may also withhold rows at claim time and name hard bounces, whose consequences it
writes with the outcomes. Email lives in :mod:`leadflow.mail.channel`, CRM webhooks in
:mod:`leadflow.crm.channel`; which channels a process delivers through is decided at its edge
(:mod:`leadflow.service.channels`), so adding one touches no other.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from leadflow.errors import DeliveryError
from leadflow.outbox.store import ClaimedMessage, Outcome


class Channel(Protocol):
    """Delivers the outbox rows whose ``channel`` column is :attr:`name`; safe to call from many
    tasks at once."""

    @property
    def name(self) -> str:
        """The ``channel`` value of the rows this channel delivers."""
        ...

    @property
    def longest_attempt(self) -> timedelta:
        """How long one :meth:`deliver` call takes at most, every wait on its destination
        included: a row is delivered only while more than this is left of its lease, or another
        sender may claim it and deliver it too."""
        ...

    def withhold(self, session: Session, due: Sequence[int]) -> Collection[int]:
        """At claim time, in the claim's transaction: of the due rows ``due`` (of every
        channel), the ids of this channel's rows that must not be delivered, already marked so.
        """
        ...

    async def deliver(self, message: ClaimedMessage, now: datetime) -> None:
        """Deliver ``message``; :class:`~leadflow.errors.DeliveryError` when it was not."""
        ...

    def is_hard_bounce(self, message: ClaimedMessage, error: DeliveryError) -> bool:
        """Whether permanent ``error`` says the lead can never be reached this way."""
        ...

    def record_hard_bounces(
        self, session: Session, bounces: Sequence[Outcome], now: datetime
    ) -> None:
        """Write what follows from ``bounces`` (hard-bounce outcomes, each of a lead) in the
        transaction that records the outcomes."""
        ...

    async def close(self) -> None:
        """Release what the channel opened itself; it may be used again afterwards."""
        ...
