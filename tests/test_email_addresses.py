"""A lead's and a rep's email is exactly one plain address; an envelope has exactly one recipient.

Pins, on SQLite and PostgreSQL:
- ``a@x.test, evil@x.test``, ``Victim <v@x.test>, Evil <e@y.test>``, a display name or a comment
  is a rejected row (import) or a 422 (HTTP) naming the email field; a lead's placeholder
  without an @ (``n/a``) is stored as no address and the lead lands; a rep needs an address;
- what :func:`leadflow.store.email_addresses.address_problem` accepts quickly, email-validator accepts too;
- an outbox row holding a list (written before these checks) fails for good at send time with
  the reason, and a real SMTP server receives exactly one RCPT TO per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings
from hypothesis import strategies as st
from import_support import rows, write
from mail_support import ScriptedHandler, outbox_rows, smtp_server
from sqlalchemy import Engine, insert

from leadflow.clock import SettableClock
from leadflow.errors import ImportFileError
from leadflow.ingest import import_file
from leadflow.service.channels import drain_configured
from leadflow.settings import Settings
from leadflow.store.email_addresses import (
    address_problem,
    is_recipient,
    recipient_address,
    sending_problem,
)
from leadflow.store.tables import OUTBOX
from tests.http_support import Api, build_app, http_settings, runtime_for

HOW = "write exactly one address such as ann@example.com, without a name, a second address or a comment"
LIST = "the part after the @-sign contains invalid characters: ',', '@', SPACE"
NAMED_LIST = "the part after the @-sign contains invalid characters: ',', '<', '>', '@', SPACE"
DISPLAY_NAME = "a display name and angle brackets around the email address are not permitted here"
COMMENT = "the email address contains invalid characters before the @-sign: '(', ')', SPACE"


def rejected(shown: str, problem: str) -> str:
    return f"{shown} is not one plain email address ({problem}); {HOW}"


def validator_says(text: str) -> str | None:
    """email-validator itself, with the options leadflow uses."""
    try:
        validate_email(
            text, check_deliverability=False, test_environment=True, globally_deliverable=False
        )
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        return reason[:1].lower() + reason[1:]
    return None


class TestOneAddress:
    """What counts as one address, and the quick path agreeing with the validator."""

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("ann@example.com", None),
            ("a.b+tag@x.test", None),
            ("v@intranet", None),
            ("Ann@Acme.TEST", None),
            ("zoë@bücher.example", None),
            ("a@x.test, evil@x.test", LIST),
            ("Victim <v@x>, Evil <e@y>", NAMED_LIST),
            ("Victim <v@x.test>", DISPLAY_NAME),
            ("ann (work)@x.test", COMMENT),
            ("n/a", "an email address must have an @-sign"),
            (
                "a@localhost",
                "the part after the @-sign is a special-use or reserved name that cannot be used with email",
            ),
            ('"a,b"@x.test', "quoting the part before the @-sign is not allowed here"),
        ],
    )
    def test_exactly_one_plain_address(self, text: str, problem: str | None) -> None:
        assert address_problem(text) == problem

    @settings(max_examples=400, deadline=None)
    @given(
        text=st.one_of(
            st.from_regex(
                r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,70}@[A-Za-z0-9.-]{1,30}", fullmatch=True
            ),
            st.from_regex(
                r"[a-z.]{1,8}@(xn--[a-z0-9-]{1,12}\.)?[a-z-]{1,63}\.[a-z]{1,4}", fullmatch=True
            ),
            st.from_regex(r"[a-z]{50,66}@([a-z]{55,63}\.){2,3}[a-z]{2,10}", fullmatch=True),
            st.builds(
                lambda local, domain: f"{local}@{domain}", st.text(max_size=8), st.text(max_size=12)
            ),
            st.text(max_size=20),
        )
    )
    @pytest.mark.slow
    def test_the_quick_path_agrees_with_email_validator(self, text: str) -> None:
        assert address_problem(text) == validator_says(text)

    def test_an_outbox_recipient_names_one_address(self) -> None:
        """A display name is fine in the To header; the envelope gets the address alone."""
        assert recipient_address("Anna Berg <anna@example.com>") == "anna@example.com"
        assert recipient_address("anna@example.com") == "anna@example.com"
        with pytest.raises(ValueError, match=r"^it names 2 addresses$"):
            recipient_address("Victim <v@x.test>, Evil <e@y.test>")
        assert [
            is_recipient(value)
            for value in ("ann@x.test", "Ann <ann@x.test>", "a@x.test, b@x.test", "n/a", "", None)
        ] == [True, True, False, False, False, False]


class TestIngest:
    """Import and HTTP refuse anything but one address, naming the field."""

    def test_lead_import_rejects_the_rows_and_lands_the_rest(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A placeholder without an @ means no address: the lead lands, unmailed."""
        path = write(
            tmp_path,
            "leads.csv",
            "external_id,email\n"
            "L1,ann@example.com\n"
            'L2,"a@x.test, evil@x.test"\n'
            'L3,"Victim <v@x>, Evil <e@y>"\n'
            "L4,Victim <v@x.test>\n"
            "L5,n/a\n"
            "L6,ann (work)@x.test\n"
            "L7, bob@beta.test \n",
        )
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: email: {rejected(repr('a@x.test, evil@x.test'), LIST)}",
            f"{path}:4: email: {rejected(repr('Victim <v@x>, Evil <e@y>'), NAMED_LIST)}",
            f"{path}:5: email: {rejected(repr('Victim <v@x.test>'), DISPLAY_NAME)}",
            f"{path}:7: email: {rejected(repr('ann (work)@x.test'), COMMENT)}",
        ]
        assert rows(engine, "leads", "external_id", "email") == [
            ("L1", "ann@example.com"),
            ("L5", None),
            ("L7", "bob@beta.test"),
        ]

    def test_rep_import_needs_one_address(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email\n"
            "R1,Rita Rep,rita@example.com\n"
            "R2,Max,Max Manager <max@example.com>\n"
            "R3,Nobody,n/a\n",
        )
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: email: {rejected(repr('Max Manager <max@example.com>'), DISPLAY_NAME)}",
            f"{path}:4: email: {rejected(repr('n/a'), 'an email address must have an @-sign')}",
        ]
        assert rows(engine, "reps", "external_id", "email") == [("R1", "rita@example.com")]

    def test_an_email_pattern_must_make_one_address(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        settings_ = make_settings(
            **{"import.mappings.reps.email_pattern": "{first} {last}@example.com"}
        )
        path = write(tmp_path, "reps.csv", "name\nAda Lovelace\n")
        with pytest.raises(ImportFileError) as refused:
            import_file(engine, settings_, "reps", path, clock=clock)
        assert str(refused.value) == (
            "import.mappings.reps.email_pattern: '{first} {last}@example.com' makes "
            "'ada lovelace@example.com', not one email address (the email address contains "
            "invalid characters before the @-sign: SPACE); write it as one address, "
            "e.g. '{first}.{last}@example.com'"
        )
        assert rows(engine, "reps", "external_id") == []

    def test_http_is_422_naming_the_email(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        api = Api(build_app(runtime_for(engine, http_settings(make_settings), clock))[0])
        body = [
            {"external_id": "L1", "email": "ann@acme.test"},
            {"external_id": "L2", "email": "a@x.test, evil@x.test"},
        ]
        response = api.post("/v1/leads", body)
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", 1, "email"],
                        "msg": rejected(repr("a@x.test, evil@x.test"), LIST),
                        "type": "value_error",
                    }
                ]
            },
        )
        response = api.post("/v1/reps", {"name": "Rita", "email": "Rita <rita@example.com>"})
        assert response.json()["detail"] == [
            {
                "loc": ["body", "email"],
                "msg": rejected(repr("Rita <rita@example.com>"), DISPLAY_NAME),
                "type": "value_error",
            }
        ]
        assert api.post("/v1/leads", {"external_id": "L3", "email": "n/a"}).status_code == 200
        assert rows(engine, "leads", "external_id", "email") == [("L3", None)]
        assert rows(engine, "reps", "external_id") == []


class TestSendable:
    """An outside tester's find: ``POST /v1/leads`` took ``ünï@bücher.test``, whose emails the
    sender then failed for good ("not exactly one email address ... not ASCII, which needs
    SMTPUTF8"). Import and HTTP now refuse what the sender refuses, with its reason; a Unicode
    domain, which the sender writes in its IDNA form, is still taken."""

    def test_the_senders_rule(self) -> None:
        assert [
            sending_problem(address)
            for address in ("ann@x.test", "ann@bücher.example", "ünï@bücher.test")
        ] == [
            None,
            None,
            "the part before the @-sign of 'ünï@bücher.test' is not ASCII, which needs "
            "SMTPUTF8 and leadflow sends ASCII addresses only",
        ]

    def test_lead_import_rejects_a_non_ascii_local_part(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(
            tmp_path,
            "leads.csv",
            "external_id,email\nL1,björn@corp.example\nL2,ann@bücher.example\nL3,ann@x.test\n",
        )
        report = import_file(engine, make_settings(), "leads", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: email: {unsendable('björn@corp.example')}",
        ]
        assert rows(engine, "leads", "external_id", "email") == [
            ("L2", "ann@bücher.example"),
            ("L3", "ann@x.test"),
        ]

    def test_rep_import_and_an_email_pattern_too(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        path = write(tmp_path, "reps.csv", "name,email\nRita,rïta@example.com\nMax,max@x.test\n")
        report = import_file(engine, make_settings(), "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:2: email: {unsendable('rïta@example.com')}"
        ]
        assert rows(engine, "reps", "email") == [("max@x.test",)]
        settings_ = make_settings(**{"import.mappings.reps.email_pattern": "{first}.ü@x.test"})
        path = write(tmp_path, "reps.csv", "name\nAda Lovelace\n")
        with pytest.raises(ImportFileError) as refused:
            import_file(engine, settings_, "reps", path, clock=clock)
        assert str(refused.value) == (
            "import.mappings.reps.email_pattern: '{first}.ü@x.test' makes 'ada.ü@x.test', not "
            "one email address (the part before the @-sign of 'ada.ü@x.test' is not ASCII, "
            "which needs SMTPUTF8 and leadflow sends ASCII addresses only); write it as one "
            "address, e.g. '{first}.{last}@example.com'"
        )
        assert rows(engine, "reps", "email") == [("max@x.test",)]

    def test_http_is_422_naming_the_email(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        api = Api(build_app(runtime_for(engine, http_settings(make_settings), clock))[0])
        body = [
            {"external_id": "J1", "email": "uni@bücher.test"},
            {"external_id": "J2", "name": "Ünï", "email": "ünï@bücher.test"},
        ]
        response = api.post("/v1/leads", body)
        assert (response.status_code, response.json()) == (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", 1, "email"],
                        "msg": unsendable("ünï@bücher.test"),
                        "type": "value_error",
                    }
                ]
            },
        )
        response = api.post("/v1/reps", {"name": "Rita", "email": "rïta@example.com"})
        assert response.json()["detail"] == [
            {
                "loc": ["body", "email"],
                "msg": unsendable("rïta@example.com"),
                "type": "value_error",
            }
        ]
        assert rows(engine, "leads", "external_id") == []
        assert api.post("/v1/leads", body[0]).status_code == 200
        assert rows(engine, "leads", "external_id", "email") == [("J1", "uni@bücher.test")]
        assert rows(engine, "reps", "external_id") == []


def unsendable(address: str) -> str:
    return (
        f"the part before the @-sign of {address!r} is not ASCII, which needs SMTPUTF8 and "
        "leadflow sends ASCII addresses only; the sender would fail every email to it: give an "
        "address it can send to"
    )


class CountingHandler(ScriptedHandler):
    """Counts every RCPT TO the server is sent, accepted or not."""

    rcpt_commands: int = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.rcpt_commands += 1
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.fixture
def handler() -> CountingHandler:
    return CountingHandler()


@pytest.fixture
def smtp_settings(make_settings: Any, handler: CountingHandler) -> Iterator[Settings]:
    with smtp_server(handler) as port:
        yield make_settings(
            **{
                "mail.transport": "smtp",
                "mail.from": "Leadflow <leadflow@example.com>",
                "mail.smtp.host": "127.0.0.1",
                "mail.smtp.port": port,
                "mail.smtp.timeout": "2s",
            }
        )


RECIPIENTS = (
    "a@x.test, evil@x.test",
    "Victim <v@x.test>, Evil <e@y.test>",
    "Anna Berg <anna@example.com>",
    "bob@example.com",
)


class TestEnvelope:
    """At send time, defence in depth: one recipient, or the message fails for good."""

    def test_a_list_in_the_outbox_fails_and_every_message_has_one_rcpt(
        self,
        engine: Engine,
        smtp_settings: Settings,
        handler: CountingHandler,
        clock: SettableClock,
    ) -> None:
        """Rows as a sender before this fix could have found them (enqueue now refuses lists)."""
        _queue(engine, clock, RECIPIENTS)
        report = asyncio.run(drain_configured(engine, smtp_settings, clock, once=True))
        assert (report.claimed, report.sent, report.retried, report.failed) == (4, 2, 0, 2)
        assert [(row.recipient, row.status, row.last_error) for row in outbox_rows(engine)] == [
            *(
                (
                    recipient,
                    "failed",
                    f"recipient {recipient!r} is not exactly one email address (it names 2 "
                    "addresses); not sent: correct the email in the CRM and import it again",
                )
                for recipient in RECIPIENTS[:2]
            ),
            (RECIPIENTS[2], "sent", None),
            (RECIPIENTS[3], "sent", None),
        ]
        assert sorted(received.rcpt_tos for received in handler.received) == [
            ["anna@example.com"],
            ["bob@example.com"],
        ]
        assert handler.rcpt_commands == 2

    def test_a_non_ascii_local_part_fails_for_good_and_a_unicode_domain_is_sent_as_idna(
        self,
        engine: Engine,
        smtp_settings: Settings,
        handler: CountingHandler,
        clock: SettableClock,
    ) -> None:
        """A CRM export's ``björn@corp.example`` passes the validator (SMTPUTF8) but crashed
        the message builder on every attempt, a traceback each time until it gave up. A
        Unicode domain travels in its IDNA 2008 form: ``straße.de`` is ``xn--strae-oqa.de``,
        not IDNA 2003's ``strasse.de``, another domain."""
        recipients = (
            "björn@corp.example",
            "Zoë Ng <李@x.test>",
            "ann@bücher.example",
            "anna@straße.de",
        )
        _queue(engine, clock, recipients)
        report = asyncio.run(drain_configured(engine, smtp_settings, clock, once=True))
        assert (report.claimed, report.sent, report.retried, report.failed) == (4, 2, 0, 2)
        assert [(row.recipient, row.status, row.last_error) for row in outbox_rows(engine)] == [
            (
                "björn@corp.example",
                "failed",
                "recipient 'björn@corp.example' is not exactly one email address (the part "
                "before the @-sign of 'björn@corp.example' is not ASCII, which needs SMTPUTF8 "
                "and leadflow sends ASCII addresses only); not sent: correct the email in the "
                "CRM and import it again",
            ),
            (
                "Zoë Ng <李@x.test>",
                "failed",
                "recipient 'Zoë Ng <李@x.test>' is not exactly one email address (the part "
                "before the @-sign of '李@x.test' is not ASCII, which needs SMTPUTF8 and "
                "leadflow sends ASCII addresses only); not sent: correct the email in the CRM "
                "and import it again",
            ),
            ("ann@bücher.example", "sent", None),
            ("anna@straße.de", "sent", None),
        ]
        received = sorted(handler.received, key=lambda message: message.rcpt_tos)
        assert [(r.rcpt_tos, r.message["To"]) for r in received] == [
            (["ann@xn--bcher-kva.example"], "ann@xn--bcher-kva.example"),
            (["anna@xn--strae-oqa.de"], "anna@xn--strae-oqa.de"),
        ]


def _queue(engine: Engine, clock: SettableClock, recipients: Sequence[str]) -> None:
    """One pending message to each of ``recipients``, due now, as an enqueue would leave it."""
    with engine.begin() as connection:
        for number, recipient in enumerate(recipients, start=1):
            connection.execute(
                insert(OUTBOX).values(
                    idempotency_key=f"k{number}",
                    message_id=f"<m{number}@leadflow.test>",
                    recipient=recipient,
                    subject="Hello",
                    body_text="Hi.\n",
                    headers={},
                    next_attempt_at=clock.now(),
                    created_at=clock.now(),
                )
            )
