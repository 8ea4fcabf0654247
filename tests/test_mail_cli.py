"""``leadflow send`` and ``leadflow outbox``: drain to the maildir, list, requeue failures."""

from __future__ import annotations

import json
import mailbox
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mail_support import add_lead, add_rep, outbox_rows, write_templates
from sqlalchemy import update

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.mail.context import email_context
from leadflow.mail.enqueue import enqueue_email
from leadflow.mail.templates import TemplateCatalog
from leadflow.store.database import create_store_engine, engine_for, migrate, transaction
from leadflow.store.models import Lead, OutboxMessage, Rep

NOW = datetime(2020, 1, 6, 10, 0, tzinfo=UTC)  # in the past: due for the real clock


def _queue(config: Path, keys: Iterable[str]) -> None:
    """One operational email to the lead (id 1) about its owner for each idempotency key."""
    settings = load_settings(config, env={}).settings
    engine = engine_for(settings)
    catalog = TemplateCatalog(config.parent / "templates", settings)
    with transaction(engine) as session:
        lead = session.get(Lead, 1)
        assert lead is not None
        rep = session.get(Rep, lead.owner_id)
        for key in keys:
            enqueue_email(
                session,
                key=key,
                template="notify",
                context=email_context(settings, lead=lead, rep=rep),
                to="anna@example.com",
                category="operational",
                now=NOW,
                catalog=catalog,
                settings=settings,
                lead_id=1,
            )
    engine.dispose()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A project folder with the default embedded store and maildir, two messages queued."""
    write_templates(tmp_path / "templates")
    path = tmp_path / "config.yaml"
    path.write_text("mail:\n  from: leadflow@example.com\n", encoding="utf-8")
    settings = load_settings(path, env={}).settings
    engine = engine_for(settings)
    migrate(engine)
    rep_id = add_rep(engine, NOW)
    add_lead(engine, NOW, owner_id=rep_id)
    engine.dispose()
    _queue(path, ("a", "b"))
    return path


def test_send_once_delivers_into_the_maildir(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``send --once`` writes each due message to state/maildir/new and says what it did."""
    assert main(["-c", str(config), "send", "--once"]) == 0
    assert capsys.readouterr().out == "sent 2, retry later 0, failed 0 (transport maildir)\n"
    box = mailbox.Maildir(config.parent / "state" / "maildir", create=False)
    assert sorted(str(m["Subject"]) for m in box) == ["New MQL: Jo Doe", "New MQL: Jo Doe"]
    assert main(["-c", str(config), "outbox"]) == 0
    assert capsys.readouterr().out == "pending 0, sending 0, sent 2, failed 0, suppressed 0\n"


@pytest.mark.slow
def test_outbox_lists_failures_and_retry_requeues(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``outbox --failed`` shows the error; ``--retry ID`` puts it back; wrong ids are one line."""
    engine = create_store_engine(f"sqlite:///{config.parent / 'state' / 'leadflow.db'}")
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            update(table).where(table.c.id == 1).values(status="failed", last_error="550 no")
        )
    assert main(["-c", str(config), "outbox", "--failed"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "pending 1, sending 0, sent 0, failed 1, suppressed 0"
    assert "550 no" in out
    assert main(["-c", str(config), "outbox", "--retry", "2"]) == 1
    assert capsys.readouterr().err == (
        "error: --retry: outbox message 2 is pending; only failed messages are retried\n"
    )
    assert main(["-c", str(config), "outbox", "--retry", "9"]) == 1
    assert capsys.readouterr().err == "error: --retry: there is no outbox message 9\n"
    assert main(["-c", str(config), "outbox", "--retry", "1"]) == 0
    assert capsys.readouterr().out == (
        "requeued outbox message 1 to anna@example.com: New MQL: Jo Doe\n"
    )
    assert [(r.id, r.status, r.attempts) for r in outbox_rows(engine)] == [
        (1, "pending", 0),
        (2, "pending", 0),
    ]
    engine.dispose()


def test_retry_failed_requeues_every_failure_or_those_since(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relay's outage failed messages 1 and 3 at 10:00 and 2 at 12:00: ``--retry-failed
    --since 11:00`` requeues 2 alone; ``--retry-failed`` then the others; nothing pending or
    sent is touched."""
    _queue(config, ("c", "d"))
    engine = create_store_engine(f"sqlite:///{config.parent / 'state' / 'leadflow.db'}")
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    failed_at = {1: NOW, 2: NOW.replace(hour=12), 3: NOW}
    with engine.begin() as connection:
        for row_id, at in failed_at.items():
            connection.execute(
                update(table)
                .where(table.c.id == row_id)
                .values(status="failed", attempts=5, next_attempt_at=at, last_error="451 later")
            )
        connection.execute(update(table).where(table.c.id == 4).values(status="sent"))
    argv = ["-c", str(config), "outbox", "--retry-failed"]
    assert main([*argv, "--since", "2020-01-06T11:00:00Z"]) == 0
    assert capsys.readouterr().out == "requeued 1 failed outbox message\n"
    assert [(r.id, r.status, r.attempts) for r in outbox_rows(engine)] == [
        (1, "failed", 5),
        (2, "pending", 0),
        (3, "failed", 5),
        (4, "sent", 0),
    ]
    assert main([*argv, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"requeued_count": 2}
    assert [(r.id, r.status) for r in outbox_rows(engine)] == [
        (1, "pending"),
        (2, "pending"),
        (3, "pending"),
        (4, "sent"),
    ]
    assert main(["-c", str(config), "outbox", "--since", "2020-01-06T11:00:00Z"]) == 1
    assert capsys.readouterr().err == "error: --since goes with --retry-failed\n"
    assert main([*argv, "--retry", "1"]) == 1
    assert capsys.readouterr().err == "error: give --retry ID or --retry-failed, not both\n"
    engine.dispose()


def test_outbox_says_how_many_rows_the_limit_left_out(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """53 rows unsent: 50 are listed and the rest are counted; ``--limit`` shows them all."""
    _queue(config, (f"m{n}" for n in range(51)))
    assert main(["-c", str(config), "outbox"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "pending 53, sending 0, sent 0, failed 0, suppressed 0"
    assert lines[-1] == "... and 3 more (use --limit)"
    assert len([line for line in lines if "│ pending" in line]) == 50
    assert main(["-c", str(config), "outbox", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["total"], document["shown"]) == (53, 50)
    # The 50 due first (all due now: by id), not any 50.
    assert [message["id"] for message in document["messages"]] == list(range(1, 51))
    assert main(["-c", str(config), "outbox", "--limit", "60"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "│ pending" in line]) == 53
    assert not any(line.startswith("... and") for line in lines)
    # 0 is every one, as for `run --dry-run --limit 0` (it was refused).
    assert main(["-c", str(config), "outbox", "--limit", "0"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if "│ pending" in line]) == 53
    assert not any(line.startswith("... and") for line in lines)
    assert main(["-c", str(config), "outbox", "--limit", "0", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["total"], document["shown"]) == (53, 53)


def test_outbox_json_has_total_and_shown(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--format json``: one document, the counts, how many rows there are and how many listed."""
    assert main(["-c", str(config), "outbox", "--limit", "1", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "by_status": {"pending": 2, "sending": 0, "sent": 0, "failed": 0, "suppressed": 0},
        "listing": "not_sent",
        "total": 2,
        "shown": 1,
        "messages": [
            {
                "id": 1,
                "status": "pending",
                "category": "operational",
                "recipient": "anna@example.com",
                "subject": "New MQL: Jo Doe",
                "attempts": 0,
                "next_attempt_at": "2020-01-06T10:00:00+00:00",
                "rule_id": None,
                "detail": None,
                "lease_until": None,
                "claimed_by": None,
                "claimer_gone": False,
            }
        ],
    }
    assert main(["-c", str(config), "outbox", "--failed", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["listing"], document["total"], document["shown"]) == ("failed", 0, 0)
    assert document["messages"] == []


def table_rows(out: str) -> list[list[str]]:
    """The cells of each row of a printed outbox table."""
    return [
        [cell.strip() for cell in line.strip("│").split("│")]
        for line in out.splitlines()
        if line.startswith("│ ")
    ]


def test_outbox_rows_are_whole_when_piped(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Written to a pipe or a file (80 columns), the listing cut every cell to a few letters
    (`market…`, `leslie…`) and broke subjects over five lines; it is printed at least 160
    columns wide, as `audit` is, so each message is one line with its cells whole."""
    assert main(["-c", str(config), "outbox"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows == [
        ["1", "pending", "operational", "anna@example.com", "New MQL: Jo Doe", "0",
         "2020-01-06 10:00", "", ""],
        ["2", "pending", "operational", "anna@example.com", "New MQL: Jo Doe", "0",
         "2020-01-06 10:00", "", ""],
    ]  # fmt: skip


def test_a_sending_row_shows_its_lease_and_its_sender(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a kill -9 a claimed row stays ``sending`` until its lease ends: the listing says
    who holds it until when (``lease_until``, ``claimed_by``), and "next" is the lease's end."""
    engine = create_store_engine(f"sqlite:///{config.parent / 'state' / 'leadflow.db'}")
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    lease_until = NOW.replace(minute=15)
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == 2)
            .values(
                status="sending",
                attempts=2,
                claimed_until=lease_until,
                claimed_by="mail-1:4242:0a1b2c3d",
                last_error="451 4.3.0 busy",
            )
        )
    engine.dispose()
    assert main(["-c", str(config), "outbox"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows == [
        ["1", "pending", "operational", "anna@example.com", "New MQL: Jo Doe", "0",
         "2020-01-06 10:00", "", ""],
        ["2", "sending", "operational", "anna@example.com", "New MQL: Jo Doe", "2",
         "2020-01-06 10:15", "", "claimed by mail-1:4242:0a1b2c3d until 10:15:00 UTC"],
    ]  # fmt: skip
    assert main(["-c", str(config), "outbox", "--format", "json"]) == 0
    messages = json.loads(capsys.readouterr().out)["messages"]
    assert [
        (m["id"], m["status"], m["lease_until"], m["claimed_by"], m["detail"]) for m in messages
    ] == [
        (1, "pending", None, None, None),
        (2, "sending", "2020-01-06T10:15:00+00:00", "mail-1:4242:0a1b2c3d", "451 4.3.0 busy"),
    ]


def test_a_message_sent_after_retry_failed_keeps_the_error_that_failed_it(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--retry-failed`` gives a failed message a fresh schedule (its attempts count from 0
    again); once it is sent, the error that failed it stays on the row, its 4xx history."""
    engine = create_store_engine(f"sqlite:///{config.parent / 'state' / 'leadflow.db'}")
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    gave_up = "gave up after 7 attempts over 5m: 450 4.2.0 mailbox busy, try again later"
    with engine.begin() as connection:
        connection.execute(
            update(table)
            .where(table.c.id == 1)
            .values(status="failed", attempts=7, last_error=gave_up)
        )
    assert main(["-c", str(config), "outbox", "--retry-failed"]) == 0
    assert main(["-c", str(config), "send", "--once"]) == 0
    capsys.readouterr()
    assert [(r.id, r.status, r.attempts, r.last_error) for r in outbox_rows(engine)] == [
        (1, "sent", 1, gave_up),
        (2, "sent", 1, None),
    ]
    engine.dispose()


def test_a_marketing_email_held_for_the_send_window_says_so(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Queued at 23:00 in the lead's timezone (Europe/Berlin, the default calendar's), it waits
    for the window's 08:00: the listing's "why" was empty and its "next" had no zone, and an
    operator took the row for stuck."""
    settings = load_settings(config, env={}).settings
    engine = engine_for(settings)
    catalog = TemplateCatalog(config.parent / "templates", settings)
    late = datetime(2020, 1, 6, 22, 0, tzinfo=UTC)
    with transaction(engine) as session:
        lead = session.get(Lead, 1)
        assert lead is not None
        enqueue_email(
            session,
            key="nurture-late",
            template="notify",
            context=email_context(settings, lead=lead, rep=session.get(Rep, lead.owner_id)),
            to="jo@example.com",
            category="marketing",
            now=late,
            catalog=catalog,
            settings=settings,
            lead_id=1,
            recipient_timezone="Europe/Berlin",
        )
    engine.dispose()
    assert main(["-c", str(config), "outbox"]) == 0
    out = capsys.readouterr().out
    assert "┃ next (UTC)" in out
    rows = table_rows(out)
    assert rows[2] == [
        "3", "pending", "marketing", "jo@example.com", "New MQL: Jo Doe", "0",
        "2020-01-07 07:00", "", "waits for the send window (mail.send_window)",
    ]  # fmt: skip
    assert main(["-c", str(config), "outbox", "--format", "json"]) == 0
    held = json.loads(capsys.readouterr().out)["messages"][2]
    assert (held["next_attempt_at"], held["detail"]) == (
        "2020-01-07T07:00:00+00:00",
        "waits for the send window (mail.send_window)",
    )


_CLAIMER = """
import sys, time
from datetime import UTC, datetime, timedelta
from leadflow.outbox.claimers import new_sender_id
from leadflow.outbox.store import claim_due
from leadflow.store.database import create_store_engine
engine = create_store_engine(sys.argv[1])
worker = new_sender_id()
[message] = claim_due(engine, datetime.now(UTC), timedelta(minutes=15), worker, 1)
print(message.id, worker, flush=True)
time.sleep(60)
"""


def _claim_in_a_process(url: str) -> tuple[subprocess.Popen[str], int, str]:
    """A real sender process that claims the first due row and holds it: (it, row, sender)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _CLAIMER, url], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    row, worker = process.stdout.readline().split()
    return process, int(row), worker


def _end(process: subprocess.Popen[str]) -> None:
    """kill -9, as a crash or the OOM killer would."""
    process.kill()
    process.wait()
    if process.stdout is not None:
        process.stdout.close()


def test_claims_of_a_dead_process_of_this_host_are_retried_at_once(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sender killed (-9) holding a claim: ``outbox`` and ``status`` say its process is gone
    and when the row is retried; the next ``send`` on this host sends it at once, with its
    Message-ID, rather than after the lease. A live process's claim, and one of another host
    (its pid unknown here), wait for their lease."""
    _queue(config, ("c",))
    url = f"sqlite:///{config.parent / 'state' / 'leadflow.db'}"
    dead, dead_row, dead_by = _claim_in_a_process(url)
    _end(dead)
    live, live_row, live_by = _claim_in_a_process(url)
    host, pid, _drain, namespace = dead_by.split(":")
    elsewhere = f"elsewhere:{pid}:0a1b2c3d:{namespace}"
    engine = create_store_engine(url)
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    try:
        with engine.begin() as connection:
            connection.execute(
                update(table)
                .where(table.c.id == 3)
                .values(
                    status="sending",
                    claimed_until=datetime.now(UTC) + timedelta(minutes=15),
                    claimed_by=elsewhere,
                )
            )
        rows = {row.id: row for row in outbox_rows(engine)}
        until = rows[dead_row].claimed_until
        assert main(["-c", str(config), "outbox", "--format", "json"]) == 0
        messages = json.loads(capsys.readouterr().out)["messages"]
        assert [(m["id"], m["claimed_by"], m["claimer_gone"]) for m in messages] == [
            (dead_row, dead_by, True),
            (live_row, live_by, False),
            (3, elsewhere, False),
        ]
        assert main(["-c", str(config), "outbox"]) == 0
        out = capsys.readouterr().out
        why = {row[0]: row[-1] for row in table_rows(out)}
        assert why[str(dead_row)] == (
            f"claimed by a process that is gone (host {host}, pid {pid}): retried at "
            f"{until:%H:%M:%S} UTC"
        )
        assert main(["-c", str(config), "status", "--format", "json"]) == 0
        gone = json.loads(capsys.readouterr().out)["outbox"]["claimed_by_gone"]
        assert gone == [
            {"host": host, "pid": int(pid), "messages": 1, "retried_at": until.isoformat()}
        ]
        assert main(["-c", str(config), "status"]) == 0
        assert (
            f"  1 sending: claimed by a process that is gone (host {host}, pid {pid}): retried "
            f"at {until:%Y-%m-%d %H:%M:%S} UTC, or at once by a sender started on {host}\n"
        ) in capsys.readouterr().out

        assert main(["-c", str(config), "send", "--once"]) == 0
        assert capsys.readouterr().out == "sent 1, retry later 0, failed 0 (transport maildir)\n"
        box = mailbox.Maildir(config.parent / "state" / "maildir", create=False)
        after = {row.id: row for row in outbox_rows(engine)}
        assert [str(m["Message-ID"]) for m in box] == [after[dead_row].message_id]
        # The one it was claimed with: taken back, not made anew.
        assert after[dead_row].message_id == rows[dead_row].message_id
        assert {row_id: (row.status, row.attempts) for row_id, row in after.items()} == {
            dead_row: ("sent", 2),
            live_row: ("sending", 1),
            3: ("sending", 0),
        }
        assert (after[live_row].claimed_by, after[3].claimed_by) == (live_by, elsewhere)
    finally:
        _end(live)
        engine.dispose()
