"""kill -9 at any moment: after restarts the store and the sink are as if nothing happened.

A single daemon on a SQLite file works through a funnel (an evaluation in several batches, an
email per lead to a real SMTP sink) and is SIGKILLed at seeded random moments, then restarted.
Pinned afterwards, against an uninterrupted run of the same rules on the same seed data:
the same leads moved to the same owners, the same outbox idempotency keys and Message-IDs, one
audit row per lead and action, and every message at the sink. A Message-ID the sink received
twice is allowed only inside the documented at-least-once window: its first copy was accepted
moments before a kill, when the process died before recording it ``sent``.

And a ``leadflow run --once`` of a ``reentry: every_time`` rule killed after some batches, on
SQLite and PostgreSQL: the run after it emails each lead the killed run did not, and no other.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, create_engine, select

from leadflow.clock import SystemClock
from leadflow.config import load_settings
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.service.channels import drain_configured
from leadflow.store.database import create_store_engine
from leadflow.store.tables import LEADS as LEAD_ROWS
from leadflow.store.tables import OUTBOX
from tests.mail_support import smtp_server
from tests.replica_support import (
    GatedSink,
    Replica,
    audit_actions,
    lead_states,
    make_project,
    mql_count,
    outbox,
    round_robin,
    seed_funnel,
    sent_message_ids,
    smtp_daemon_config,
    wait_until,
)

LEADS = 400
KILLS = 3
SEED = 20260302
WINDOW_S = 1.0
"""The longest an accepted message may wait for its ``sent`` commit here: one commit, which on
SQLite may queue behind an evaluation batch holding the write lock."""
CONFIG = smtp_daemon_config(
    mail={"lease": "7s", "batch_size": 10}, scheduler={"evaluation_batch": 20}
)
SEEDED_AT = datetime.now(UTC) - timedelta(days=1)


@pytest.fixture
def sinks() -> Iterator[tuple[tuple[GatedSink, int], tuple[GatedSink, int]]]:
    """The killed daemon's sink and the reference run's sink."""
    killed, reference = GatedSink(delay=0.01), GatedSink()
    with smtp_server(killed) as port, smtp_server(reference) as reference_port:  # type: ignore[arg-type]
        yield (killed, port), (reference, reference_port)


def store_at(folder: Path, template: Path) -> str:
    (folder / "state").mkdir(parents=True, exist_ok=True)
    shutil.copy(template, folder / "state" / "leadflow.db")
    url = f"sqlite:///{folder / 'state' / 'leadflow.db'}"
    engine = create_store_engine(url)
    seed_funnel(engine, SEEDED_AT, LEADS)
    engine.dispose()
    return url


def uninterrupted(project: Path, url: str, smtp_port: int) -> None:
    """The reference: one evaluation and one drain, in this process, nothing killed."""
    settings = load_settings(
        project / "config.yaml",
        env={},
        overrides={"database.url": url, "mail.smtp.port": smtp_port},
    ).settings
    engine = create_store_engine(url)
    try:
        runtime = Runtime.build(engine, settings, SystemClock())
        run_due_rules(runtime, runtime.load_rules(), runtime.clock.now())
        asyncio.run(drain_configured(engine, settings, runtime.clock, once=True))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_random_kills_leave_the_state_of_an_uninterrupted_run(
    tmp_path: Path,
    sqlite_template: Path,
    sinks: tuple[tuple[GatedSink, int], tuple[GatedSink, int]],
) -> None:
    (sink, port), (reference_sink, reference_port) = sinks
    rng = random.Random(SEED)
    project = make_project(tmp_path / "killed", CONFIG)
    url = store_at(project, sqlite_template)
    reader = create_engine(url)  # a plain reader: never takes the write lock
    env = {"LEADFLOW_MAIL__SMTP__PORT": str(port)}
    kills: list[float] = []
    try:
        for incarnation in range(KILLS):
            daemon = Replica(project, url, log_name=f"daemon-{incarnation}.log", **env)
            try:
                wait_until(partial(daemon.has, "daemon_started"), "the daemon to start", 30)
                time.sleep(rng.uniform(0.1, 2.0))
                kills.append(daemon.kill())
            finally:
                daemon.kill()
        assert mql_count(reader) > 0 or sink.accepted, "no work was done between the kills"
        final = Replica(project, url, log_name="daemon-final.log", **env)
        try:
            wait_until(lambda: mql_count(reader) == LEADS, "every lead to become an MQL", 60)
            wait_until(lambda: len(sent_message_ids(reader)) == LEADS, "every email sent", 60)
            assert final.terminate() == 0
        finally:
            final.kill()
        killed_state = (lead_states(reader), audit_actions(reader), outbox(reader))
    finally:
        reader.dispose()

    reference = make_project(tmp_path / "reference", CONFIG)
    reference_url = store_at(reference, sqlite_template)
    uninterrupted(reference, reference_url, reference_port)
    reference_engine = create_engine(reference_url)
    try:
        expected_state = (
            lead_states(reference_engine),
            audit_actions(reference_engine),
            outbox(reference_engine),
        )
    finally:
        reference_engine.dispose()

    assert expected_state[0] == round_robin(sorted(expected_state[0]))
    assert killed_state == expected_state
    expected_ids = {message_id for message_id, _ in expected_state[2].values()}
    assert set(reference_sink.message_ids()) == expected_ids
    received = sink.message_ids()
    assert set(received) == expected_ids
    before_kill = []
    for message_id, copies in received.items():
        if copies == 1:
            continue
        first = min(a.at for a in sink.accepted if a.message_id == message_id)
        assert copies == 2
        gaps = [kill - first for kill in kills if -0.5 <= kill - first < WINDOW_S]
        assert gaps, (
            f"{message_id} sent twice, the first time not within {WINDOW_S} s of a kill: "
            f"{[round(kill - first, 3) for kill in kills]}"
        )
        before_kill.append(round(min(gaps), 3))
    duplicates = Counter(copies for copies in received.values())
    print(
        f"kills at {[round(k - kills[0], 2) for k in kills]} s; copies {dict(duplicates)}; "
        f"duplicates accepted {sorted(before_kill)} s before a kill"
    )


EVERY_TIME_EMAIL = """\
rules:
  - id: welcome-again
    description: Every run emails each lead still in the lead stage.
    every: 1h
    reentry: every_time
    when: {field: stage, equals: lead}
    actions:
      - notify: {to: lead, template: nurture_welcome}
"""
EMAIL_LEADS = 2000
EMAIL_BATCH = 10
RUN_AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
KILLED, RETRY = "20260302T090000.000000Z", "20260302T090100.000000Z"
"""The occasions in the emails' idempotency keys: the killed run's instant, the retry's."""


def _run_once(project: Path, url: str, now: datetime, log_name: str) -> Replica:
    leadflow = str(Path(sys.executable).with_name("leadflow"))
    command = [leadflow, "run", "--once", "--now", now.isoformat()]
    return Replica(project, url, log_name=log_name, command=command)


def _emails(engine: Engine) -> Counter[tuple[str, str]]:
    """(lead external id, the firing's occasion: the run instant its idempotency key names) ->
    how many outbox rows say so."""
    query = select(LEAD_ROWS.c.external_id, OUTBOX.c.idempotency_key).join(
        LEAD_ROWS, OUTBOX.c.lead_id == LEAD_ROWS.c.id
    )
    with engine.connect() as connection:
        return Counter((lead, key.split("/")[2]) for lead, key in connection.execute(query))


@pytest.mark.slow
def test_a_run_killed_after_a_batch_emails_no_lead_twice(tmp_path: Path, store_url: str) -> None:
    """An ``every_time`` rule's run killed (SIGKILL) once batches committed their emails: the
    run a minute later goes on after those leads (their batches marked how far the run got as
    they committed), so each lead is emailed once: by the killed run or, after the leads it
    went through, by the retry. On SQLite and PostgreSQL."""
    config = yaml.safe_dump(
        {
            "mail": {"transport": "maildir", "maildir": "state/maildir", "from": "lf@example.com"},
            "calendar": {"timezone": "UTC"},
            "scheduler": {"evaluation_batch": EMAIL_BATCH},
        }
    )
    project = make_project(tmp_path / "project", config, EVERY_TIME_EMAIL)
    seeder = create_store_engine(store_url)
    leads = seed_funnel(seeder, RUN_AT - timedelta(days=1), EMAIL_LEADS)
    seeder.dispose()
    engine = create_engine(store_url)  # a plain reader: never takes SQLite's write lock
    try:
        killed = _run_once(project, store_url, RUN_AT, "killed.log")
        try:
            wait_until(lambda: sum(_emails(engine).values()) >= EMAIL_BATCH, "a batch", 60)
            assert killed.alive, "the run ended before it could be killed"
            killed.kill()
        finally:
            killed.kill()
        first = _emails(engine)
        emailed = len(first)
        assert 0 < emailed < EMAIL_LEADS
        assert emailed % EMAIL_BATCH == 0
        assert first == Counter({(lead, KILLED): 1 for lead in leads[:emailed]})

        retry = _run_once(project, store_url, RUN_AT + timedelta(minutes=1), "retry.log")
        try:
            assert retry.process.wait(timeout=120) == 0, retry.log_path.read_text()
        finally:
            retry.kill()
        assert _emails(engine) == first + Counter({(lead, RETRY): 1 for lead in leads[emailed:]})
    finally:
        engine.dispose()
