"""SMTP relay delivery with aiosmtplib: a small pool of reused connections and a rate limit.

Connections are opened on demand up to ``mail.smtp.connections`` and returned to the pool after
each message, so a burst of 20,000 messages costs a handful of TLS handshakes, not 20,000.
Taking a connection (opening it: TCP, greeting, EHLO, STARTTLS, AUTH) is bounded by
``mail.smtp.timeout``, and so are MAIL, RCPT, DATA and writing the message. The reply to the
final "." is waited for up to ``mail.smtp.data_done_timeout`` (10 minutes, RFC 5321 4.5.3.2.6;
Postfix's client: ``smtp_data_done_timeout = 600s``): a relay may run its end-of-data checks
(content filters, milters, a policy ``sleep``) before it answers, and it has the whole message
by then. A client that gives up sooner does not stop the relay from delivering the message, and
sends it again on retry (RFC 1047). Errors are classified at this boundary: a 4xx reply or a
connection problem is transient (the sender retries later), a 5xx reply is permanent but for the
relay refusing leadflow itself (a 5.7.x policy reply, a 5xx to the greeting or MAIL: transient
with :attr:`~leadflow.errors.DeliveryError.relay_refusal` set); no reply to the final "." is
transient with :attr:`~leadflow.errors.DeliveryError.outcome_unknown` set.

A message goes out as MAIL, RCPT and DATA commands of its own (:func:`_transact`), not through
``SMTP.sendmail``: that parses each address twice with ``email.utils`` (four parses a message,
about a fifth of the sender's CPU against a local relay) and rewrites the message's line endings
once more to size it, where leadflow's envelope addresses are already checked plain addresses
and its messages arrive with CRLF line endings (the :class:`Transport` contract).

Where the server advertises PIPELINING (RFC 2920), MAIL, the RCPTs and DATA go out in one
write and their replies are read in order, every one checked (:func:`_pipelined`): half the
writes and wake-ups a message, on both sides, which was about 30 % of the transport's CPU
against a local relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Sequence
from datetime import timedelta

import aiosmtplib
import structlog
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings

from leadflow.durations import format_duration
from leadflow.errors import DeliveryError, RecipientRejectedError
from leadflow.mail_settings import SmtpSettings
from leadflow.outbox.attempt_start import waiting_to_start

log = structlog.get_logger("leadflow.mail")

_IDLE_CHECK_AFTER = 20.0
"""Seconds a pooled connection may sit idle before a NOOP checks the server still has it."""
REUSE_TIME_LIMIT = 300.0
"""Seconds a connection is reused for, then QUIT and opened anew (Postfix's own client does the
same: ``smtp_connection_reuse_time_limit``, 300 s). A connection kept for the whole life of the
daemon stayed with the relay process that accepted it: after ``postfix reload`` (new recipient
restrictions, a new certificate) its old smtpd went on serving leadflow with the old settings
for as long as mail kept flowing, and a relay behind a load balancer never rebalanced it."""


class RateLimiter:
    """At most ``rate`` acquisitions per second across all tasks (a virtual-schedule bucket)."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        self._interval = 1.0 / rate
        self._allowance = self._interval * max(1, burst)
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        slot = max(self._next, now - self._allowance + self._interval)
        self._next = slot + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


class SmtpTransport:
    """Delivers through one relay over at most ``settings.connections`` reused connections."""

    name = "smtp"

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        local_hostname: str | None = None,
        reuse_time_limit: float = REUSE_TIME_LIMIT,
    ) -> None:
        self.settings = settings
        self._local_hostname = local_hostname
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._opened_at: dict[aiosmtplib.SMTP, float] = {}
        self._reuse_time_limit = reuse_time_limit
        self._slots = asyncio.Semaphore(settings.connections)
        self._limiter = RateLimiter(settings.rate_per_second, burst=settings.connections)
        self._timeout = settings.timeout.total_seconds()
        self.connections_opened = 0

    async def deliver(
        self, message: bytes, *, sender: str, recipients: Sequence[str], message_id: str
    ) -> None:
        with waiting_to_start():  # cancelled here (a stop past its grace), nothing went out
            await self._limiter.acquire()
            await self._slots.acquire()
        try:
            await self._deliver_in_slot(message, sender, recipients, message_id)
        finally:
            self._slots.release()

    async def _deliver_in_slot(
        self, message: bytes, sender: str, recipients: Sequence[str], message_id: str
    ) -> None:
        # A connection used moments ago is taken as it is: the timed checkout (NOOP, QUIT,
        # connect) costs a timer a message, a tenth of the sender's CPU at a local relay.
        client = self._recently_used()
        if client is None:
            try:
                async with asyncio.timeout(self._timeout):
                    client = await self._checkout()
            except TimeoutError as exc:
                what = f"a connection to {self.settings.host}:{self.settings.port}"
                raise classify(exc, what) from exc
        stage = _Stage(self.settings.data_done_timeout.total_seconds())
        try:
            async with asyncio.timeout(self._timeout) as scope:
                stage.scope = scope
                await _transact(client, sender, recipients, message, stage)
        except asyncio.CancelledError:
            # A stopping daemon past its grace: the relay may deliver what it has.
            if stage.message_written:
                log.warning(
                    "outbox_outcome_unknown",
                    message_id=message_id,
                    error="stopped while waiting for the reply to the end of DATA",
                )
            self._give_back(client, keep=False)  # a reply may still be owed on it
            raise
        except Exception as exc:
            if stage.message_written and not _answered(exc):
                error = _outcome_unknown(exc, message_id, stage)
            else:
                error = classify(exc, message_id)
            # A relay refusing leadflow is fixed by reconfiguring it (postfix reload), which a
            # session opened before goes on ignoring: the next attempt opens a new one.
            self._give_back(client, keep=_still_usable(client, exc) and not error.relay_refusal)
            raise error from exc
        self._give_back(client, keep=True)

    async def close(self) -> None:
        """QUIT every pooled connection, all at once: one after another, closing 32 connections
        to a relay answering in 50 ms would take 1.6 s."""
        idle, self._idle = self._idle, []
        self._opened_at.clear()
        await asyncio.gather(*(_quit(client) for client, _ in idle))

    def _recently_used(self) -> aiosmtplib.SMTP | None:
        """The last pooled connection if it needs no check (connected, idle for less than
        the NOOP check's interval, within its reuse limit); else None, the pool unchanged."""
        if not self._idle:
            return None
        client, since = self._idle[-1]
        now = time.monotonic()
        fresh = now - since < _IDLE_CHECK_AFTER
        young = now - self._opened_at.get(client, 0.0) < self._reuse_time_limit
        if not (client.is_connected and fresh and young):
            return None
        self._idle.pop()
        return client

    async def _checkout(self) -> aiosmtplib.SMTP:
        while self._idle:
            client, since = self._idle.pop()
            opened = self._opened_at.pop(client, 0.0)
            if not client.is_connected:
                continue
            now = time.monotonic()
            if now - opened >= self._reuse_time_limit:
                await _quit(client)
                continue
            if now - since < _IDLE_CHECK_AFTER or await _answers(client):
                self._opened_at[client] = opened
                return client
            await _quit(client)
        return await self._connect()

    async def _connect(self) -> aiosmtplib.SMTP:
        settings = self.settings
        password = settings.password.get_secret_value() if settings.password else None
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            local_hostname=self._local_hostname,
            timeout=self._timeout,
            use_tls=settings.security == "tls",
            start_tls=settings.security == "starttls",
            tls_context=self._tls_context() if settings.security != "none" else None,
            username=settings.username,
            password=password,
        )
        try:
            await client.connect()
        except Exception as exc:
            raise classify(exc, f"a connection to {settings.host}:{settings.port}") from exc
        self.connections_opened += 1
        self._opened_at[client] = time.monotonic()
        return client

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.settings.ca_file is not None:
            context.load_verify_locations(cafile=str(self.settings.ca_file))
        return context

    def _give_back(self, client: aiosmtplib.SMTP, *, keep: bool) -> None:
        if keep and client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            self._opened_at.pop(client, None)
            client.close()


class _Stage:
    """How far one mail transaction got, and the deadline of the step it is at.

    Until the message's final "." is handed to the connection the transaction is bounded by
    ``mail.smtp.timeout`` (:meth:`SmtpTransport.deliver`'s scope); from the moment the written
    message has left, the reply is waited for up to ``data_done_timeout``.
    """

    def __init__(self, data_done_timeout: float) -> None:
        self.data_done_timeout = data_done_timeout
        self.scope: asyncio.Timeout | None = None
        self.message_written = False
        """The whole message and its "." went to the connection: from here its outcome is the
        relay's, and only its reply tells it."""
        self.waiting_for_reply = False

    def wait_for_final_reply(self) -> None:
        self.waiting_for_reply = True
        if self.scope is not None:
            loop = asyncio.get_running_loop()
            self.scope.reschedule(loop.time() + self.data_done_timeout)


_COMMAND_ADDRESS = re.compile(r"[!#-;=?-~]+")
"""Printable ASCII but space, ``"``, ``<`` and ``>``: an address that can stand between the
angle brackets of a MAIL or RCPT command as it is (what aiosmtplib's own check allows)."""


async def _transact(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    stage: _Stage,
) -> None:
    """One mail transaction: MAIL, a RCPT per recipient, DATA; RSET after a refusal.

    Raises what ``SMTP.sendmail`` raises in each case, so :func:`classify` reads them the same.
    An address that cannot stand in a command as it is (non-ASCII, quoted) is written by
    aiosmtplib's own MAIL and RCPT, which quote it.
    """
    if client.is_ehlo_or_helo_needed:
        await _greet(client)
    plain = all(_COMMAND_ADDRESS.fullmatch(a) for a in (sender, *recipients))
    try:
        if plain and client.supports_extension("pipelining"):
            await _pipelined(client, sender, recipients, message, stage)
        else:
            await _envelope(client, sender, recipients, len(message), plain=plain)
            await _data(client, message, stage)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        # As sendmail does: reset the envelope so that the pooled session can take the next.
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset(timeout=None)
        raise


def _mail_from(client: aiosmtplib.SMTP, sender: str, size: int) -> list[bytes]:
    # The message is built with CRLF line endings, so its length is its size on the wire
    # (RFC 1870 leaves the dot-stuffing out of the count).
    options = [b"SIZE=%d" % size] if client.supports_extension("size") else []
    return [b"MAIL", b"FROM:<%s>" % sender.encode(), *options]


async def _envelope(
    client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], size: int, *, plain: bool
) -> None:
    """MAIL and RCPT; raises unless at least one recipient is accepted. ``plain``: every
    address can be written as it is; else aiosmtplib's ``mail`` and ``rcpt`` quote them."""
    if plain:
        reply = await client.execute_command(*_mail_from(client, sender, size), timeout=None)
    else:
        options = [f"SIZE={size}"] if client.supports_extension("size") else []
        reply = await client.mail(sender, options=options, timeout=None)
    if reply.code != 250:
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    refused = []
    for recipient in recipients:
        if plain:
            command = b"TO:<%s>" % recipient.encode()
            reply = await client.execute_command(b"RCPT", command, timeout=None)
        else:
            try:
                reply = await client.rcpt(recipient, timeout=None)
            except aiosmtplib.SMTPRecipientRefused as exc:
                reply = aiosmtplib.SMTPResponse(exc.code, exc.message)
        if reply.code not in (250, 251):
            refused.append(aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient))
    if len(refused) == len(recipients):
        raise aiosmtplib.SMTPRecipientsRefused(refused)


async def _data(client: aiosmtplib.SMTP, message: bytes, stage: _Stage) -> None:
    """DATA, then the message and its final reply (:func:`_end_of_data`)."""
    reply = await client.execute_command(b"DATA", timeout=None)
    if reply.code != 354:
        raise aiosmtplib.SMTPDataError(reply.code, reply.message)
    protocol = client.protocol
    lock = None if protocol is None else protocol._command_lock
    if protocol is None or lock is None:
        msg = "Connection lost"
        raise aiosmtplib.SMTPServerDisconnected(msg)
    async with lock:
        final = await _end_of_data(protocol, normalize_message_line_endings(message), stage)
    if final.code != 250:
        raise aiosmtplib.SMTPDataError(final.code, final.message)


async def _end_of_data(
    protocol: SMTPProtocol, content: bytes, stage: _Stage
) -> aiosmtplib.SMTPResponse:
    """Write ``content`` (dot-stuffed here) and the final ".", then read the reply.

    The write, until the connection took it all, is bounded by ``mail.smtp.timeout`` as the
    commands are; the reply by ``data_done_timeout``.
    """
    protocol._response_pending = True
    protocol.write(PERIOD_REGEX.sub(b"..", content) + b".\r\n")
    stage.message_written = True
    await protocol._drain_helper()  # a relay reading slowly: the write's own time
    stage.wait_for_final_reply()
    reply = protocol._read_response_from_buffer()
    if reply is None:
        reply = await protocol.read_response(timeout=None)
    return reply


async def _pipelined(
    client: aiosmtplib.SMTP,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    stage: _Stage,
) -> None:
    """One mail transaction as RFC 2920 pipelines it; raises what :func:`_transact` raises.

    MAIL, a RCPT per recipient and DATA go out in one write; every reply is read, in order,
    before anything is decided. The message follows only a 354. A server may answer 354 when
    it refused every recipient: the transaction is then ended with an empty message (a lone
    ".") and reported as refused, as RFC 2920 asks of a client. Recipients refused among
    accepted ones are left out of the envelope, as in the unpipelined transaction.
    """
    protocol = client.protocol
    lock = None if protocol is None else protocol._command_lock
    if protocol is None or lock is None:
        msg = "Connection lost"
        raise aiosmtplib.SMTPServerDisconnected(msg)
    commands = [
        b" ".join(_mail_from(client, sender, len(message))),
        *(b"RCPT TO:<%s>" % recipient.encode() for recipient in recipients),
        b"DATA",
    ]
    async with lock:  # the protocol's own: no other command between ours (see _replies)
        mail, *accepted, data = await _replies(
            protocol, b"".join(command + b"\r\n" for command in commands), len(commands)
        )
        refused = [
            aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
            for reply, recipient in zip(accepted, recipients, strict=True)
            if reply.code not in (250, 251)
        ]
        goes = mail.code == 250 and len(refused) < len(recipients)
        final = None
        if data.code == 354 and goes:
            content = normalize_message_line_endings(message)
            final = await _end_of_data(protocol, content, stage)
        elif data.code == 354:  # nothing to deliver: the empty message RFC 2920 asks for
            [final] = await _replies(protocol, b".\r\n", 1)
    if mail.code != 250:
        raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
    if len(refused) == len(recipients):
        raise aiosmtplib.SMTPRecipientsRefused(refused)
    if final is None:
        raise aiosmtplib.SMTPDataError(data.code, data.message)
    if final.code != 250:
        raise aiosmtplib.SMTPDataError(final.code, final.message)


async def _replies(
    protocol: SMTPProtocol, data: bytes, count: int
) -> list[aiosmtplib.SMTPResponse]:
    """Write ``data`` and read ``count`` replies, in order.

    aiosmtplib reads one reply per command and has no pipelining of its own, so this reaches
    into its protocol (aiosmtplib is pinned in constraints.txt; tests/test_smtp_transport.py
    pipelines against a real server). Its ``data_received`` parses one reply and leaves the
    rest of a segment in the buffer: a reply already there is taken from it before waiting for
    more. It ignores data that arrives while a parsed reply waits to be read, which cannot
    happen here: this task awaits the reply directly, so it takes it before the event loop
    runs the next read.
    """
    protocol._response_pending = True
    protocol.write(data)
    replies: list[aiosmtplib.SMTPResponse] = []
    while len(replies) < count:
        reply = protocol._read_response_from_buffer()
        if reply is None:
            reply = await protocol.read_response(timeout=None)
        replies.append(reply)
    return replies


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO, or HELO from a server that refuses it (what aiosmtplib does before a command)."""
    try:
        await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        await client.helo()


def classify(exc: BaseException, what: str) -> DeliveryError:
    """Translate an aiosmtplib/socket error into a transient or permanent DeliveryError.

    A 5xx is permanent, but for a relay refusing leadflow itself (:func:`_refuses_leadflow`),
    which is transient with ``relay_refusal`` set. A refused RCPT is a
    :class:`RecipientRejectedError` (a hard bounce) only when the reply condemns the mailbox.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = exc.recipients
        # The relay refusing leadflow, then a 4xx, decides for the whole message: either is
        # retried, and a mailbox verdict on another recipient can wait for the retry.
        relay = [r for r in refusals if _refuses_leadflow(r.code, r.message, message_stage=True)]
        transient = [r for r in refusals if not _permanent(r.code)]
        chosen = (relay or transient or refusals)[0]
        text = f"{chosen.code} {chosen.message} (recipient {chosen.recipient})"
        if relay:
            return _relay_refusal(text, chosen.code)
        if transient or _mailbox_refused(chosen.code, chosen.message):
            return RecipientRejectedError(text, permanent=not transient, code=chosen.code)
        return DeliveryError(text, permanent=True, code=chosen.code)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Wrong credentials are a configuration problem, not the message's: keep it for a retry.
        text = f"authentication failed: {exc.code} {exc.message}; check mail.smtp.username/password"
        return DeliveryError(
            text, permanent=False, code=exc.code, relay_refusal=_permanent(exc.code)
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
        # Only DATA's reply can be about the message; a 5xx to the greeting, EHLO, STARTTLS or
        # MAIL refuses leadflow's connection or its sender.
        data = isinstance(exc, aiosmtplib.SMTPDataError)
        if _refuses_leadflow(exc.code, exc.message, message_stage=data):
            return _relay_refusal(text, exc.code)
        # 421: the relay is not available and closes the channel (RFC 5321 3.8), whatever
        # the message: as unreachable as one that does not answer.
        return DeliveryError(
            text, permanent=_permanent(exc.code), code=exc.code, unreachable=exc.code == 421
        )
    if isinstance(exc, TimeoutError):
        return DeliveryError(f"timed out delivering {what}", permanent=False, unreachable=True)
    if isinstance(exc, aiosmtplib.SMTPException | OSError):
        return DeliveryError(
            f"connection error on {what}: {exc}", permanent=False, unreachable=True
        )
    return DeliveryError(f"unexpected error on {what}: {exc!r}", permanent=False)


RELAY_REFUSAL_HINT = (
    "check mail.smtp (host, port, username, password) and mail.from, and that the relay lets "
    "this host send (Postfix: mynetworks, SMTP AUTH, its sender restrictions)"
)

_ENHANCED_CODE = re.compile(r"5\.(\d{1,3})\.(\d{1,3})(?!\S)")
"""RFC 3463's enhanced status code at the start of a 5xx reply's text: class.subject.detail."""

_SENDER_ADDRESS_DETAILS = frozenset({7, 8})
"""5.1.7 and 5.1.8: the *sender's* address is bad (Postfix's reject_unknown_sender_domain,
reported at RCPT), not the recipient's."""


def _enhanced(message: str) -> tuple[int, int] | None:
    """The subject and detail of a 5.x.y code the reply's text starts with, if it has one."""
    found = _ENHANCED_CODE.match(message)
    return (int(found[1]), int(found[2])) if found else None


def _refuses_leadflow(code: int, message: str, *, message_stage: bool) -> bool:
    """Whether a 5xx refuses leadflow itself rather than a recipient or the message.

    RFC 3463 5.7.x (security or policy: "Relay access denied", authentication required, the
    sender refused), 5.3.x and 5.4.x (the relay's system or network), 5.1.7/5.1.8 (the
    sender's address), a bare 530 (authentication required, RFC 4954), and any 5xx to a
    command that is not about a recipient or the message (``message_stage`` False: the
    greeting, EHLO, STARTTLS, MAIL).
    """
    if not _permanent(code):
        return False
    enhanced = _enhanced(message)
    if enhanced is not None:
        subject, detail = enhanced
        if subject in (3, 4, 7) or (subject == 1 and detail in _SENDER_ADDRESS_DETAILS):
            return True
    return code == 530 or not message_stage


def _mailbox_refused(code: int, message: str) -> bool:
    """Whether a 5xx to RCPT condemns the mailbox (a hard bounce): 5.1.x addressing (bad
    mailbox 5.1.1, bad domain 5.1.2, null MX 5.1.10 ...) or 5.2.1 (mailbox disabled); without
    an enhanced code, 550, 551 or 553 as the basic codes say."""
    enhanced = _enhanced(message)
    if enhanced is None:
        return code in (550, 551, 553)
    return enhanced[0] == 1 or enhanced == (2, 1)


def _relay_refusal(reply: str, code: int) -> DeliveryError:
    text = f"the relay refuses leadflow itself, not the recipient: {reply}; {RELAY_REFUSAL_HINT}"
    return DeliveryError(text, permanent=False, code=code, relay_refusal=True)


def _answered(exc: BaseException) -> bool:
    """Whether ``exc`` is the relay's reply (to the end of DATA): then its outcome is known."""
    return isinstance(exc, aiosmtplib.SMTPResponseException)


def _outcome_unknown(exc: BaseException, message_id: str, stage: _Stage) -> DeliveryError:
    """The relay had (or was taking) the whole message and did not answer: it may deliver it
    (RFC 1047)."""
    if isinstance(exc, TimeoutError) and stage.waiting_for_reply:
        wait = format_duration(timedelta(seconds=stage.data_done_timeout))
        why = f"no reply to the end of DATA within {wait} (mail.smtp.data_done_timeout)"
    elif isinstance(exc, TimeoutError):
        why = "timed out writing the message"
    else:
        why = f"the connection failed before the reply to the end of DATA: {exc}"
    text = f"outcome unknown: {why}; the relay may have delivered {message_id}"
    return DeliveryError(text, permanent=False, outcome_unknown=True)


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _still_usable(client: aiosmtplib.SMTP, exc: BaseException) -> bool:
    """A refused message leaves the session usable (aiosmtplib sent RSET); a broken one does not."""
    refused = isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPRecipientsRefused)
    return refused and client.is_connected


async def _answers(client: aiosmtplib.SMTP) -> bool:
    try:
        await client.noop()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _quit(client: aiosmtplib.SMTP) -> None:
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()
