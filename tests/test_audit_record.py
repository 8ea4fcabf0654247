"""Issue #11, items 18 and 19: the rep's email names the SLA deadline, ``check`` knows what
each action's template may use, and the audit reads as a person's record.

Each test runs the engine (or the import, or the CLI) on real SQLite and PostgreSQL and asserts
the exact rows, emails and values. Item 21 (MQLs moved in from a CRM) is in test_crm_migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.mail.context import sample_context
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language.loader import check_rule_set
from leadflow.store.tables import AUDIT, OUTBOX, REPS
from tests.test_funnel_scenario import REPO, T0, seed


@pytest.fixture
def runtime(engine: Engine, make_settings: Any) -> Runtime:
    """The funnel fixture rules and the shipped templates, business hours 09-17 UTC."""
    settings = make_settings(
        **{
            "paths.rules": str(REPO / "tests" / "fixtures" / "funnel_rules"),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
            "attributes.leads": {"region": "string"},
        }
    )
    return Runtime.build(engine, settings, SettableClock(T0))


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
        templates = tmp_path / "templates"
        templates.mkdir()
        parts = {
            "with_sla.subject.txt": "Lead {{ lead.name }}\n",
            "with_sla.txt": "Hi,\nplease call by {{ sla.due_at | localtime(rep.timezone) }}.\n",
            "with_deal.subject.txt": "Deal {{ deal.external_id }}\n",
            "with_deal.txt": "Hi\n",
            "guarded.subject.txt": "Lead {{ lead.name }}\n",
            "guarded.txt": "{% if sla %}by {{ sla.due_at }}{% endif %}{% if deal %}{{ deal.account }}{% endif %}\n",
        }
        for name, text in parts.items():
            (templates / name).write_text(text, encoding="utf-8")
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
