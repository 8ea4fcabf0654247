"""Issue #11, item 21: MQLs moved in from a CRM keep the SLA clock they had there.

A leads import (CSV/JSONL, ``POST /v1/leads``) may carry ``stage_entered_at``; a rule's
``start_sla: {from: stage_entered_at}`` counts from it, so an MQL that entered ``mql`` five
business hours ago with a 4h SLA is breached at once and escalates on the next tick. On real
SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla import run_sla_escalations
from leadflow.engine.tick import run_due_rules
from leadflow.ingest import import_file
from leadflow.rule_language.json_schema import rule_file_schema
from leadflow.rule_language.loader import check_rule_set
from leadflow.store.tables import LEADS, OUTBOX
from tests.http_support import Api, build_app, http_settings, runtime_for
from tests.test_audit_record import audit_params
from tests.test_funnel_scenario import REPO, T0

MIGRATION_RULES = """\
rules:
  - id: migrated-mql-sla
    description: MQLs moved in from the CRM keep the SLA clock they had there.
    every: 5m
    when:
      all:
        - {field: stage, equals: mql}
        - {field: owner_id, is_set: true}
    actions:
      - notify: {to: owner, template: mql_assigned}
      - start_sla:
          name: first_touch
          within: 4h
          from: stage_entered_at
          met_by: {activities: [call]}
          escalate:
            - {after: 0h, notify: owner, template: sla_reminder}
            - {after: 2h, notify: manager, template: sla_escalated}
"""
# Friday 27 Feb 12:00 UTC is 5 business hours (09-17) before Monday 2 Mar 09:00.
ENTERED = datetime(2026, 2, 27, 12, 0, tzinfo=UTC)


class TestImportedMqlKeepsItsClock:
    """Item 21: an imported MQL that entered mql 5 business hours ago, 4h SLA: breached at once."""

    @pytest.fixture
    def migrating(self, engine: Engine, make_settings: Any, tmp_path: Path) -> Runtime:
        rules = tmp_path / "rules"
        rules.mkdir()
        (rules / "migration.yaml").write_text(MIGRATION_RULES, encoding="utf-8")
        settings = make_settings(
            **{
                "paths.rules": str(rules),
                "paths.templates": str(REPO / "templates"),
                "calendar.timezone": "UTC",
                "attributes.leads": {"region": "string"},
            }
        )
        return Runtime.build(engine, settings, SettableClock(T0))

    def test_the_imported_mql_escalates_on_the_next_tick(
        self, migrating: Runtime, tmp_path: Path
    ) -> None:
        engine = migrating.engine
        reps = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email,manager\n"
            "m1,Mona Manager,mona@example.com,\n"
            "r1,Rita Rep,rita@example.com,m1\n"
            "r2,Raj Rep,raj@example.com,m1\n",
        )
        import_file(engine, migrating.settings, "reps", reps, clock=SettableClock(T0))
        path = write(
            tmp_path,
            "crm.csv",
            "external_id,email,name,score,stage,owner,stage_entered_at\n"
            "L9,zoe@zeta.test,Zoe Kim,80,mql,r1,2026-02-27T12:00:00Z\n"
            "L10,yan@eta.test,Yan Li,80,mql,r2,2026-03-03T09:00:00Z\n",
        )
        report = import_file(engine, migrating.settings, "leads", path, clock=SettableClock(T0))
        assert [str(problem) for problem in report.problems] == [
            f"{path}:3: stage_entered_at: 2026-03-03T09:00:00+00:00 is in the future (the "
            "import runs at 2026-03-02T09:00:00+00:00); a lead cannot have entered its stage yet"
        ]
        assert rows(engine, "leads", "external_id", "stage", "stage_entered_at") == [
            ("L9", "mql", ENTERED)
        ]
        rule_set = migrating.load_rules()
        run_due_rules(migrating, rule_set, T0)
        started = audit_params(engine, "sla_started")
        assert started == [
            {
                "sla": "first_touch",
                "due_at": "2026-02-27T16:00:00+00:00",
                "calendar": "default",
                "within": "4h",
                "started_at": "2026-02-27T12:00:00+00:00",
            }
        ]
        run_sla_escalations(migrating, rule_set, T0)
        assert audit_params(engine, "sla_escalated") == [
            {
                "sla": "first_touch",
                "level": 1,
                "due_at": "2026-02-27T16:00:00+00:00",
                "fired_at": "2026-03-02T09:00:00+00:00",
                "notify": "owner",
                "to": "rita@example.com",
                "reassign": False,
            }
        ]
        with engine.connect() as connection:
            emails = connection.execute(
                select(OUTBOX.c.recipient, OUTBOX.c.subject).order_by(OUTBOX.c.id)
            ).all()
        assert [tuple(email) for email in emails] == [
            ("rita@example.com", "New MQL: Zoe Kim (score 80)"),
            ("rita@example.com", "Reminder: Zoe Kim is waiting for your follow-up"),
        ]

    def test_without_the_column_the_stage_time_is_the_import_time(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        """The default stays: an empty cell, or no column, is "entered its stage now"."""
        settings = make_settings()
        path = write(
            tmp_path,
            "crm.csv",
            "external_id,stage,stage_entered_at\nL1,mql,\nL2,mql,2026-02-27T12:00:00Z\n",
        )
        import_file(engine, settings, "leads", path, clock=SettableClock(T0))
        later = T0 + timedelta(days=1)
        again = write(tmp_path, "again.csv", "external_id,stage,stage_entered_at\nL1,mql,\n")
        import_file(engine, settings, "leads", again, clock=SettableClock(later))
        assert rows(engine, "leads", "external_id", "stage_entered_at") == [
            ("L1", T0),
            ("L2", ENTERED),
        ]
        with engine.connect() as connection:
            assert connection.execute(
                select(LEADS.c.stage).order_by(LEADS.c.id)
            ).scalars().all() == [
                "mql",
                "mql",
            ]


class TestPostedStageTime:
    """``POST /v1/leads`` takes ``stage_entered_at`` as the import does, future refused (422)."""

    @pytest.fixture
    def api(self, engine: Engine, make_settings: Any, clock: SettableClock) -> Api:
        runtime = runtime_for(engine, http_settings(make_settings), clock)
        app, _holder = build_app(runtime)
        return Api(app)

    def test_posted_stage_time_is_kept_and_the_future_refused(
        self, api: Api, engine: Engine
    ) -> None:
        future = api.post(
            "/v1/leads",
            [{"external_id": "L2", "stage": "mql", "stage_entered_at": "2026-03-03T09:00:00Z"}],
        )
        assert future.status_code == 422
        assert future.json()["detail"] == [
            {
                "loc": ["body", 0, "stage_entered_at"],
                "msg": "2026-03-03T09:00:00+00:00 is in the future (the import runs at "
                "2026-03-02T09:00:00+00:00); a lead cannot have entered its stage yet",
                "type": "value_error",
            }
        ]
        posted = api.post(
            "/v1/leads",
            {"external_id": "L1", "stage": "mql", "stage_entered_at": "2026-02-27T12:00:00Z"},
        )
        assert posted.status_code == 200
        assert rows(engine, "leads", "external_id", "stage", "stage_entered_at") == [
            ("L1", "mql", ENTERED)
        ]


class TestTheRuleOption:
    """``from:`` is in the rule language: checked with its location, offered by the schema."""

    def test_a_wrong_from_is_located_and_the_schema_offers_it(
        self, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = make_settings()
        rules = tmp_path / "rules"  # beside make_settings' config.yaml, not with it
        rules.mkdir()
        write(
            rules,
            "r.yaml",
            "rules:\n  - id: m\n    when: {field: stage, equals: mql}\n    actions:\n"
            "      - start_sla: {name: s, within: 4h, from: yesterday}\n",
        )
        _rule_set, problems = check_rule_set(rules, settings)
        assert [str(problem) for problem in problems] == [
            f"{rules}/r.yaml:5:48: rule m: start_sla: from: expected 'now' or 'stage_entered_at'"
        ]
        schema = rule_file_schema(settings)["$defs"]["start_sla"]["properties"]["from"]
        assert schema == {
            "enum": ["now", "stage_entered_at"],
            "default": "now",
            "description": "when the clock starts: the firing, or when the lead entered its stage",
        }
