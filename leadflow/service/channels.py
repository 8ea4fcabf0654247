"""Which channels this process's outbox delivers through: email and the CRM's webhooks.

The outbox (:mod:`leadflow.outbox`) knows no channel, and mail and crm each know only the
outbox, so naming both takes a module above all three that neither imports. The service layer
is that place: it already composes the whole process around the daemon, and ``leadflow send``
and the demo, which deliver the same outbox, compose it the same way from here.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import Engine

from leadflow.clock import Clock
from leadflow.crm.channel import WebhookChannel
from leadflow.mail.channel import EmailChannel
from leadflow.mail.transports import Transport, transport_for
from leadflow.outbox.channel import Channel
from leadflow.outbox.delivery import DrainReport, drain
from leadflow.settings import Settings


def channels_for(settings: Settings, transport: Transport) -> list[Channel]:
    """Email through ``transport`` (its maker closes it) and the CRM's webhooks."""
    return [EmailChannel(settings, transport), WebhookChannel(settings.crm)]


async def drain_configured(
    engine: Engine,
    settings: Settings,
    clock: Clock,
    *,
    once: bool,
    stop: asyncio.Event | None = None,
    report: DrainReport | None = None,
) -> DrainReport:
    """:func:`drain` with email through the transport ``mail.transport`` names, closed afterwards."""
    transport = transport_for(settings, clock.now())
    try:
        channels = channels_for(settings, transport)
        return await drain(engine, settings, clock, channels, once=once, stop=stop, report=report)
    finally:
        await transport.close()
