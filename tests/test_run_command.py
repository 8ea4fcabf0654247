"""``leadflow run --once`` and ``leadflow send --once`` as a user runs them: output and exit codes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, insert, select, update

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.engine.evaluation import PlannedFiring, RuleOutcome
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import AUDIT, DEALS, LEADS, OUTBOX, STORE_SECRETS
from tests.mail_support import free_port
from tests.test_funnel_scenario import REPO, seed


def config(tmp_path: Path, store_url: str, extra: str = "", rules: Path | None = None) -> str:
    path = tmp_path / "config.yaml"
    rules = rules or REPO / "tests" / "fixtures" / "funnel_rules"
    path.write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{rules}', templates: '{REPO / 'templates'}'}}\n"
        "calendar: {timezone: UTC}\n"
        "attributes: {leads: {region: string}}\n"
        "log: {level: error}\n" + extra,
        encoding="utf-8",
    )
    return str(path)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as connection:
        audit = connection.execute(select(func.count()).select_from(AUDIT)).scalar_one()
        outbox = connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one()
    return int(audit), int(outbox)


class TestRunOnce:
    """A dry run prints the plan and why; a real run applies it once; the future is refused."""

    def test_dry_run_plans_and_writes_nothing(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        code = main(
            [
                "-c",
                config(tmp_path, store_url),
                "run",
                "--once",
                "--now",
                "2026-03-02T09:00:00Z",
                "--dry-run",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0
        planned = sorted(
            line.split(":")[0]
            for line in out.splitlines()
            if line.startswith(("mql-assignment lead", "nurture-new-leads lead"))
        )
        assert planned == [
            "mql-assignment lead L1",
            "mql-assignment lead L3",
            "mql-assignment lead L4",
            "nurture-new-leads lead L2",
        ]
        assert 'because {"score": 70, "stage": "lead", "owner_id": null}' in out
        assert counts(engine) == (0, 0)

    def test_a_past_now_leaves_out_leads_that_entered_their_stage_after_it(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Evaluated as of a past instant, a lead imported or moved into its stage since then
        is not planned (its ages would be negative): L3 entered `lead` on 2026-03-01 12:00,
        so a dry run as of 2026-03-01 09:00 plans L1 and L4 only; L2 (entered earlier) is
        still enrolled in nurture."""
        seed(engine)
        with engine.begin() as connection:
            connection.execute(
                update(LEADS)
                .where(LEADS.c.external_id == "L3")
                .values(stage_entered_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
            )

        def planned(now: str) -> list[str]:
            capsys.readouterr()
            args = ["-c", config(tmp_path, store_url), "run", "--once", "--dry-run", "--all"]
            assert main([*args, "--now", now]) == 0
            return sorted(
                line.split(":")[0]
                for line in capsys.readouterr().out.splitlines()
                if line.startswith(("mql-assignment lead", "nurture-new-leads lead"))
            )

        assert planned("2026-03-01T09:00:00Z") == [
            "mql-assignment lead L1",
            "mql-assignment lead L4",
            "nurture-new-leads lead L2",
        ]
        assert planned("2026-03-01T12:00:00Z") == [
            "mql-assignment lead L1",
            "mql-assignment lead L3",
            "mql-assignment lead L4",
            "nurture-new-leads lead L2",
        ]

    def test_applied_once_then_nothing_more_at_the_same_instant(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        args = [
            "-c",
            config(tmp_path, store_url),
            "run",
            "--once",
            "--now",
            "2026-03-02T09:00:00Z",
            "--all",
        ]
        assert main(args) == 0
        first = counts(engine)
        assert main(args) == 0
        assert counts(engine) == first
        with engine.connect() as connection:
            stages = dict(connection.execute(select(LEADS.c.external_id, LEADS.c.stage)).all())
        assert stages == {"L1": "mql", "L2": "lead", "L3": "mql", "L4": "mql", "L5": "customer"}
        capsys.readouterr()

    def test_a_future_now_needs_dry_run(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(
            ["-c", config(tmp_path, store_url), "run", "--once", "--now", "2099-01-01T00:00:00Z"]
        )
        assert code == 1
        assert (
            capsys.readouterr().err
            == "error: --now 2099-01-01T00:00:00Z is in the future: add --dry-run, or try it with leadflow simulate\n"
        )

    def test_a_now_near_the_calendars_first_day_is_refused(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Year 1 wrote MQLs dated year 1 while every other rule failed on its look-back."""
        argv = ["-c", config(tmp_path, store_url), "run", "--once"]
        assert main([*argv, "--now", "0001-01-01T00:00:00Z"]) == 1
        assert capsys.readouterr().err == (
            "error: --now 0001-01-01T00:00:00Z: give an instant from 1900-01-01 to 9000-01-01\n"
        )
        # SLA deadlines are computed ahead of now: on the calendar's last day they do not exist.
        assert main([*argv, "--dry-run", "--now", "9999-12-31T23:00:00Z"]) == 1
        assert capsys.readouterr().err == (
            "error: --now 9999-12-31T23:00:00Z: give an instant from 1900-01-01 to 9000-01-01\n"
        )
        with engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(AUDIT)).scalar() == 0


def test_send_once_exits_3_when_the_relay_is_down(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Queued mail the relay could not take: exit 3 (an external system failed), rows kept."""
    seed(engine)
    closed = free_port()  # nothing listens there
    extra = f"mail: {{transport: smtp, smtp: {{host: 127.0.0.1, port: {closed}, timeout: 2s}}}}\n"
    path = config(tmp_path, store_url, extra)
    assert main(["-c", path, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
    capsys.readouterr()
    code = main(["-c", path, "send", "--once"])
    out = capsys.readouterr().out
    assert code == 3
    assert out.startswith("sent 0, retry later 3, failed 0 (transport smtp)")
    with engine.connect() as connection:
        statuses = connection.execute(select(OUTBOX.c.status).order_by(OUTBOX.c.id)).scalars().all()
    assert statuses == ["pending", "pending", "pending"]


def test_rules_not_due_are_named(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten minutes after a run only the 5-minute rule is due; the others are named, not hidden."""
    seed(engine)
    path = config(tmp_path, store_url)
    assert main(["-c", path, "run", "--once", "--now", "2026-03-02T09:00:00Z"]) == 0
    capsys.readouterr()
    assert main(["-c", path, "run", "--once", "--now", "2026-03-02T09:10:00Z"]) == 0
    out = capsys.readouterr().out
    assert "1 rule(s) evaluated" in out
    assert (
        "not due yet as of 2026-03-02 09:10 UTC (their next scheduled time after the last run has not come): "
        "nurture-new-leads, recycle-idle-deals; --all evaluates them anyway"
    ) in out


def test_a_rule_with_no_average_cycle_says_why_it_matched_nothing(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No deal won in the recycling window: the run says so beside its 0 (and the log warns);
    one won deal in the window gives an average, and the note goes."""
    seed(engine)
    path = config(tmp_path, store_url)
    args = ["-c", path, "run", "--once", "--rule", "recycle-idle-deals", "--all"]
    assert main([*args, "--now", "2026-03-02T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert f"\nnote: recycle-idle-deals: {NO_CYCLE}\n" in out
    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            insert(DEALS).values(
                external_id="WON-1",
                stage="Won",
                outcome="won",
                engaged_at=datetime(2025, 12, 1, tzinfo=UTC),
                closed_at=datetime(2026, 1, 10, tzinfo=UTC),
                attributes={},
                created_at=now,
                updated_at=now,
            )
        )
    assert main([*args, "--now", "2026-03-02T10:00:00Z"]) == 0
    assert "note:" not in capsys.readouterr().out


def _without_seconds(rules: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{key: value for key, value in rule.items() if key != "seconds"} for rule in rules]


NO_CYCLE = (
    "no average sales cycle: no deal won with engaged_at and closed_at from 2025-03-02 to "
    "2026-03-02, so idle_beyond_average_cycle matches no deal"
)
"""The seeded store has open deals but none won: the recycling rule says why it matched 0."""

UNSTAFFED = (
    "pool 'central' has no reps; pool 'west' has no reps; pool 'inbound' has no reps; "
    "pools with reps: east (leads routed there wait unassigned)"
)
"""The seeded reps are all in ``east``: the assignment rule says where its MQLs would wait."""


def _outcome(
    rule_id: str, matched: int, fired: int, planned: int, note: str | None = None
) -> dict[str, object]:
    return {
        "rule_id": rule_id,
        "matched": matched,
        "fired": fired,
        "planned": planned,
        "failed": 0,
        "error": None,
        "interrupted": False,
        "note": note,
    }


class TestRunOnceJson:
    """``run --once --format json``: one document with stable keys; the plan of a dry run."""

    def test_dry_run_document(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        args = ["-c", config(tmp_path, store_url), "run", "--once", "--dry-run"]
        code = main([*args, "--now", "2026-03-02T09:00:00Z", "--format", "json"])
        document = json.loads(capsys.readouterr().out)
        assert code == 0
        assert list(document) == [
            "as_of",
            "dry_run",
            "rule_version",
            "rules",
            "plan",
            "funnel",
            "nurture_steps",
            "not_due",
        ]
        assert (
            document["as_of"],
            document["dry_run"],
            document["funnel"],
            document["nurture_steps"],
        ) == ("2026-03-02T09:00:00+00:00", True, None, None)
        assert document["not_due"] == []
        assert _without_seconds(document["rules"]) == [
            _outcome("mql-assignment", 3, 0, 3, UNSTAFFED),
            _outcome("nurture-new-leads", 1, 0, 1),
            _outcome("recycle-idle-deals", 0, 0, 0, NO_CYCLE),
        ]
        plan = sorted(document["plan"], key=lambda planned: planned["external_id"])
        assert [(p["rule_id"], p["subject"], p["external_id"]) for p in plan] == [
            ("mql-assignment", "lead", "L1"),
            ("nurture-new-leads", "lead", "L2"),
            ("mql-assignment", "lead", "L3"),
            ("mql-assignment", "lead", "L4"),
        ]
        assert plan[0]["evidence"] == {"score": 70, "stage": "lead", "owner_id": None}
        assert plan[1]["actions"] == ["enroll(stream=welcome)"]
        assert counts(engine) == (0, 0)
        with engine.connect() as connection:  # not even the unsubscribe key is stored
            assert connection.execute(select(func.count()).select_from(STORE_SECRETS)).scalar() == 0

    def test_applied_run_document(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        args = ["-c", config(tmp_path, store_url), "run", "--once", "--format", "json"]
        assert main([*args, "--now", "2026-03-02T09:00:00Z"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert (
            document["dry_run"],
            document["plan"],
            document["funnel"],
            document["nurture_steps"],
        ) == (
            False,
            [],
            {"sla": 0, "nurture": 1},
            {"steps": 1, "emails_queued": 1, "skipped": {}},
        )
        assert _without_seconds(document["rules"]) == [
            _outcome("mql-assignment", 3, 3, 0, UNSTAFFED),
            _outcome("nurture-new-leads", 1, 1, 0),
            _outcome("recycle-idle-deals", 0, 0, 0, NO_CYCLE),
        ]
        assert main([*args, "--now", "2026-03-02T09:10:00Z"]) == 0
        later = json.loads(capsys.readouterr().out)
        assert [rule["rule_id"] for rule in later["rules"]] == ["mql-assignment"]
        assert later["not_due"] == ["nurture-new-leads", "recycle-idle-deals"]


def test_crm_text_in_the_plan_is_never_markup(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lead whose external id is ``[/bold]x`` is printed as it is, not read as markup."""
    seed(engine)
    with engine.begin() as connection:
        connection.execute(
            update(LEADS).where(LEADS.c.external_id == "L1").values(external_id="[/bold]x")
        )
    args = ["-c", config(tmp_path, store_url), "run", "--once", "--dry-run"]
    assert main([*args, "--now", "2026-03-02T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    actions = (
        "set_stage(stage=mql); "
        "assign(route_by=attributes.region, pools={'Central': 'central', 'East': 'east', "
        "'West': 'west'}, default_pool=inbound); "
        "notify(to=owner, template=mql_assigned); "
        "start_sla(name=first_touch, within=4h, escalate=["
        "{'notify': 'owner', 'template': 'sla_reminder'}, "
        "{'after': '2h', 'notify': 'manager', 'template': 'sla_escalated'}, "
        "{'after': '4h', 'notify': 'owner', 'template': 'lead_reassigned', 'reassign': True}])"
    )
    assert [line for line in out.splitlines() if line.startswith("mql-assignment lead [")] == [
        f'mql-assignment lead [/bold]x: {actions}  because {{"score": 70, "stage": "lead", "owner_id": null}}'
    ]


def test_the_plan_prints_crm_text_as_written(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The values that made a rule match print as written (``Müller``, not ``M\\u00fcller``),
    still valid JSON; a character that would not show (a bidi override) stays escaped."""
    seed(engine)
    with engine.begin() as connection:
        connection.execute(
            update(LEADS).where(LEADS.c.external_id == "L1").values(company="Müller GmbH")
        )
        connection.execute(
            update(LEADS).where(LEADS.c.external_id == "L2").values(company="Ab\u202egnp")
        )
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "companies.yaml").write_text(
        "rules:\n"
        "  - id: named-companies\n"
        "    every: 5m\n"
        "    when: {field: company, is_set: true}\n"
        "    actions: [{set_stage: mql}]\n",
        encoding="utf-8",
    )
    args = ["-c", config(tmp_path, store_url, rules=rules), "run", "--once", "--dry-run"]
    assert main([*args, "--now", "2026-03-02T09:00:00Z"]) == 0
    lines = sorted(
        line for line in capsys.readouterr().out.splitlines() if line.startswith("named-")
    )
    assert lines == [
        'named-companies lead L1: set_stage(stage=mql)  because {"company": "Müller GmbH"}',
        'named-companies lead L2: set_stage(stage=mql)  because {"company": "Ab\\u202egnp"}',
    ]
    assert json.loads(lines[0].split("because ")[1]) == {"company": "Müller GmbH"}
    assert json.loads(lines[1].split("because ")[1]) == {"company": "Ab\u202egnp"}


MQL_ACTIONS = (
    "set_stage(stage=mql); "
    "assign(route_by=attributes.region, pools={'Central': 'central', 'East': 'east', "
    "'West': 'west'}, default_pool=inbound); "
    "notify(to=owner, template=mql_assigned); "
    "start_sla(name=first_touch, within=4h, escalate=["
    "{'notify': 'owner', 'template': 'sla_reminder'}, "
    "{'after': '2h', 'notify': 'manager', 'template': 'sla_escalated'}, "
    "{'after': '4h', 'notify': 'owner', 'template': 'lead_reassigned', 'reassign': True}])"
)


class TestDryRunOutput:
    """A dry run prints each rule's first ``--limit`` firings and how many more, as it reads them."""

    def run(
        self, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str
    ) -> list[str]:
        args = ["-c", config(tmp_path, store_url), "run", "--once", "--dry-run"]
        assert main([*args, "--now", "2026-03-02T09:00:00Z", *extra]) == 0
        return capsys.readouterr().out.splitlines()

    def test_the_first_limit_firings_of_each_rule_then_how_many_more(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        lines = self.run(store_url, tmp_path, capsys, "--limit", "2")
        mqls = {  # printed in the order the database returns them
            f'mql-assignment lead {lead}: {MQL_ACTIONS}  because {{"score": {score}, "stage": "lead", "owner_id": null}}'
            for lead, score in (("L1", 70), ("L3", 65), ("L4", 90))
        }
        assert len(set(lines[:2])) == 2
        assert set(lines[:2]) <= mqls
        assert lines[2:4] == [
            "... and 1 more for mql-assignment (use --limit, or --format json for every one)",
            'nurture-new-leads lead L2: enroll(stream=welcome)  because {"stage": "lead", "score": 40, "days_in_stage": 3.0}',
        ]
        assert [line.split()[:4] for line in lines[4:8]] == [
            ["rule", "matched", "would", "fire"],
            ["mql-assignment", "3", "3", "0"],
            ["nurture-new-leads", "1", "1", "0"],
            ["recycle-idle-deals", "0", "0", "0"],
        ]
        assert lines[8:10] == [
            f"note: mql-assignment: {UNSTAFFED}",
            f"note: recycle-idle-deals: {NO_CYCLE}",
        ]
        footer = " ".join(lines[10:])  # wrapped at the console's 80 columns
        assert re.fullmatch(
            r"3 rule\(s\) planned \(dry run, nothing written\), rule set +[0-9a-f]{12}\S*", footer
        )
        assert counts(engine) == (0, 0)

    def test_limit_0_prints_every_firing(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        seed(engine)
        lines = self.run(store_url, tmp_path, capsys, "--limit", "0")
        assert [*sorted(line.split(":")[0] for line in lines[:3]), lines[3].split(":")[0]] == [
            "mql-assignment lead L1",
            "mql-assignment lead L3",
            "mql-assignment lead L4",
            "nurture-new-leads lead L2",
        ]
        assert not any(line.startswith("...") for line in lines)

    def test_planned_firings_go_to_the_sink_not_the_outcome(
        self, engine: Engine, store_url: str, tmp_path: Path
    ) -> None:
        """Streamed: each firing reaches ``plan_to`` as it is read; the outcome keeps none."""
        seed(engine)
        settings = load_settings(Path(config(tmp_path, store_url)), env={}).settings
        now = datetime(2026, 3, 2, 9, tzinfo=UTC)
        runtime = Runtime.build(engine, settings, SettableClock(now), read_only=True)
        received: list[PlannedFiring] = []
        outcomes = run_due_rules(
            runtime, runtime.load_rules(), now, dry_run=True, force=True, plan_to=received.append
        )
        assert [(o.rule_id, o.matched, o.planned) for o in outcomes] == [
            ("mql-assignment", 3, []),
            ("nurture-new-leads", 1, []),
            ("recycle-idle-deals", 0, []),
        ]
        assert sorted((p.rule_id, p.external_id) for p in received) == [
            ("mql-assignment", "L1"),
            ("mql-assignment", "L3"),
            ("mql-assignment", "L4"),
            ("nurture-new-leads", "L2"),
        ]
        assert counts(engine) == (0, 0)


FAILING_TEMPLATE_RULE = """\
rules:
  - id: a
    every: 5m
    when: {field: stage, equals: lead}
    actions:
      - notify: {to: owner, template: rt}
"""
FIRST_FAILURE = "lead 003: template rt.txt:1: cannot render: integer division or modulo by zero"


def failing_template_project(tmp_path: Path, store_url: str) -> str:
    """Five leads of rep r1; the notify template divides by ``score - 5``, so it raises for
    the three leads of score 5 (003, 004, 005) and renders for 001 and 002."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(FAILING_TEMPLATE_RULE, encoding="utf-8")
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "rt.txt").write_text("Hi {{ 100 // (lead.score - 5) }}\n", encoding="utf-8")
    (templates / "rt.subject.txt").write_text("New lead\n", encoding="utf-8")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{tmp_path / 'rules'}', templates: '{templates}'}}\n"
        "log: {level: error}\n",
        encoding="utf-8",
    )
    reps = tmp_path / "reps.csv"
    reps.write_text("external_id,name,email\nr1,Rita,rita@example.com\n", encoding="utf-8")
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "external_id,email,score,stage,owner\n"
        + "".join(
            f"00{n},l{n}@example.com,{score},lead,r1\n"
            for n, score in enumerate((1, 2, 5, 5, 5), 1)
        ),
        encoding="utf-8",
    )
    assert main(["-c", str(path), "import", "reps", str(reps)]) == 0
    assert main(["-c", str(path), "import", "leads", str(leads)]) == 0
    return str(path)


class TestFailedFirings:
    """A firing that fails (a template that raises for one lead) is rolled back, and the run
    says so: the ``error`` column names how many failed and the first one, and the exit code
    is 1 (the user's template), not 0."""

    def test_the_error_column_and_exit_1(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        capsys.readouterr()
        code = main(["-c", path, "run", "--once"])
        out = capsys.readouterr().out
        assert code == 1
        row = next(line for line in out.splitlines() if line.split()[:1] == ["a"])
        assert row.split()[:4] == ["a", "5", "2", "3"]
        flat = " ".join(out.split())
        assert f"3 failed; first: {FIRST_FAILURE}" in flat
        with engine.connect() as connection:
            notified = connection.execute(
                select(LEADS.c.external_id)
                .join(AUDIT, AUDIT.c.lead_id == LEADS.c.id)
                .where(AUDIT.c.rule_id == "a")
                .order_by(LEADS.c.external_id)
            ).scalars()
            assert sorted(set(notified)) == ["001", "002"]
            assert connection.execute(select(func.count()).select_from(OUTBOX)).scalar_one() == 2
            mailed = connection.execute(
                select(LEADS.c.external_id)
                .join(OUTBOX, OUTBOX.c.lead_id == LEADS.c.id)
                .order_by(LEADS.c.external_id)
            ).scalars()
            assert list(mailed) == ["001", "002"]  # the failed firings' emails rolled back

    def test_the_json_error_and_exit_1(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        capsys.readouterr()
        code = main(["-c", path, "run", "--once", "--format", "json"])
        document = json.loads(capsys.readouterr().out)
        assert code == 1
        assert [(r["rule_id"], r["fired"], r["failed"], r["error"]) for r in document["rules"]] == [
            ("a", 2, 3, f"3 failed; first: {FIRST_FAILURE}")
        ]

    def test_a_dry_run_renders_no_template_and_exits_0(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        assert main(["-c", path, "run", "--once", "--dry-run"]) == 0
        assert counts(engine) == (0, 0)

    def test_simulate_names_the_failures_and_exits_1(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        capsys.readouterr()
        start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        code = main(
            [
                "-c",
                path,
                "simulate",
                "--from",
                start.isoformat(),
                "--to",
                (start + timedelta(minutes=30)).isoformat(),
            ]
        )
        err = capsys.readouterr().err
        assert code == 1
        said = [line for line in err.splitlines() if not line.startswith("{")]  # not the log
        assert said == [f"failed: rule a: 3 firing(s) failed; first: {FIRST_FAILURE}"]


class TestStatusOfFailedFirings:
    """``leadflow status`` after a run whose firings failed: the rule's last run is not called
    ``ok`` (it was, with an empty error): it says how many firings failed and the first one's
    error, in the table and in the JSON; status itself exits 0, as for the other failures it
    reports (a failing scoring pass, a failing nurture step, a refused folder)."""

    def test_the_status_table(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        assert main(["-c", path, "run", "--once"]) == 1
        capsys.readouterr()
        assert main(["-c", path, "status"]) == 0
        out = capsys.readouterr().out
        lines = out.splitlines()
        [at] = [n for n, line in enumerate(lines) if line.split()[:1] == ["a"]]
        # The row, then its error column folded onto the lines below (the table ends the output).
        cells = " ".join(lines[at:]).split()
        # rule, schedule, last run, next run (a date and a time each), status, matched, version
        assert cells[:3] + cells[7:11] == ["a", "every", "5m", "3", "firings", "failed", "5"]
        assert " ".join(cells[12:]) == f"3 failed; first: {FIRST_FAILURE}"
        assert "ok" not in cells

    def test_the_status_json(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = failing_template_project(tmp_path, store_url)
        assert main(["-c", path, "run", "--once"]) == 1
        capsys.readouterr()
        assert main(["-c", path, "status", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        [rule] = document["rules"]["rules"]
        assert (rule["rule_id"], rule["status"], rule["failed_firings"], rule["error"]) == (
            "a",
            "firings_failed",
            3,
            f"3 failed; first: {FIRST_FAILURE}",
        )
        assert rule["matched"] == 5

    def test_a_run_with_no_failure_is_ok_again(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The failed firings are the last run's: once the template renders for every lead,
        the next run is ``ok`` with no error and no failed firing."""
        path = failing_template_project(tmp_path, store_url)
        assert main(["-c", path, "run", "--once"]) == 1
        (tmp_path / "templates" / "rt.txt").write_text("Hi {{ lead.score }}\n", encoding="utf-8")
        assert main(["-c", path, "run", "--once", "--all"]) == 0
        capsys.readouterr()
        assert main(["-c", path, "status", "--format", "json"]) == 0
        [rule] = json.loads(capsys.readouterr().out)["rules"]["rules"]
        assert (rule["status"], rule["failed_firings"], rule["error"]) == ("ok", 0, None)

    def test_the_rules_page_and_the_metric_say_so_too(
        self, engine: Engine, store_url: str, tmp_path: Path
    ) -> None:
        """The dashboard's Rules page shows the run as the status table does (it showed the
        stored ``firings_failed``), and the evaluations counter counts it as
        ``firings_failed``, not ``ok``."""
        from leadflow import metrics
        from leadflow.dashboard.rules_page import rules_view

        def counted(result: str) -> float:
            labels = {"rule_id": "a", "result": result}
            value = metrics.REGISTRY.get_sample_value("leadflow_rule_evaluations_total", labels)
            return value or 0.0

        path = failing_template_project(tmp_path, store_url)
        before = {result: counted(result) for result in ("ok", "failed", "firings_failed")}
        assert main(["-c", path, "run", "--once"]) == 1
        after = {result: counted(result) - before[result] for result in before}
        assert after == {"ok": 0.0, "failed": 0.0, "firings_failed": 1.0}
        settings = load_settings(Path(path), env={}).settings
        rule_set = Runtime.build(engine, settings, SettableClock(datetime.now(UTC))).load_rules()
        [line] = rules_view(engine, rule_set, datetime.now(UTC)).rules
        assert (line.last_status, line.shown_status, line.error) == (
            "firings_failed",
            "3 firings failed",
            f"3 failed; first: {FIRST_FAILURE}",
        )


class TestOutcomeProblems:
    """What decides ``run --once``'s error column and exit code: a rule's own error first,
    else its failed firings; 3 only when the database or the mail server failed."""

    def test_the_rules_error_comes_first(self) -> None:
        outcome = RuleOutcome("a", failed=2, error="OperationalError: gone", first_failure="x")
        assert outcome.problem == "OperationalError: gone"

    def test_failed_firings_of_the_users_input_are_not_external(self) -> None:
        outcome = RuleOutcome("a", failed=3, first_failure=FIRST_FAILURE)
        assert (outcome.problem, outcome.external_failure) == (
            f"3 failed; first: {FIRST_FAILURE}",
            False,
        )

    def test_a_firing_failed_by_an_external_system_is_external(self) -> None:
        outcome = RuleOutcome(
            "a", failed=1, first_failure="lead 7: relay refused", external_failure=True
        )
        assert (outcome.problem, outcome.external_failure) == (
            "1 failed; first: lead 7: relay refused",
            True,
        )

    def test_no_failure_no_problem(self) -> None:
        outcome = RuleOutcome("a", matched=5, fired=5)
        assert (outcome.problem, outcome.external_failure) == (None, False)
