"""Retention: settled outbox rows, old audit rows and old score changes go, pending mail never,
the audit archived first; a crash between the archive and the delete loses nothing and
duplicates nothing.

Every test runs on a SQLite file and on PostgreSQL, with the time injected (``T0``)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select
from structlog.testing import capture_logs

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.retention import PENDING_SUFFIX, prune, read_archive
from leadflow.engine.runtime import Runtime
from leadflow.errors import ConfigError
from leadflow.rule_language.model import RuleSet
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.jobs import RETENTION_JOB, RuleJobs, build_scheduler
from leadflow.service.leadership import Leadership
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.settings import Settings
from leadflow.store.json_values import jsonable
from leadflow.store.tables import AUDIT, LEADS, OUTBOX, SCORE_CHANGES, STAGE_CHANGES
from tests.conftest import T0

DAY = timedelta(days=1)


def add_message(
    engine: Engine,
    key: str,
    status: str,
    created: datetime,
    sent: datetime | None = None,
) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(OUTBOX)
                .values(
                    idempotency_key=key,
                    message_id=f"<{key}@test>",
                    channel="email",
                    category="marketing",
                    recipient="ann@example.com",
                    subject=f"subject {key}",
                    body_text="hello",
                    headers={},
                    status=status,
                    attempts=1,
                    next_attempt_at=created,
                    created_at=created,
                    sent_at=sent,
                )
                .returning(OUTBOX.c.id)
            ).scalar_one()
        )


def add_lead(engine: Engine) -> int:
    with engine.begin() as connection:
        return int(
            connection.execute(
                insert(LEADS)
                .values(
                    external_id="L1",
                    email="ann@example.com",
                    attributes={},
                    stage="lead",
                    stage_entered_at=T0,
                    created_at=T0,
                    updated_at=T0,
                )
                .returning(LEADS.c.id)
            ).scalar_one()
        )


def add_audit(engine: Engine, ages: list[timedelta], lead_id: int | None = None) -> list[int]:
    with engine.begin() as connection:
        return [
            int(
                connection.execute(
                    insert(AUDIT)
                    .values(
                        at=T0 - age,
                        source="rule",
                        rule_id="mql-assignment",
                        rule_version="v1",
                        lead_id=lead_id,
                        action="set_stage",
                        params={"stage": "mql", "n": number},
                        evidence={"score": 61, "note": "ü"},
                    )
                    .returning(AUDIT.c.id)
                ).scalar_one()
            )
            for number, age in enumerate(ages)
        ]


def add_score_changes(engine: Engine, lead_id: int, ages: list[timedelta]) -> list[int]:
    with engine.begin() as connection:
        return [
            int(
                connection.execute(
                    insert(SCORE_CHANGES)
                    .values(
                        lead_id=lead_id,
                        at=T0 - age,
                        old_score=number,
                        new_score=number + 1,
                        cause="decay",
                    )
                    .returning(SCORE_CHANGES.c.id)
                ).scalar_one()
            )
            for number, age in enumerate(ages)
        ]


def ids(engine: Engine, table: Any) -> set[int]:
    with engine.connect() as connection:
        return set(connection.execute(select(table.c.id)).scalars())


def retention_settings(make_settings: Any, tmp_path: Path, **more: Any) -> Settings:
    values = {
        "mail.keep_sent": "90d",
        "audit.keep": "365d",
        "audit.archive": str(tmp_path / "archive"),
        "scheduler.retention_batch": 100,
    }
    values.update(more)
    settings: Settings = make_settings(**values)
    return settings


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """An audit row's columns, its time as an instant (the archive always writes microseconds)."""
    columns = {column.name for column in AUDIT.columns}
    return {
        key: datetime.fromisoformat(value) if key == "at" else value
        for key, value in row.items()
        if key in columns
    }


def archived(folder: Path) -> list[dict[str, Any]]:
    return [row for path in sorted(folder.glob("audit-*.jsonl.gz")) for row in read_archive(path)]


class TestOutbox:
    def test_settled_rows_past_keep_sent_go_pending_and_sending_never(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(make_settings, tmp_path)
        old, young = T0 - 91 * DAY, T0 - 89 * DAY
        gone = {
            add_message(engine, "sent-91d", "sent", old, old),
            add_message(engine, "failed-91d", "failed", old),
            add_message(engine, "suppressed-91d", "suppressed", old),
        }
        kept = {
            add_message(engine, "sent-89d", "sent", young, young),
            add_message(engine, "failed-89d", "failed", young),
            # created before the cut-off but sent after it: kept until its send is old
            add_message(engine, "sent-late", "sent", T0 - 92 * DAY, young),
            add_message(engine, "pending-400d", "pending", T0 - 400 * DAY),
            add_message(engine, "sending-400d", "sending", T0 - 400 * DAY),
        }
        many = {add_message(engine, f"bulk-{n}", "sent", old, old) for n in range(250)}
        with capture_logs() as logs:
            report = prune(engine, settings, T0)
        assert report.outbox_deleted == 253
        assert report.batches == 3  # 100 rows per transaction
        assert ids(engine, OUTBOX) == kept
        assert not (gone | many) & ids(engine, OUTBOX)
        [line] = [event for event in logs if event["event"] == "retention_pruned"]
        assert line["outbox_deleted"] == 253
        assert line["audit_deleted"] == 0

    def test_dry_run_counts_and_deletes_nothing(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(make_settings, tmp_path)
        old = T0 - 91 * DAY
        for n in range(3):
            add_message(engine, f"sent-{n}", "sent", old, old)
        add_audit(engine, [366 * DAY, 364 * DAY])
        report = prune(engine, settings, T0, dry_run=True)
        assert (report.outbox_deleted, report.audit_deleted) == (3, 1)
        assert len(ids(engine, OUTBOX)) == 3
        assert len(ids(engine, AUDIT)) == 2
        assert not (tmp_path / "archive").exists()


class TestAudit:
    def test_archive_holds_exactly_the_deleted_rows(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(make_settings, tmp_path)
        lead_id = add_lead(engine)
        old = add_audit(engine, [366 * DAY + n * timedelta(minutes=1) for n in range(250)], lead_id)
        young = add_audit(engine, [364 * DAY, DAY], lead_id)
        with engine.connect() as connection:
            expected = [
                jsonable(dict(row))
                for row in connection.execute(
                    select(AUDIT).where(AUDIT.c.id.in_(old)).order_by(AUDIT.c.id)
                ).mappings()
            ]
        report = prune(engine, settings, T0)
        assert report.audit_deleted == 250
        assert len(report.archive_files) == 3
        assert ids(engine, AUDIT) == set(young)
        rows = sorted(archived(tmp_path / "archive"), key=lambda row: row["id"])
        assert [comparable(row) for row in rows] == [comparable(row) for row in expected]
        assert {row["lead_external_id"] for row in rows} == {"L1"}
        assert not list((tmp_path / "archive").glob(f"*{PENDING_SUFFIX}"))

    def test_forever_keeps_every_row(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(make_settings, tmp_path, **{"audit.keep": "forever"})
        kept = add_audit(engine, [3000 * DAY])
        report = prune(engine, settings, T0)
        assert report.audit_cutoff is None
        assert ids(engine, AUDIT) == set(kept)

    def test_a_crash_between_archive_and_delete_loses_and_duplicates_nothing(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(make_settings, tmp_path)
        old = add_audit(engine, [366 * DAY + n * timedelta(minutes=1) for n in range(250)])
        calls: list[Path | None] = []

        def crash_on_the_second_batch(batch: Any, pending: Path | None) -> None:
            calls.append(pending)
            if len(calls) == 2:
                raise KeyboardInterrupt  # the process dies with the file written, not deleted

        with pytest.raises(KeyboardInterrupt):
            prune(engine, settings, T0, before_delete=crash_on_the_second_batch)
        folder = tmp_path / "archive"
        assert len(ids(engine, AUDIT)) == 150  # the second batch's delete rolled back
        [pending] = folder.glob(f"*{PENDING_SUFFIX}")
        assert pending == calls[1]
        assert {row["id"] for row in read_archive(pending)} <= ids(engine, AUDIT)

        report = prune(engine, settings, T0)
        assert report.audit_recovered == 100  # the archived rows the crash left are deleted
        assert report.audit_deleted == 50
        assert ids(engine, AUDIT) == set()
        rows = [row["id"] for row in archived(folder)]
        assert sorted(rows) == sorted(old)  # every row in exactly one file
        assert not list(folder.glob(f"*{PENDING_SUFFIX}"))
        assert not list(folder.glob(".*"))


KILLED_MID_BATCH = """
import os, signal, sys
from leadflow.config import load_settings
from leadflow.engine.retention import prune
from leadflow.store.database import create_store_engine
from tests.conftest import T0

settings = load_settings(None, env={}, overrides={
    "database.url": sys.argv[1], "audit.archive": sys.argv[2],
    "scheduler.retention_batch": 100, "mail.keep_sent": "90d", "audit.keep": "365d",
}).settings
batches = []

def die_on_the_second(ids, pending):
    batches.append(ids)
    if len(batches) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # archive durable, delete not committed

prune(create_store_engine(sys.argv[1]), settings, T0, before_delete=die_on_the_second)
"""


class TestScoreChanges:
    """Score changes older than ``audit.keep_score_changes`` go, the younger stay; stage changes
    (the funnel report's history) are never pruned."""

    def test_rows_past_keep_score_changes_go_in_batches(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(
            make_settings, tmp_path, **{"audit.keep_score_changes": "30d"}
        )
        lead_id = add_lead(engine)
        old = add_score_changes(
            engine, lead_id, [31 * DAY + n * timedelta(minutes=1) for n in range(150)]
        )
        young = add_score_changes(engine, lead_id, [29 * DAY, timedelta(hours=1)])
        with engine.begin() as connection:  # a stage change older than every cut-off
            connection.execute(
                insert(STAGE_CHANGES).values(
                    lead_id=lead_id, at=T0 - 3000 * DAY, to_stage="lead", cause="import"
                )
            )
        stages = ids(engine, STAGE_CHANGES)
        assert len(stages) == 1
        counted = prune(engine, settings, T0, dry_run=True)
        assert counted.score_changes_deleted == 150
        assert ids(engine, SCORE_CHANGES) == set(old) | set(young)
        report = prune(engine, settings, T0)
        assert report.score_changes_cutoff == T0 - 30 * DAY
        assert report.score_changes_deleted == 150
        assert report.batches == 2  # 100 rows per transaction
        assert ids(engine, SCORE_CHANGES) == set(young)
        assert ids(engine, STAGE_CHANGES) == stages

    def test_forever_keeps_every_score_change(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = retention_settings(
            make_settings, tmp_path, **{"audit.keep_score_changes": "forever"}
        )
        kept = add_score_changes(engine, add_lead(engine), [3000 * DAY])
        report = prune(engine, settings, T0)
        assert (report.score_changes_cutoff, report.score_changes_deleted) == (None, 0)
        assert ids(engine, SCORE_CHANGES) == set(kept)


class TestKilled:
    def test_a_process_killed_after_the_archive_loses_nothing(
        self, engine: Engine, store_url: str, make_settings: Any, tmp_path: Path
    ) -> None:
        old = add_audit(engine, [366 * DAY + n * timedelta(minutes=1) for n in range(250)])
        folder = tmp_path / "archive"
        killed = subprocess.run(
            [sys.executable, "-c", KILLED_MID_BATCH, store_url, str(folder)],
            cwd=Path(__file__).resolve().parents[1],
            check=False,
        )
        assert killed.returncode == -signal.SIGKILL
        assert len(ids(engine, AUDIT)) == 150
        assert len(list(folder.glob(f"*{PENDING_SUFFIX}"))) == 1
        report = prune(engine, retention_settings(make_settings, tmp_path), T0)
        assert (report.audit_recovered, report.audit_deleted) == (100, 50)
        assert ids(engine, AUDIT) == set()
        assert sorted(row["id"] for row in archived(folder)) == sorted(old)


class TestDaemonJob:
    def test_the_leader_prunes_on_its_own_job(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        (tmp_path / "rules").mkdir()
        (tmp_path / "templates").mkdir()
        settings = retention_settings(
            make_settings,
            tmp_path,
            **{
                "paths.rules": str(tmp_path / "rules"),
                "paths.templates": str(tmp_path / "templates"),
                "rules.allow_empty": True,  # a daemon with nothing but its own jobs
                "scheduler.retention_every": "30m",
            },
        )
        runtime = Runtime.build(engine, settings, SettableClock(T0))
        old = T0 - 91 * DAY
        add_message(engine, "sent-91d", "sent", old, old)
        add_audit(engine, [366 * DAY])
        job, follower_report, leader_report = asyncio.run(self._run(runtime))
        assert job.name == "retention (old outbox and audit rows)"
        assert job.trigger.interval == timedelta(minutes=30)
        wait = job.next_run_time - datetime.now(UTC)
        assert timedelta(seconds=50) < wait <= timedelta(minutes=1)
        assert follower_report is None  # not the leader: nothing done
        assert leader_report is not None
        assert (leader_report.outbox_deleted, leader_report.audit_deleted) == (1, 1)
        assert ids(engine, OUTBOX) == ids(engine, AUDIT) == set()

    async def _run(self, runtime: Runtime) -> tuple[Any, Any, Any]:
        holder: SnapshotHolder[RuleSet] = SnapshotHolder(clock=runtime.clock)
        holder.record_success(runtime.load_rules())
        leadership = Leadership()  # starts as a follower
        evaluator = Evaluator(runtime, holder, steps=[], leadership=leadership)
        scheduler = build_scheduler(runtime.settings.scheduler, asyncio.get_running_loop())
        scheduler.start(paused=True)
        try:
            jobs = RuleJobs(scheduler, evaluator)
            jobs.add_retention(runtime.settings.scheduler.retention_every)
            job = scheduler.get_job(RETENTION_JOB)
            assert job.func == evaluator.retention
            follower = await evaluator.retention()
            leadership.fence.clear()  # became the leader
            leader = await evaluator.retention()
            return job, follower, leader
        finally:
            scheduler.shutdown(wait=False)


class TestCommandAndConfig:
    def test_prune_command_dry_run_then_for_real(
        self, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"database:\n  url: {store_url}\nmail:\n  keep_sent: 30d\n"
            "audit:\n  keep: 100d\n  archive: old-audit\n",
            encoding="utf-8",
        )
        from leadflow.store.database import create_store_engine

        engine = create_store_engine(store_url)
        now = datetime.now(UTC)
        sent = add_message(engine, "sent-31d", "sent", now - 31 * DAY, now - 31 * DAY)
        pending = add_message(engine, "pending-31d", "pending", now - 31 * DAY)
        with engine.begin() as connection:
            connection.execute(
                insert(AUDIT).values(
                    at=now - 101 * DAY, source="rule", action="x", params={}, evidence={}
                )
            )
        old_audit = ids(engine, AUDIT)
        assert main(["--config", str(config), "prune", "--dry-run"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("outbox: would delete 1 sent, failed or suppressed messages")
        assert " older than 30d (before " in out[0]
        assert out[1].startswith("audit: would delete 1 rows older than 100d (before ")
        assert out[1].endswith(f"; archived first in {tmp_path / 'old-audit'}/")
        assert out[2].startswith("score changes: would delete 0 rows older than 365d (before ")
        assert out[2].endswith(" UTC); not archived")
        assert (ids(engine, OUTBOX), ids(engine, AUDIT)) == ({sent, pending}, old_audit)
        assert main(["--config", str(config), "prune", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document["dry_run"] is False
        assert (document["outbox_deleted"], document["audit_deleted"]) == (1, 1)
        [file] = document["archive_files"]
        assert Path(file).parent == tmp_path / "old-audit"
        assert len(ids(engine, OUTBOX)) == 1
        assert (ids(engine, OUTBOX), ids(engine, AUDIT)) == ({pending}, set())
        engine.dispose()

    def test_config_shows_the_retention_keys(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "config.yaml"
        config.write_text("audit:\n  keep: forever\n", encoding="utf-8")
        assert main(["--config", str(config), "config", "--format", "json"]) == 0
        shown = {row["key"]: row for row in json.loads(capsys.readouterr().out)}
        assert shown["mail.keep_sent"]["value"] == "90d"
        assert shown["mail.keep_sent"]["source"] == "default"
        assert shown["audit.keep"]["value"] == "forever"
        assert shown["audit.keep"]["source"] == f"{config}:2:3"
        assert shown["audit.archive"]["value"] == "state/audit-archive"
        assert shown["audit.keep_score_changes"]["value"] == "365d"
        assert shown["scheduler.retention_every"]["value"] == "1h"
        assert shown["scheduler.retention_batch"]["value"] == "10000"

    def test_keep_sent_shorter_than_the_frequency_cap_window_is_refused(
        self, tmp_path: Path
    ) -> None:
        config = tmp_path / "config.yaml"
        config.write_text("mail:\n  keep_sent: 3d\naudit:\n  keep: soon\n", encoding="utf-8")
        with pytest.raises(ConfigError) as error:
            load_settings(config, env={})
        assert str(error.value).splitlines() == [
            f"{config}:2:3: mail.keep_sent: must be at least frequency_cap.window (7d), "
            "which counts the rows it would delete; got 3d",
            f"{config}:4:3: audit.keep: 'soon' is not a duration; write a number and a unit "
            "(s, m, h, d, w), e.g. 90m",
        ]
