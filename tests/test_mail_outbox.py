"""The outbox: one row per idempotency key, suppression, frequency cap and send windows."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from mail_support import add_lead, add_rep, outbox_rows, write_templates
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.errors import UserInputError
from leadflow.mail.context import email_context, unsubscribe_url
from leadflow.mail.enqueue import cancel_pending_marketing, enqueue_email, next_send_time
from leadflow.mail.templates import TemplateCatalog
from leadflow.mail_settings import SendWindow
from leadflow.outbox.claimers import new_sender_id
from leadflow.outbox.store import EnqueueResult, claim_due, message_id_for, reclaim_dead_claims
from leadflow.settings import Settings
from leadflow.store.database import transaction
from leadflow.store.models import Lead, Rep

MONDAY_9_UTC = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin


@pytest.fixture
def settings(make_settings: Any, tmp_path: Path) -> Settings:
    write_templates(tmp_path / "templates")
    built: Settings = make_settings(
        **{"mail.frequency_cap.messages": 2, "mail.frequency_cap.window": "7d"}
    )
    return built


@pytest.fixture
def catalog(settings: Settings) -> TemplateCatalog:
    return TemplateCatalog(settings.path(settings.paths.templates), settings)


def enqueue(
    engine: Engine,
    settings: Settings,
    catalog: TemplateCatalog,
    now: datetime,
    *,
    key: str,
    lead_id: int,
    category: str = "marketing",
    **extra: Any,
) -> EnqueueResult:
    with transaction(engine) as session:
        lead = session.get(Lead, lead_id)
        rep = session.get(Rep, lead.owner_id) if lead and lead.owner_id else None
        context = email_context(settings, lead=lead, rep=rep, owner=rep)
        template = "nurture" if category == "marketing" else "notify"
        to = rep.email if rep and category == "operational" else (lead.email if lead else "")
        return enqueue_email(
            session,
            key=key,
            template=template,
            context=context,
            to=to or "",
            category=category,  # type: ignore[arg-type]
            now=now,
            catalog=catalog,
            settings=settings,
            lead_id=lead_id,
            rule_id="nurture-stream",
            rule_version="v1",
            **extra,
        )


class TestIdempotency:
    """Enqueuing the same key twice leaves exactly one row; the second call reports it."""

    def test_same_key_twice_gives_one_message(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        rep_id = add_rep(engine, clock.now())
        lead_id = add_lead(engine, clock.now(), owner_id=rep_id, stage="mql")
        first = enqueue(
            engine,
            settings,
            catalog,
            clock.now(),
            key="mql:L-1:1",
            lead_id=lead_id,
            category="operational",
        )
        clock.advance(timedelta(minutes=5))
        second = enqueue(
            engine,
            settings,
            catalog,
            clock.now(),
            key="mql:L-1:1",
            lead_id=lead_id,
            category="operational",
        )
        message_id = message_id_for("mql:L-1:1", "leadflow")
        assert first == EnqueueResult(
            True, first.outbox_id, message_id, "pending", None, MONDAY_9_UTC
        )
        assert second == EnqueueResult(
            False, first.outbox_id, message_id, "pending", None, MONDAY_9_UTC
        )
        rows = outbox_rows(engine)
        assert [(r.idempotency_key, r.message_id, r.recipient, r.subject) for r in rows] == [
            ("mql:L-1:1", message_id, "anna@example.com", "New MQL: Jo Doe")
        ]
        assert rows[0].body_text == "Hi Anna,\nJo Doe is yours: https://crm.example.com/leads/L-1\n"
        assert rows[0].headers == {}

    def test_message_id_domain_is_the_senders_full_domain(
        self, make_settings: Any, tmp_path: Path, engine: Engine, clock: SettableClock
    ) -> None:
        """Unset, a Message-ID's domain is the from address's when it has a dot (spam filters
        score one without: ``@leadflow``), in its IDNA form; set, it is the setting's."""
        write_templates(tmp_path / "templates")
        rep_id = add_rep(engine, clock.now())
        lead_id = add_lead(engine, clock.now(), owner_id=rep_id, stage="mql")
        found = []
        for sender, configured in [
            ("Acme <Marketing@Acme.COM>", None),
            ("x@straße.de", None),
            ("leadflow <leadflow@localhost>", None),
            ("a@acme.com", "mid.acme.com"),
        ]:
            overrides = {"mail.from": sender, "mail.message_id_domain": configured}
            built: Settings = make_settings(**overrides)
            catalog = TemplateCatalog(built.path(built.paths.templates), built)
            key = f"mql:L-1:{len(found)}"
            result = enqueue(
                engine,
                built,
                catalog,
                clock.now(),
                key=key,
                lead_id=lead_id,
                category="operational",
            )
            found.append(result.message_id.partition("@")[2])
        assert found == ["acme.com>", "xn--strae-oqa.de>", "leadflow>", "mid.acme.com>"]

    def test_message_id_is_stable_and_derived_from_the_key(self) -> None:
        assert message_id_for("k", "mail.example.com") == (
            "<8254c329a92850f6d539dd376f4816ee@mail.example.com>"
        )


class TestOperational:
    """Rep notifications go out at once, whatever the hour, the cap or the lead's flags."""

    def test_operational_mail_ignores_window_cap_and_unsubscribe(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        night = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
        rep_id = add_rep(engine, night)
        lead_id = add_lead(engine, night, owner_id=rep_id, unsubscribed=True)
        results = [
            enqueue(
                engine,
                settings,
                catalog,
                night,
                key=f"op{i}",
                lead_id=lead_id,
                category="operational",
            )
            for i in range(3)
        ]
        assert [(r.status, r.next_attempt_at) for r in results] == [("pending", night)] * 3


class TestSuppression:
    """Marketing email to a lead who must not get it is recorded as suppressed, with why."""

    @pytest.mark.parametrize(
        ("flag", "reason"),
        [
            ("unsubscribed", "unsubscribed"),
            ("do_not_email", "do_not_email"),
            ("hard_bounced", "hard_bounced"),
        ],
    )
    def test_flagged_leads_get_a_suppressed_row(
        self,
        engine: Engine,
        settings: Settings,
        catalog: TemplateCatalog,
        clock: SettableClock,
        flag: str,
        reason: str,
    ) -> None:
        lead_id = add_lead(engine, clock.now(), **{flag: True})
        result = enqueue(engine, settings, catalog, clock.now(), key="n1", lead_id=lead_id)
        assert (result.inserted, result.status, result.reason) == (True, "suppressed", reason)
        rows = outbox_rows(engine)
        assert [(r.status, r.status_reason, r.category) for r in rows] == [
            ("suppressed", reason, "marketing")
        ]

    def test_marketing_needs_a_lead(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        with transaction(engine) as session, pytest.raises(UserInputError) as caught:
            enqueue_email(
                session,
                key="x",
                template="nurture",
                context={},
                to="a@b.example",
                category="marketing",
                now=clock.now(),
                catalog=catalog,
                settings=settings,
            )
        assert str(caught.value) == (
            "outbox message 'x': marketing email needs the lead it goes to (lead_id)"
        )

    def test_unsubscribe_cancels_pending_marketing_only(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        rep_id = add_rep(engine, clock.now())
        lead_id = add_lead(engine, clock.now(), owner_id=rep_id)
        enqueue(engine, settings, catalog, clock.now(), key="n1", lead_id=lead_id)
        enqueue(
            engine,
            settings,
            catalog,
            clock.now(),
            key="op",
            lead_id=lead_id,
            category="operational",
        )
        with transaction(engine) as session:
            cancelled = cancel_pending_marketing(session, [lead_id], "unsubscribed", clock.now())
        assert cancelled == 1
        rows = outbox_rows(engine)
        assert [(r.idempotency_key, r.status, r.status_reason) for r in rows] == [
            ("n1", "suppressed", "unsubscribed (cancelled 2026-03-02T09:00:00Z)"),
            ("op", "pending", None),
        ]


class TestFrequencyCap:
    """At most N marketing emails per lead per window, across all rules; then suppressed."""

    def test_third_email_in_a_week_is_suppressed_and_the_next_week_is_free(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        lead_id = add_lead(engine, clock.now())
        other_id = add_lead(engine, clock.now(), external_id="L-2", email="b@acme.example")
        statuses = []
        for day in range(3):
            when = MONDAY_9_UTC + timedelta(days=day)
            statuses.append(
                enqueue(engine, settings, catalog, when, key=f"a{day}", lead_id=lead_id)
            )
        statuses.append(
            enqueue(engine, settings, catalog, MONDAY_9_UTC, key="b0", lead_id=other_id)
        )
        later = MONDAY_9_UTC + timedelta(days=7, minutes=1)
        statuses.append(enqueue(engine, settings, catalog, later, key="a7", lead_id=lead_id))
        assert [(r.status, r.reason) for r in statuses] == [
            ("pending", None),
            ("pending", None),
            ("suppressed", "frequency_cap: 2 marketing emails in the last 7d"),
            ("pending", None),
            ("pending", None),
        ]

    def test_suppressed_and_operational_mail_do_not_count(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        rep_id = add_rep(engine, clock.now())
        lead_id = add_lead(engine, clock.now(), owner_id=rep_id)
        for i in range(3):
            enqueue(
                engine,
                settings,
                catalog,
                clock.now(),
                key=f"op{i}",
                lead_id=lead_id,
                category="operational",
            )
        results = [
            enqueue(engine, settings, catalog, clock.now(), key=f"m{i}", lead_id=lead_id)
            for i in range(4)
        ]
        assert [r.status for r in results] == ["pending", "pending", "suppressed", "suppressed"]


class TestSendWindow:
    """Marketing waits for the send window in the recipient's timezone; no nurture at 3 a.m."""

    def test_outside_the_window_the_message_waits_for_the_next_opening(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog
    ) -> None:
        late = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
        lead_id = add_lead(engine, late)
        result = enqueue(engine, settings, catalog, late, key="n1", lead_id=lead_id)
        opening = datetime(2026, 3, 3, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
        assert (result.status, result.next_attempt_at) == ("pending", opening)
        assert [r.next_attempt_at for r in outbox_rows(engine)] == [opening]

    def test_the_explicit_recipient_timezone_wins(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog
    ) -> None:
        when = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # 05:00 in New York
        lead_id = add_lead(engine, when)
        result = enqueue(
            engine,
            settings,
            catalog,
            when,
            key="n1",
            lead_id=lead_id,
            recipient_timezone="America/New_York",
        )
        assert result.next_attempt_at == datetime(2026, 3, 2, 13, 0, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("local", "expected_local"),
        [
            (datetime(2026, 3, 2, 7, 59), datetime(2026, 3, 2, 8, 0)),
            (datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 8, 0)),
            (datetime(2026, 3, 2, 19, 59), datetime(2026, 3, 2, 19, 59)),
            (datetime(2026, 3, 2, 20, 0), datetime(2026, 3, 3, 8, 0)),
            (datetime(2026, 3, 28, 23, 0), datetime(2026, 3, 29, 8, 0)),  # DST starts at night
        ],
    )
    def test_next_send_time(self, local: datetime, expected_local: datetime) -> None:
        zone = ZoneInfo("Europe/Berlin")
        window = SendWindow(start=time(8), end=time(20))
        got = next_send_time(local.replace(tzinfo=zone).astimezone(UTC), zone, window)
        assert got == expected_local.replace(tzinfo=zone).astimezone(UTC)

    def test_a_window_over_midnight(self) -> None:
        zone = ZoneInfo("UTC")
        window = SendWindow(start=time(22), end=time(6))
        assert next_send_time(datetime(2026, 3, 2, 23, tzinfo=UTC), zone, window) == datetime(
            2026, 3, 2, 23, tzinfo=UTC
        )
        assert next_send_time(datetime(2026, 3, 2, 12, tzinfo=UTC), zone, window) == datetime(
            2026, 3, 2, 22, tzinfo=UTC
        )


class TestListUnsubscribe:
    """Marketing rows carry the List-Unsubscribe headers and the same link in the body; with
    the placeholder link (no page answers it) they carry no header at all."""

    def test_headers_and_link(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        write_templates(tmp_path / "templates")
        settings: Settings = make_settings(**{"mail.tracking.base_url": "https://lf.example.com"})
        catalog = TemplateCatalog(settings.path(settings.paths.templates), settings)
        lead_id = add_lead(engine, clock.now())
        enqueue(engine, settings, catalog, clock.now(), key="n1", lead_id=lead_id)
        link = unsubscribe_url(settings, "L-1")
        (row,) = outbox_rows(engine)
        assert row.headers == {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert row.body_text == f"Read on.\nUnsubscribe: {link}\n"
        assert link.startswith("https://lf.example.com/t/unsubscribe?lead=L-1&token=")

    def test_no_header_with_the_placeholder_link(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
    ) -> None:
        """A provider's one-click unsubscribe aimed at example.com would be lost."""
        lead_id = add_lead(engine, clock.now())
        enqueue(engine, settings, catalog, clock.now(), key="n1", lead_id=lead_id)
        link = unsubscribe_url(settings, "L-1")
        (row,) = outbox_rows(engine)
        assert row.headers == {}
        assert row.body_text == f"Read on.\nUnsubscribe: {link}\n"
        assert link.startswith("https://example.com/unsubscribe?lead=L-1&token=")


class TestHeldClaims:
    """A row whose outcome the sender holds unrecorded is not claimed again when its lease runs
    out (the database froze past the lease): claiming it would send it twice."""

    def test_held_row_is_skipped_after_its_lease_and_claimed_once_released(
        self, engine: Engine, settings: Settings, catalog: TemplateCatalog
    ) -> None:
        lead = add_lead(engine, MONDAY_9_UTC, owner_id=add_rep(engine, MONDAY_9_UTC))
        enqueue(
            engine, settings, catalog, MONDAY_9_UTC, key="k1", lead_id=lead, category="operational"
        )
        lease = timedelta(minutes=5)
        [first] = claim_due(engine, MONDAY_9_UTC, lease, "sender-a", 10)
        later = MONDAY_9_UTC + lease + timedelta(seconds=1)  # the lease ran out meanwhile
        assert claim_due(engine, later, lease, "sender-a", 10, held={first.id}) == []
        [again] = claim_due(engine, later, lease, "sender-a", 10)
        assert again.id == first.id


def test_claims_of_dead_processes_of_this_host_go_back_to_pending(
    engine: Engine, settings: Settings, catalog: TemplateCatalog, clock: SettableClock
) -> None:
    """A sender starting hands back the claims of a process of this host that is gone (one that
    ran and exited; an earlier process that had this very pid), and no other: not this
    process's own live sender, not another host's. Handed back, a row is pending, due as it
    was, its attempt counted."""
    rep_id = add_rep(engine, clock.now())
    lead_id = add_lead(engine, clock.now(), owner_id=rep_id, stage="mql")
    for key in ("k1", "k2", "k3", "k4"):
        enqueue(
            engine, settings, catalog, clock.now(), key=key, lead_id=lead_id, category="operational"
        )
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    live = new_sender_id()
    host, pid, _drain, namespace = live.split(":")
    dead = f"{host}:{ended.pid}:0a1b2c3d:{namespace}"
    earlier_me = f"{host}:{pid}:99999999:{namespace}"
    elsewhere = f"elsewhere:{ended.pid}:0a1b2c3d:{namespace}"
    lease = timedelta(minutes=15)
    claimed = {
        worker: [m.id for m in claim_due(engine, clock.now(), lease, worker, 1)]
        for worker in (dead, earlier_me, live, elsewhere)
    }
    assert reclaim_dead_claims(engine) == {dead: 1, earlier_me: 1}
    rows = {row.id: (row.status, row.claimed_by, row.attempts) for row in outbox_rows(engine)}
    assert rows == {
        claimed[dead][0]: ("pending", dead, 1),
        claimed[earlier_me][0]: ("pending", earlier_me, 1),
        claimed[live][0]: ("sending", live, 1),
        claimed[elsewhere][0]: ("sending", elsewhere, 1),
    }
    again = claim_due(engine, clock.now(), lease, live, 10)
    assert sorted(m.id for m in again) == sorted([claimed[dead][0], claimed[earlier_me][0]])
