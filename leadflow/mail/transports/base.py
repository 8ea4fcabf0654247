"""The one thing a transport does: hand a finished message to its destination, or say why not.

A transport raises :class:`~leadflow.errors.DeliveryError` for a message it could not deliver,
with ``permanent`` set when retrying cannot help (an SMTP 5xx). Anything else it raises is
treated by the sender as transient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class Transport(Protocol):
    """Delivers serialized RFC 5322 messages; safe to call from many tasks at once."""

    name: str

    async def deliver(
        self, message: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> None:
        """Deliver ``message`` (CRLF line endings) to ``recipients`` with envelope ``sender``."""
        ...

    async def close(self) -> None:
        """Release connections; the transport is not used afterwards."""
        ...
