"""Issue #11, items 18 and 19: the rep's email names the SLA deadline, ``check`` knows what
each action's template may use, and the audit reads as a person's record.

Each test runs the engine (or the import, or the CLI) on real SQLite and PostgreSQL and asserts
the exact rows, emails and values. Item 21 (MQLs moved in from a CRM) is in test_crm_migration.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from mail_support import write_templates
from sqlalchemy import Engine, insert, select, update

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.engine.audit_history import lead_with_audit
from leadflow.engine.firing import describe_action
from leadflow.engine.runtime import Runtime
from leadflow.engine.sla import run_sla_escalations
from leadflow.engine.tick import run_due_rules
from leadflow.errors import UserInputError
from leadflow.ingest import import_file
from leadflow.mail.context import sample_context
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.actions import StartSla
from leadflow.rule_language.loader import check_rule_set
from leadflow.store.status import collect_status
from leadflow.store.tables import AUDIT, DEALS, OUTBOX, REPS
from tests import test_funnel_scenario
from tests.test_funnel_scenario import REPO, T0, open_gtx_deal, seed, won_gtx_deals
from tests.test_run_command import config

runtime = test_funnel_scenario.runtime
"""The funnel fixture rules and the shipped templates, business hours 09-17 UTC."""


def audit_params(engine: Engine, action: str) -> list[dict[str, Any]]:
    """The params of every audit row of ``action``, in order, without the rule digest."""
    with engine.connect() as connection:
        found = connection.execute(
            select(AUDIT.c.params).where(AUDIT.c.action == action).order_by(AUDIT.c.id)
        ).scalars()
        return [{k: v for k, v in params.items() if k != "rule_digest"} for params in found]


class TestMqlEmailStatesTheSla:
    """Item 18: the notify of a rule that starts an SLA tells the rep its due time."""

    def test_the_reps_email_states_the_due_time_in_her_time_zone(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        with runtime.engine.begin() as connection:
            connection.execute(update(REPS).where(REPS.c.id == 2).values(timezone="Europe/Berlin"))
        run_due_rules(runtime, runtime.load_rules(), T0)
        with runtime.engine.connect() as connection:
            text, html = connection.execute(
                select(OUTBOX.c.body_text, OUTBOX.c.body_html).where(
                    OUTBOX.c.recipient == "rita@example.com"
                )
            ).one()
        # Due 13:00 UTC (4 business hours after 09:00) is 14:00 in Berlin.
        assert (
            "Please get in touch by Mon 02 Mar 14:00 CET (the first_touch SLA, in your time zone).\n"
            in text
        )
        assert (
            "Please get in touch by <strong>Mon 02 Mar 14:00 CET</strong> "
            "(the first_touch SLA, in your time zone).</p>" in html
        )

    def test_the_recycled_deal_email_keeps_its_words_apart(self, make_settings: Any) -> None:
        """A deal without an account: ``</strong> has been``, not ``</strong>has been``."""
        settings = make_settings()
        catalog = TemplateCatalog(REPO / "templates", settings)
        context = sample_context(settings)
        context["deal"] = {**context["deal"], "account": None}
        html = catalog.render("deal_recycled", context).html
        assert html is not None
        assert (
            "<p>The deal <strong>D-503</strong> has been taken out of the pipeline and put back "
            "into nurture.</p>" in html
        )


CHECKED_RULES = """\
rules:
  - id: no-sla
    when: {field: score, at_least: 60}
    actions:
      - notify: {to: owner, template: with_sla}
  - id: with-sla
    when: {field: score, at_least: 60}
    actions:
      - notify: {to: owner, template: with_sla}
      - notify: {to: owner, template: guarded}
      - start_sla: {name: first_touch, within: 4h}
  - id: lead-rule
    when: {field: score, at_least: 60}
    actions:
      - notify: {to: owner, template: with_deal}
      - notify: {to: owner, template: guarded}
"""


class TestCheckKnowsTheContext:
    """Item 18: a template reading a key its action leaves empty fails ``check``, located."""

    @pytest.fixture
    def project(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        monkeypatch.chdir(tmp_path)
        (tmp_path / "config.yaml").write_text("paths:\n  rules: rules\n", encoding="utf-8")
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "r.yaml").write_text(CHECKED_RULES, encoding="utf-8")
        write_templates(
            tmp_path / "templates",
            {
                "with_sla.subject.txt": "Lead {{ lead.name }}\n",
                "with_sla.txt": "Hi,\nplease call by {{ sla.due_at | localtime(rep.timezone) }}.\n",
                "with_deal.subject.txt": "Deal {{ deal.external_id }}\n",
                "with_deal.txt": "Hi\n",
                "guarded.subject.txt": "Lead {{ lead.name }}\n",
                "guarded.txt": "{% if sla %}by {{ sla.due_at }}{% endif %}{% if deal %}{{ deal.account }}{% endif %}\n",
            },
        )
        return tmp_path

    def test_unavailable_keys_are_reported_with_why(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--config", "config.yaml", "check"]) == 1
        templates = project / "templates"
        assert capsys.readouterr().out.splitlines() == [
            f"rules/r.yaml:5:17: rule no-sla: template 'with_sla': {templates}/with_sla.txt:2: "
            "uses 'sla', which is not available here: the rule has no start_sla",
            "rules/r.yaml:15:17: rule lead-rule: template 'with_deal': "
            f"{templates}/with_deal.subject.txt:1: uses 'deal', which is not available here: "
            "a lead rule's email has no deal",
            "2 problems",
        ]

    def test_the_daemon_refuses_the_same_set(self, project: Path, make_settings: Any) -> None:
        """The rule set the daemon loads is checked the same way (``{% if sla %}`` passes)."""
        settings = make_settings()
        catalog = TemplateCatalog(project / "templates", settings)
        _rule_set, problems = check_rule_set(
            project / "rules",
            settings,
            check_template=catalog.check,
            check_context=catalog.check_context,
        )
        assert [(p.line, p.column, p.message.split(":")[0]) for p in problems] == [
            (5, 17, "rule no-sla"),
            (15, 17, "rule lead-rule"),
        ]


class TestAuditReadsAsARecord:
    """Item 19: durations as people write them, lateness visible, averages exact, deliveries."""

    def test_sla_started_says_within_4h(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        run_due_rules(runtime, runtime.load_rules(), T0)
        assert audit_params(runtime.engine, "sla_started") == [
            {
                "sla": "first_touch",
                "due_at": "2026-03-02T13:00:00+00:00",
                "calendar": "default",
                "within": "4h",
            },
            {
                "sla": "first_touch",
                "due_at": "2026-03-02T13:00:00+00:00",
                "calendar": "default",
                "within": "4h",
            },
        ]

    def test_an_escalation_after_an_outage_shows_when_it_was_due(self, runtime: Runtime) -> None:
        """Nothing ran from 12:00 to 16:00: level 1 was due at 13:00 and fired at 16:00."""
        seed(runtime.engine)
        rule_set = runtime.load_rules()
        run_due_rules(runtime, rule_set, T0)
        run_sla_escalations(runtime, rule_set, T0.replace(hour=16))
        escalations = audit_params(runtime.engine, "sla_escalated")
        assert escalations[:2] == [
            {
                "sla": "first_touch",
                "level": 1,
                "due_at": "2026-03-02T13:00:00+00:00",
                "fired_at": "2026-03-02T16:00:00+00:00",
                "notify": "owner",
                "to": "rita@example.com",
                "reassign": False,
            },
            {
                "sla": "first_touch",
                "level": 1,
                "due_at": "2026-03-02T13:00:00+00:00",
                "fired_at": "2026-03-02T16:00:00+00:00",
                "notify": "owner",
                "to": "raj@example.com",
                "reassign": False,
            },
        ]

    def test_the_average_cycle_is_kept_at_full_precision(self, runtime: Runtime) -> None:
        """Cycles of 10 days and 10 days 1 hour: the average is 10 + 1/48 days, not 10.02."""
        seed(runtime.engine)
        deals = won_gtx_deals()
        for index, deal in enumerate(deals):
            if index % 2:
                deal["engaged_at"] -= timedelta(hours=1)
        deals.append(
            open_gtx_deal(external_id="D-idle", lead_id=1, last_activity_at=T0 - timedelta(days=21))
        )
        with runtime.engine.begin() as connection:
            connection.execute(insert(DEALS), deals)
        run_due_rules(runtime, runtime.load_rules(), T0, only=["recycle-idle-deals"])
        with runtime.engine.connect() as connection:
            (evidence,) = connection.execute(
                select(AUDIT.c.evidence).where(AUDIT.c.action == "deal_recycled")
            ).scalars()
        average = 10 + 1 / 48
        assert evidence["average_cycle_days"] == pytest.approx(average, abs=1e-9)
        assert evidence["average_cycle_days"] != round(average, 2)
        assert evidence["idle_threshold_days"] == pytest.approx(2 * average, abs=1e-9)
        assert evidence["idle_days"] == 21.0

    def test_the_lead_view_shows_its_emails_delivery(self, runtime: Runtime) -> None:
        seed(runtime.engine)
        run_due_rules(runtime, runtime.load_rules(), T0)
        sent_at = T0 + timedelta(minutes=1)
        with runtime.engine.begin() as connection:
            connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.recipient == "rita@example.com")
                .values(status="sent", sent_at=sent_at, attempts=2, last_error="421 try later")
            )
        view = lead_with_audit(runtime.engine, "L1", 50)
        assert view is not None
        assert [
            {k: v for k, v in email.items() if k not in {"outbox_id", "subject"}}
            for email in view["emails"]
        ] == [
            {
                "rule_id": "mql-assignment",
                "to": "rita@example.com",
                "category": "operational",
                "status": "sent",
                "status_reason": None,
                "queued_at": "2026-03-02T09:00:00+00:00",
                "sent_at": "2026-03-02T09:01:00+00:00",
                "attempts": 2,
                "last_error": "421 try later",
            }
        ]
        assert view["emails"][0]["subject"] == "New MQL: Ann Lee (score 70)"

    def test_audit_lead_jsonl_has_the_email_status(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
        capsys.readouterr()
        assert main([*args, "audit", "--lead", "L1", "--format", "jsonl"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [(row["action"], row.get("email_status")) for row in lines] == [
            ("stage_changed", None),
            ("assigned", None),
            (
                "email_queued",
                {"status": "pending", "sent_at": None, "attempts": 0, "last_error": None},
            ),
            ("sla_started", None),
        ]
        assert lines[3]["params"]["within"] == "4h"

    def test_a_refused_import_is_the_last_import(
        self, engine: Engine, make_settings: Any, tmp_path: Path
    ) -> None:
        settings = make_settings()
        good = write(tmp_path, "good.csv", "external_id,name\nL1,Ada\n")
        import_file(engine, settings, "leads", good, clock=SettableClock(T0))
        bad = write(tmp_path, "bad.csv", "external_id,shoe_size\nL2,44\n")
        later = SettableClock(T0 + timedelta(hours=1))
        with pytest.raises(UserInputError):
            import_file(engine, settings, "leads", bad, clock=later)
        assert rows(engine, "import_runs", "file", "status", "inserted") == [
            (str(good), "done", 1),
            (str(bad), "refused", 0),
        ]
        assert rows(engine, "leads", "external_id") == [("L1",)]
        last = collect_status(engine).last_imports["leads"]
        assert (last.file, last.status, last.finished_at) == (
            str(bad),
            "refused",
            T0 + timedelta(hours=1),
        )

    def test_audit_table_shows_the_email_status(
        self,
        engine: Engine,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("COLUMNS", "400")  # one table row per line
        seed(engine)
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
        with engine.begin() as connection:
            connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.recipient == "rita@example.com")
                .values(status="sent", sent_at=T0 + timedelta(minutes=1), attempts=1)
            )
        capsys.readouterr()
        assert main([*args, "audit", "--lead", "L1"]) == 0
        out = capsys.readouterr().out
        assert "email_status=sent 2026-03-02T09:01:00+00:00, 1 attempt" in out

    def test_a_nurture_steps_row_shows_what_became_of_its_email(
        self,
        engine: Engine,
        store_url: str,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The ``nurture_step`` row said ``email=pending`` for good, the email long sent: it
        names its outbox id, as an ``email_queued`` row does, and both views of the audit show
        the outbox's word beside it."""
        monkeypatch.setenv("COLUMNS", "400")  # one table row per line
        seed(engine)
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
        with engine.begin() as connection:
            (outbox_id,) = connection.execute(
                select(OUTBOX.c.id).where(OUTBOX.c.category == "marketing")
            ).scalars()
            connection.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == outbox_id)
                .values(status="sent", sent_at=T0 + timedelta(minutes=1), attempts=1)
            )
        capsys.readouterr()
        assert main([*args, "audit", "--lead", "L2", "--format", "jsonl"]) == 0
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        steps = [line for line in lines if line["action"] == "nurture_step"]
        assert [(step["params"], step["email_status"]) for step in steps] == [
            (
                {
                    "stream": "welcome",
                    "step": 1,
                    "template": "nurture_welcome",
                    "email": "pending",
                    "outbox_id": outbox_id,
                },
                {
                    "status": "sent",
                    "sent_at": "2026-03-02T09:01:00+00:00",
                    "attempts": 1,
                    "last_error": None,
                },
            )
        ]
        assert main([*args, "audit", "--lead", "L2"]) == 0
        (row,) = [line for line in capsys.readouterr().out.splitlines() if "nurture_step" in line]
        # The parameters in the store's order (PostgreSQL's jsonb sorts keys by length).
        parameters = row.split("nurture_step  ")[1].rstrip()
        assert parameters.endswith(
            f"outbox_id={outbox_id}, email_status=sent 2026-03-02T09:01:00+00:00, 1 attempt"
        )
        assert sorted(parameters.split(", ")[:4]) == [
            "email=pending",
            "step=1",
            "stream=welcome",
            "template=nurture_welcome",
        ]


def test_a_planned_action_reads_as_the_rule_file_wrote_it() -> None:
    """The dry run's and ``plan``'s action lines: ``within=4h``, not ``timedelta(seconds=...)``."""
    action = StartSla.model_validate(
        {
            "name": "first_touch",
            "within": "4h",
            "from": "stage_entered_at",
            "escalate": [{"after": "1d12h", "notify": "manager", "template": "sla_escalated"}],
        }
    )
    assert describe_action(action) == (
        "start_sla(name=first_touch, within=4h, escalate=[{'after': '1d12h', 'notify': "
        "'manager', 'template': 'sla_escalated'}], from=stage_entered_at)"
    )
