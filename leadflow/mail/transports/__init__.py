"""Where sent email goes: a maildir on disk (the embedded default) or an SMTP relay."""

from __future__ import annotations

from leadflow.mail.transports.base import Transport
from leadflow.settings import Settings


def transport_for(settings: Settings) -> Transport:
    """The transport ``mail.transport`` names, configured from ``settings``."""
    if settings.mail.transport == "smtp":
        from leadflow.mail.transports.smtp import SmtpTransport

        return SmtpTransport(settings.mail.smtp)
    from leadflow.mail.transports.maildir import MaildirTransport

    return MaildirTransport(settings.path(settings.mail.maildir))


__all__ = ["Transport", "transport_for"]
