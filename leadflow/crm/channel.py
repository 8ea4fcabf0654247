"""CRM updates as an outbox channel: each claimed row's body posted, signed, to its recipient URL.

The row was written by :mod:`leadflow.crm.updates`; :mod:`leadflow.crm.webhook` posts it and
classifies the answer. The HTTP client is opened at the first update a drain delivers, so a
process with no updates queued needs no ``crm.webhook_secret``, and closed when the drain ends.
Nothing is withheld at claim time, and no failure is a hard bounce.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from leadflow.crm.updates import WEBHOOK_CHANNEL
from leadflow.crm.webhook import WebhookTransport
from leadflow.errors import DeliveryError
from leadflow.outbox.store import ClaimedMessage, Outcome
from leadflow.settings import CrmSettings

log = structlog.get_logger("leadflow.crm")


class WebhookChannel:
    """Delivers ``webhook`` rows with a :class:`WebhookTransport` of its own."""

    name = WEBHOOK_CHANNEL

    def __init__(self, settings: CrmSettings) -> None:
        self._settings = settings
        self._transport: WebhookTransport | None = None

    @property
    def longest_attempt(self) -> timedelta:
        # Connecting and the request, each bounded by webhook_timeout.
        return 2 * self._settings.webhook_timeout

    def withhold(self, session: Session, due: Sequence[int]) -> set[int]:
        return set()

    async def deliver(self, message: ClaimedMessage, now: datetime) -> None:
        try:
            self._transport = self._transport or WebhookTransport(self._settings)
            headers = {str(k): str(v) for k, v in message.headers.items()}
            body = message.body_text.encode()
            await self._transport.deliver(message.recipient, body, headers=headers, now=now)
        except DeliveryError:
            raise
        except Exception as exc:  # the per-message boundary, its error kept readable
            # A missing crm.webhook_secret lands here: `leadflow outbox --failed` says so plainly.
            log.exception("outbox_delivery_crashed", outbox_id=message.id)
            raise DeliveryError(str(exc), permanent=False) from exc

    def is_hard_bounce(self, message: ClaimedMessage, error: DeliveryError) -> bool:
        return False

    def record_hard_bounces(
        self, session: Session, bounces: Sequence[Outcome], now: datetime
    ) -> None:
        """Never called: no webhook failure is a hard bounce."""

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
