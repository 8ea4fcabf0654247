"""A batch's rows written in bulk are exactly the rows one firing at a time would write.

Pins, on SQLite and PostgreSQL (where the outbox rows go in as one ``unnest`` statement and row
updates as one ``UPDATE ... FROM unnest``):
- queueing outbox rows inserts each new idempotency key once (also a key twice in one batch),
  reports an existing key as not inserted with its stored row, and stores every value as given;
- lead updates of different column sets (a stage, an owner, an owner cleared) land on exactly
  their leads;
- the MQL rule over three batches of two: round robin carries on across batches, every email's
  idempotency key and outbox row, and each ``email_queued`` audit row names its outbox row;
- run again at the same instant, nothing is queued twice;
- a run takes one connection a batch, the last (which finds no match left) reading what the
  run needs first when it is the only one, and recording the run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from import_support import rows
from sqlalchemy import Engine, event, select
from test_firing_batches import MQL_RULE, T0, leads, runtime_for, seed

from leadflow.engine.batch_writes import BatchWrites, write
from leadflow.engine.evaluation import run_rule
from leadflow.engine.tick import run_due_rules
from leadflow.outbox.store import enqueue_rows, outbox_row
from leadflow.store.bulk_rows import array_parameter
from leadflow.store.database import transaction
from leadflow.store.id_ranges import among
from leadflow.store.tables import AUDIT, LEADS, OUTBOX, RULE_RUNS

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

    def test_texts_that_need_quoting_are_stored_as_given(
        self, engine: Engine, make_settings: Any
    ) -> None:
        """On PostgreSQL each column goes in as one array in its text form, joined by leadflow
        (bulk_rows.array_parameter): quotes, backslashes, braces, commas, the word NULL, an
        empty text and blanks at either end come back exactly."""
        awkward = [
            'He said "hi", {twice}',
            "C:\\path\\to\\file \\",
            "NULL",
            "",
            "  blanks at both ends\t",
            "Zoë's résumé, 日本\n\nsecond line",
        ]
        seed(engine, [{}])
        given = []
        for number, text in enumerate(awkward):
            row = _row(f"key-{number}", text or "(empty)", lead_id=1 if number % 2 else None)
            row.update(body_text=text, headers={"X-Note": text})
            given.append(row)
        with transaction(engine) as session:
            results = enqueue_rows(session, given)
        assert all(result.inserted for result in results.values())
        stored = rows(engine, "outbox", "idempotency_key", "lead_id", "body_text", "headers")
        assert stored == [
            (f"key-{number}", 1 if number % 2 else None, text, {"X-Note": text})
            for number, text in enumerate(awkward)
        ]


class TestArrayParameter:
    """A batch's columns go to PostgreSQL as one text each, not as lists psycopg dumps item by
    item; a kind it does not spell stays a list."""

    def test_the_kinds_a_batch_writes_are_joined_as_text(self) -> None:
        when = T0 + timedelta(microseconds=5)
        assert array_parameter(["a", 'b"c', "d\\e", None]) == '{"a","b\\"c","d\\\\e",NULL}'
        assert array_parameter([1, None, 30]) == "{1,NULL,30}"
        assert array_parameter([True, False]) == "{t,f}"
        assert array_parameter([when]) == '{"2026-03-02T09:00:00.000005+00:00"}'
        assert array_parameter([]) == "{}"
        assert array_parameter([1.5, 2]) == [1.5, 2]


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


class TestConnectionsPerRun:
    """A run takes the store's connections one batch at a time, nothing besides."""

    def test_one_connection_a_batch_and_the_run_recorded_in_the_last(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """Three matches in batches of two: two batches, then the transaction that finds none
        left and records the run; a run matching nothing is that one transaction alone, its
        unfinished-run mark, pools and record included. Each connection taken cost a ping on
        PostgreSQL and a transaction: the sixty days ran three rules an hour, 4,320 times."""
        runtime = runtime_for(
            engine,
            make_settings,
            tmp_path,
            MQL_RULE.format(rule_id="mql", template="new_mql"),
            **{"scheduler.evaluation_batch": 2},
        )
        seed(engine, [{} for _ in range(3)])
        rule_set = runtime.load_rules()
        taken: list[object] = []

        def checked_out(*_: object) -> None:
            taken.append(None)

        event.listen(engine, "checkout", checked_out)
        try:
            first = run_rule(runtime, rule_set, rule_set.rules[0], T0)
            after_first = len(taken)
            again = run_rule(runtime, rule_set, rule_set.rules[0], T0 + timedelta(minutes=5))
        finally:
            event.remove(engine, "checkout", checked_out)
        assert (first.matched, first.fired, again.matched) == (3, 3, 0)
        assert (after_first, len(taken) - after_first) == (3, 1)
        with engine.connect() as connection:
            recorded = connection.execute(
                select(
                    RULE_RUNS.c.rule_id,
                    RULE_RUNS.c.last_status,
                    RULE_RUNS.c.matched,
                    RULE_RUNS.c.last_started_at,
                    RULE_RUNS.c.unfinished_through,
                )
            ).all()
        assert [tuple(row) for row in recorded] == [
            ("mql", "ok", 0, T0 + timedelta(minutes=5), None)
        ]


class TestAmongIds:
    """``among`` on PostgreSQL: a batch's ids as one array parameter, the same rows as IN."""

    def test_one_parameter_for_a_batch_of_ids(self, engine: Engine) -> None:
        seed(engine, [{} for _ in range(5)])
        dialect = engine.dialect.name
        ids = [1, 3, 4]
        query = select(LEADS.c.external_id).where(among(LEADS.c.id, ids, dialect))
        with engine.connect() as connection:
            found = connection.execute(query.order_by(LEADS.c.id)).scalars().all()
        assert found == ["L1", "L3", "L4"]
        many = select(LEADS.c.id).where(among(LEADS.c.id, list(range(1, 1001)), dialect))
        compiled = many.compile(dialect=engine.dialect)
        texts = [value for value in compiled.params.values() if isinstance(value, str)]
        if dialect == "postgresql":
            # One text parameter the server casts; no IN list to expand into 1,000 placeholders.
            assert "= ANY (CAST(" in str(compiled)
            assert " IN " not in str(compiled)
            assert texts == ["{" + ",".join(map(str, range(1, 1001))) + "}"]
        else:
            assert " IN " in str(compiled)
            assert texts == []
