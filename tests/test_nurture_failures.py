"""A nurture step whose email cannot be rendered is seen, retried with a backoff, and recovers.

Pins, on SQLite and PostgreSQL:
- a declared lead attribute the lead has no value for is in ``lead.attributes`` as None, so a
  step reading it is sent (it failed at every attempt, silently, before);
- a step failing for another reason counts its attempts, keeps its error, waits 1m, 2m, 4m ...
  at most an hour between attempts; the lead's audit gets one row per error, not one per
  attempt; ``leadflow status`` (tables and JSON) shows the failing step;
- once the lead can be rendered the step goes out and the enrollment is no longer failing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, event, insert, select, update

from leadflow.cli.status_command import (
    failing_nurture as failing_with_templates,
)
from leadflow.cli.status_command import (
    render_failing_nurture,
    rules_view,
    status_document,
)
from leadflow.clock import SettableClock
from leadflow.engine.nurture import retry_delay, run_nurture_steps
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.status import FailingNurtureStep, collect_status, failing_nurture_steps
from leadflow.store.tables import AUDIT, LEADS, NURTURE, OUTBOX

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 09:00
MINUTE = timedelta(minutes=1)

RULES = """\
rules:
  - id: nurture-new
    every: 5m
    when:
      all:
        - {field: stage, equals: lead}
    actions:
      - enroll: welcome
streams:
  - id: welcome
    steps:
      - {template: hello, after: 0h}
"""


def runtime_with(
    engine: Engine, make_settings: Any, tmp_path: Path, text: str, *, sector: str | None = None
) -> Runtime:
    """The one-step ``welcome`` stream whose ``hello`` email has ``text`` as its body; leads
    declare ``sector`` and ``industry``; one lead, L1, in stage lead, is seeded."""
    rules, templates = tmp_path / "rules", tmp_path / "templates"
    rules.mkdir()
    templates.mkdir()
    (rules / "nurture.yaml").write_text(RULES, encoding="utf-8")
    (templates / "hello.subject.txt").write_text("Hello {{ lead.name }}", encoding="utf-8")
    (templates / "hello.txt").write_text(text, encoding="utf-8")
    settings = make_settings(
        **{
            "paths.rules": str(rules),
            "paths.templates": str(templates),
            "calendar.timezone": "UTC",
            "mail.send_window": {"start": "00:00", "end": "00:00"},
            "attributes.leads": {"sector": "string", "industry": "string"},
        }
    )
    old = T0 - timedelta(days=3)
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": 1,
                    "external_id": "L1",
                    "email": "l1@example.com",
                    "name": "Lead One",
                    "score": 10,
                    "stage": "lead",
                    "stage_entered_at": old,
                    "attributes": {} if sector is None else {"sector": sector},
                    "unsubscribed": False,
                    "do_not_email": False,
                    "hard_bounced": False,
                    "created_at": old,
                    "updated_at": old,
                }
            ],
        )
    return Runtime.build(engine, settings, SettableClock(T0))


def enrollment(engine: Engine) -> tuple[Any, ...]:
    with engine.connect() as connection:
        row = connection.execute(
            select(
                NURTURE.c.status,
                NURTURE.c.next_step,
                NURTURE.c.next_step_at,
                NURTURE.c.failures,
                NURTURE.c.last_error,
                NURTURE.c.last_failed_at,
            )
        ).one()
    return tuple(row)


def audit(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        found = connection.execute(
            select(AUDIT.c.at, AUDIT.c.action, AUDIT.c.params)
            .where(AUDIT.c.source == "nurture")
            .order_by(AUDIT.c.id)
        )
        return [tuple(row) for row in found]


def subjects_and_bodies(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as connection:
        found = connection.execute(select(OUTBOX.c.subject, OUTBOX.c.body_text))
        return [(subject, body.split("\n", 1)[0]) for subject, body in found]


def test_a_declared_attribute_without_a_value_renders_blank(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """The tester's case: ``sector`` is declared, L1 has none: the step is sent at once."""
    runtime = runtime_with(
        engine,
        make_settings,
        tmp_path,
        "Sector: {{ lead.attributes.sector }}, {{ lead.attributes.sector or 'your field' }}\n",
    )
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    assert run_nurture_steps(runtime, rule_set, T0) == 1
    assert subjects_and_bodies(engine) == [("Hello Lead One", "Sector: , your field")]
    assert enrollment(engine) == ("completed", 1, None, 0, None, None)
    assert [action for _, action, _ in audit(engine)] == ["nurture_step", "nurture_completed"]


FAILING = "{{ lead.attributes.industry.title() }}\n"
"""Renders for a lead with an industry; for one without, None has no ``title``."""


def test_a_failing_step_is_kept_audited_once_retried_later_and_recovers(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    runtime = runtime_with(engine, make_settings, tmp_path, FAILING)
    folder = runtime.settings.path(runtime.settings.paths.templates)
    error = (
        f"{folder / 'hello.txt'}:1: undefined variable: 'None' has no attribute 'title' "
        "(see docs/email.md for the context)"
    )
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    assert run_nurture_steps(runtime, rule_set, T0) == 0
    assert enrollment(engine) == ("active", 0, T0 + MINUTE, 1, error, T0)
    # Not due again before its retry: nothing is rendered, nothing written.
    assert run_nurture_steps(runtime, rule_set, T0 + 30 * timedelta(seconds=1)) == 0
    assert enrollment(engine) == ("active", 0, T0 + MINUTE, 1, error, T0)
    # The second attempt fails alike: it waits twice as long; the audit is not told again.
    at = T0 + MINUTE
    assert run_nurture_steps(runtime, rule_set, at) == 0
    assert enrollment(engine) == ("active", 0, at + 2 * MINUTE, 2, error, at)
    failed = {
        "stream": "welcome",
        "step": 1,
        "template": "hello",
        "error": error,
        "retry_in": "1m",
    }
    assert audit(engine) == [(T0, "nurture_step_failed", failed)]

    status = collect_status(engine)
    assert status.failing_nurture == [FailingNurtureStep("welcome", 1, 1, error, at)]
    rules = rules_view(runtime, status)
    shown = failing_with_templates(status, rules)
    assert shown == [FailingNurtureStep("welcome", 1, 1, error, at, "hello")]
    assert status_document(status, rules)["nurture"] == {
        "failing_steps": [
            {
                "stream": "welcome",
                "step": 1,
                "enrollments": 1,
                "last_error": error,
                "last_failed_at": at,
                "template": "hello",
            }
        ]
    }
    console = Console(width=400, record=True)
    render_failing_nurture(shown, console)
    assert console.export_text().splitlines() == [
        "nurture step failing: welcome step 1 (template hello) for 1 enrollment(s); "
        f"last error at 2026-03-02 09:01 UTC: {error}"
    ]

    # The lead gets an industry: the next attempt sends the step and the failure is over.
    with engine.begin() as connection:
        connection.execute(update(LEADS).values(attributes={"industry": "software"}))
    at += 2 * MINUTE
    assert run_nurture_steps(runtime, rule_set, at) == 1
    assert subjects_and_bodies(engine) == [("Hello Lead One", "Software")]
    assert enrollment(engine) == ("completed", 1, None, 0, None, None)
    assert collect_status(engine).failing_nurture == []
    assert [action for _, action, _ in audit(engine)][1:] == ["nurture_step", "nurture_completed"]


def test_a_new_error_is_audited_again(engine: Engine, make_settings: Any, tmp_path: Path) -> None:
    """One audit row per distinct error of an enrollment: a changed template's new mistake
    is told, the same mistake at every attempt is not."""
    runtime = runtime_with(engine, make_settings, tmp_path, FAILING)
    rule_set = runtime.load_rules()
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    with engine.begin() as connection:  # another value that cannot be rendered
        connection.execute(update(LEADS).values(attributes={"industry": 7}))
    run_nurture_steps(runtime, rule_set, T0 + MINUTE)
    run_nurture_steps(runtime, rule_set, T0 + 3 * MINUTE)
    failures = [params for _, action, params in audit(engine) if action == "nurture_step_failed"]
    assert [(params["error"].split(": ", 1)[1], params["retry_in"]) for params in failures] == [
        (
            "undefined variable: 'None' has no attribute 'title' "
            "(see docs/email.md for the context)",
            "1m",
        ),
        (
            "undefined variable: 'int object' has no attribute 'title' "
            "(see docs/email.md for the context)",
            "2m",
        ),
    ]
    assert enrollment(engine)[3] == 3


def test_retries_wait_longer_each_time_and_at_most_an_hour() -> None:
    assert [retry_delay(failures) for failures in range(1, 10)] == [
        timedelta(minutes=minutes) for minutes in (1, 2, 4, 8, 16, 32, 60, 60, 60)
    ]
    assert retry_delay(10_000) == timedelta(hours=1)


def test_the_daemons_stop_summary_counts_failing_nurture_steps(
    engine: Engine, make_settings: Any, tmp_path: Path
) -> None:
    """``daemon_stopped`` says which nurture steps were failing, as ``rule_failures`` says
    which rules: a failing step is kept on its enrollments, so the summary read nothing of it."""
    from leadflow.service.daemon import Daemon

    runtime = runtime_with(engine, make_settings, tmp_path, FAILING)
    rule_set = runtime.load_rules()
    daemon = Daemon(runtime)
    assert daemon._summary()["nurture_failures"] == {}
    run_due_rules(runtime, rule_set, T0)
    run_nurture_steps(runtime, rule_set, T0)
    assert daemon._summary() == {
        "evaluations": 0,
        "rule_failures": {},
        "nurture_failures": {"welcome step 1": 1},
        "funnel_ticks": 0,
        "retention_runs": 0,
    }


def test_failing_steps_are_read_in_one_query(engine: Engine) -> None:
    """Every failing (stream, step) group, how many active enrollments fail at it and the
    newest of their errors (the higher id when two failed at once), read in one statement
    however many groups there are (it was one more query per group); enrollments not failing,
    or no longer active, are left out."""
    old = T0 - timedelta(days=3)
    lead = {"stage": "lead", "stage_entered_at": old, "created_at": old, "updated_at": old}
    lead["attributes"] = {}
    leads = [{**lead, "id": n, "external_id": f"L{n}", "score": 0} for n in range(1, 9)]
    failed = {"status": "active", "enrolled_at": old, "rule_id": "nurture-new"}
    enrollments = [  # (lead, stream, next step (0-based), failures, error, failed minutes ago)
        (1, "welcome", 0, 3, "old error", 30),
        (2, "welcome", 0, 2, "same time, lower id", 5),
        (3, "welcome", 0, 1, "newest error", 5),
        (4, "welcome", 1, 1, "second step", 60),
        (5, "onboarding", 2, 4, "onboarding error", 10),
        (6, "welcome", 0, 0, None, None),  # sending fine
        (7, "onboarding", 2, 0, None, None),
    ]
    with engine.begin() as connection:
        connection.execute(insert(LEADS), leads)
        connection.execute(
            insert(NURTURE),
            [
                {
                    **failed,
                    "lead_id": lead_id,
                    "stream": stream,
                    "next_step": step,
                    "failures": failures,
                    "last_error": error,
                    "last_failed_at": None if ago is None else T0 - ago * MINUTE,
                }
                for lead_id, stream, step, failures, error, ago in enrollments
            ],
        )
        connection.execute(  # failed, then exited: not failing any more
            insert(NURTURE).values(
                **{**failed, "status": "exited"},
                lead_id=8,
                stream="welcome",
                next_step=0,
                failures=9,
                last_error="exited since",
                last_failed_at=T0,
            )
        )
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", count)
        found = failing_nurture_steps(connection)
    assert found == [
        FailingNurtureStep("onboarding", 3, 1, "onboarding error", T0 - 10 * MINUTE),
        FailingNurtureStep("welcome", 1, 3, "newest error", T0 - 5 * MINUTE),
        FailingNurtureStep("welcome", 2, 1, "second step", T0 - 60 * MINUTE),
    ]
    # SQLite's store also sends its own BEGIN through the cursor: only queries count.
    assert len([sql for sql in statements if sql.startswith("SELECT")]) == 1
