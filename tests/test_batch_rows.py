"""A batch's rows written in bulk are exactly the rows one firing at a time would write.

Pins, on SQLite and PostgreSQL (where the outbox rows go in as one ``unnest`` statement and row
updates as one ``UPDATE ... FROM unnest``):
- queueing outbox rows inserts each new idempotency key once (also a key twice in one batch),
  reports an existing key as not inserted with its stored row, and stores every value as given;
- lead updates of different column sets (a stage, an owner, an owner cleared) land on exactly
  their leads;
- the MQL rule over three batches of two: round robin carries on across batches, every email's
  idempotency key and outbox row, and each ``email_queued`` audit row names its outbox row;
- run again at the same instant, nothing is queued twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from import_support import rows
from sqlalchemy import Engine, select
from test_firing_batches import MQL_RULE, T0, leads, runtime_for, seed

from leadflow.engine.batch_writes import BatchWrites, write
from leadflow.engine.evaluation import run_rule
from leadflow.engine.tick import run_due_rules
from leadflow.outbox.store import enqueue_rows, outbox_row
from leadflow.store.database import transaction
from leadflow.store.tables import AUDIT, OUTBOX

DUE = T0 + timedelta(hours=2)


def _row(key: str, subject: str, lead_id: int | None = None) -> dict[str, Any]:
    return outbox_row(
        key=key,
        channel="email",
        category="operational",
        recipient="rep1@example.com",
        subject=subject,
        body_text=f"{subject}\n",
        body_html=None,
        headers={"X-Key": key},
        due=DUE,
        now=T0,
        message_id_domain="leadflow.test",
        lead_id=lead_id,
        rule_id="mql",
        rule_version="v1",
    )


class TestQueueingOutboxRows:
    """``enqueue_rows``: new keys inserted once, known keys reported with their stored row."""

    def test_new_known_and_repeated_keys(self, engine: Engine, make_settings: Any) -> None:
        seed(engine, [{}, {}])
        with transaction(engine) as session:
            first = enqueue_rows(session, [_row("key-c", "C")])
        known_id = first["key-c"].outbox_id
        with transaction(engine) as session:
            results = enqueue_rows(
                session,
                [
                    _row("key-a", "A", lead_id=1),
                    _row("key-b", "B", lead_id=2),
                    _row("key-b", "B again"),  # the same key twice: one row, the last
                    _row("key-c", "C again"),  # there before: nothing inserted
                ],
            )
        assert {key: result.inserted for key, result in results.items()} == {
            "key-a": True,
            "key-b": True,
            "key-c": False,
        }
        assert results["key-c"].outbox_id == known_id
        stored = rows(
            engine,
            "outbox",
            "id",
            "idempotency_key",
            "lead_id",
            "subject",
            "body_text",
            "headers",
            "status",
            "next_attempt_at",
            "created_at",
        )
        assert [row[1:] for row in stored] == [
            ("key-c", None, "C", "C\n", {"X-Key": "key-c"}, "pending", DUE, T0),
            ("key-a", 1, "A", "A\n", {"X-Key": "key-a"}, "pending", DUE, T0),
            ("key-b", None, "B again", "B again\n", {"X-Key": "key-b"}, "pending", DUE, T0),
        ]
        by_key = {row[1]: row[0] for row in stored}
        assert {key: result.outbox_id for key, result in results.items()} == by_key


class TestLeadUpdates:
    """Changed columns land on their leads, grouped by the columns each lead changes."""

    def test_each_lead_gets_its_own_changes(self, engine: Engine, make_settings: Any) -> None:
        seed(engine, [{}, {}, {}, {}])
        with transaction(engine) as session:
            writes = BatchWrites(
                lead_changes={
                    1: {"stage": "mql", "stage_entered_at": T0},
                    2: {"owner_id": 2},
                    3: {"stage": "mql", "stage_entered_at": T0},
                    4: {"last_activity_at": T0},
                }
            )
            write(session, writes, T0)
        with transaction(engine) as session:
            # Groups whose every value is NULL: a time column; an integer column beside a stage.
            cleared = {4: {"last_activity_at": None}, 2: {"owner_id": None, "stage": "nurture"}}
            write(session, BatchWrites(lead_changes=cleared), T0)
        old = T0 - timedelta(days=30)
        columns = ("external_id", "stage", "stage_entered_at", "owner_id", "last_activity_at")
        assert rows(engine, "leads", *columns) == [
            ("L1", "mql", T0, None, None),
            ("L2", "nurture", old, None, None),
            ("L3", "mql", T0, None, None),
            ("L4", "lead", old, None, None),
        ]


class TestMqlOverSeveralBatches:
    """Three batches of two firings write what six firings one by one would."""

    def test_round_robin_outbox_and_audit(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        runtime = runtime_for(
            engine,
            make_settings,
            tmp_path,
            MQL_RULE.format(rule_id="mql", template="new_mql"),
            **{"scheduler.evaluation_batch": 2},
        )
        seed(engine, [{} for _ in range(6)])
        rule_set = runtime.load_rules()
        (outcome,) = run_due_rules(runtime, rule_set, T0)
        assert (outcome.matched, outcome.fired, outcome.failed) == (6, 6, 0)
        assert leads(engine) == [(f"L{n}", "mql", 1 if n % 2 else 2) for n in range(1, 7)]
        occasion = "20260302T090000.000000Z"
        outbox = rows(engine, "outbox", "id", "idempotency_key", "lead_id", "recipient", "subject")
        assert [row[1:] for row in outbox] == [
            (
                f"rule:mql/lead:L{n}/{occasion}/notify2:owner:new_mql",
                n,
                f"rep{1 if n % 2 else 2}@example.com",
                f"New MQL Lead {n}",
            )
            for n in range(1, 7)
        ]
        with engine.connect() as connection:
            queued = connection.execute(
                select(AUDIT.c.lead_id, AUDIT.c.params)
                .where(AUDIT.c.action == "email_queued")
                .order_by(AUDIT.c.id)
            ).all()
        outbox_ids = {row[2]: row[0] for row in outbox}
        assert [
            (lead, params["outbox_id"], params["status"], params["new"]) for lead, params in queued
        ] == [(n, outbox_ids[n], "pending", True) for n in range(1, 7)]
        assert rows(engine, "sla_timers", "lead_id", "owner_id", "due_at", "status") == [
            (n, 1 if n % 2 else 2, T0 + timedelta(hours=4), "running") for n in range(1, 7)
        ]

    def test_the_same_instant_again_queues_nothing_twice(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """A batch written again (a crash after commit, the daemon re-running the instant) finds
        its keys: the leads are reset to qualify, the emails stay one each."""
        runtime = runtime_for(
            engine,
            make_settings,
            tmp_path,
            MQL_RULE.format(rule_id="mql", template="new_mql"),
            **{"scheduler.evaluation_batch": 2},
        )
        seed(engine, [{} for _ in range(3)])
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE leads SET stage = 'lead', owner_id = NULL")
        outcome = run_rule(runtime, rule_set, rule_set.rules[0], T0)
        assert outcome.fired == 3
        keys = [key for (key,) in rows(engine, "outbox", "idempotency_key")]
        assert len(keys) == len(set(keys)) == 3
        with engine.connect() as connection:
            second = connection.execute(
                select(AUDIT.c.lead_id, AUDIT.c.params)
                .where(AUDIT.c.action == "email_queued")
                .order_by(AUDIT.c.id)
            ).all()[3:]
            ids = dict(connection.execute(select(OUTBOX.c.lead_id, OUTBOX.c.id)).all())
        assert [(lead, p["outbox_id"], p["new"]) for lead, p in second] == [
            (n, ids[n], False) for n in (1, 2, 3)
        ]
