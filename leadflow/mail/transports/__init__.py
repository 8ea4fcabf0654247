"""Where sent email goes: a maildir on disk (the embedded default) or an SMTP relay."""

from __future__ import annotations

from datetime import datetime

from leadflow.mail.transports.base import Transport
from leadflow.settings import Settings


def transport_for(settings: Settings, now: datetime | None = None) -> Transport:
    """The transport ``mail.transport`` names, configured from ``settings``; a maildir's stale
    files in ``tmp/`` deleted when ``now`` is given (the sender starting)."""
    if settings.mail.transport == "smtp":
        from leadflow.mail.transports.smtp import SmtpTransport

        return SmtpTransport(settings.mail.smtp)
    from leadflow.mail.transports.maildir import MaildirTransport

    transport = MaildirTransport(settings.path(settings.mail.maildir))
    if now is not None:
        transport.remove_stale_temporaries(now)
    return transport


__all__ = ["Transport", "transport_for"]
