"""No rule reads a lead's score before the enabled model has scored it.

An outside tester imported 85 leads with no score column, the model enabled, and started the
daemon: the nurture rule's job ran before the funnel tick's scoring pass, read score 0 for
every lead, and enrolled in the welcome stream the 27 leads the model scored 60 or more
(``because score=0``), who became MQLs minutes later. Now each rule evaluation of the daemon
scores the leads due first (never scored, written since, next change come), ``run --once
--rule`` does too, and ``leadflow import`` scores the leads it wrote when the model is on.

Pinned on real SQLite and PostgreSQL: exactly which leads are enrolled in nurture and which
become MQLs, and the score their audit rows give as evidence.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine, insert, select

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_tick
from leadflow.service.daemon_ticks import Evaluator
from leadflow.service.rule_reload import SnapshotHolder
from leadflow.store.tables import AUDIT, LEADS, SCORING_RUNS
from tests.http_support import REPO, http_settings

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

RULES = """\
scoring:
  fit:
    - id: east
      when: {field: attributes.region, equals: East}
      points: 65
    - id: company-known
      when: {field: company, is_set: true}
      points: 10
rules:
  - id: nurture-new-leads
    every: 15m
    reentry: once
    when:
      all:
        - {field: stage, in: [subscriber, lead]}
        - {field: score, less_than: 60}
    actions:
      - enroll: welcome
  - id: mql-assignment
    every: 5m
    when:
      all:
        - {field: stage, in: [subscriber, lead]}
        - {field: score, at_least: 60}
    actions:
      - set_stage: mql
streams:
  - id: welcome
    steps:
      - template: nurture_welcome
        after: 0h
"""

LEADS_CSV = """\
external_id,company,region,stage
Warephase,,East,lead
Northwind,Northwind Ltd,East,lead
Plainfield,,West,lead
Oakridge,Oakridge Inc,West,lead
"""
"""Warephase 65 and Northwind 75 qualify; Plainfield 0 and Oakridge 10 do not."""

NURTURED = [
    ("Oakridge", {"score": 10, "stage": "lead"}),
    ("Plainfield", {"score": 0, "stage": "lead"}),
]
QUALIFIED = [
    ("Northwind", {"score": 75, "stage": "lead"}),
    ("Warephase", {"score": 65, "stage": "lead"}),
]


@pytest.fixture
def runtime(engine: Engine, make_settings: Any, tmp_path: Path, store_url: str) -> Runtime:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "scoring.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{folder}', templates: '{REPO / 'templates'}'}}\n"
        "attributes: {leads: {region: string}}\n",
        encoding="utf-8",
    )
    settings = http_settings(
        make_settings, **{"paths.rules": str(folder), "attributes.leads": {"region": "string"}}
    )
    return Runtime.build(engine, settings, SettableClock(T0))


def insert_leads(engine: Engine, at: datetime, *names: str) -> None:
    """Leads as an import writes them: score 0, never scored (``LEADS_CSV``'s values)."""
    wanted = {
        line.split(",")[0]: line.split(",")
        for line in LEADS_CSV.splitlines()[1:]
        if not names or line.split(",")[0] in names
    }
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "external_id": name,
                    "company": company or None,
                    "score": 0,
                    "stage": stage,
                    "stage_entered_at": at,
                    "attributes": {"region": region},
                    "created_at": at,
                    "updated_at": at,
                }
                for name, (_, company, region, stage) in wanted.items()
            ],
        )


def actions_of(engine: Engine, action: str) -> list[tuple[str, dict[str, Any]]]:
    """(lead, evidence) of each audit row of ``action``, by lead."""
    query = (
        select(LEADS.c.external_id, AUDIT.c.evidence)
        .join(LEADS, LEADS.c.id == AUDIT.c.lead_id)
        .where(AUDIT.c.action == action)
        .order_by(LEADS.c.external_id)
    )
    with engine.connect() as connection:
        return [
            (row.external_id, {key: row.evidence[key] for key in ("score", "stage")})
            for row in connection.execute(query)
        ]


def stages(engine: Engine) -> list[tuple[Any, ...]]:
    return rows(engine, "leads", "external_id", "stage", "score")


def daemon(runtime: Runtime) -> Evaluator:
    holder: SnapshotHolder[Any] = SnapshotHolder(clock=runtime.clock)
    holder.record_success(runtime.load_rules())
    return Evaluator(runtime, holder)


def assert_funnel(engine: Engine) -> None:
    assert actions_of(engine, "enrolled") == NURTURED
    assert actions_of(engine, "stage_changed") == QUALIFIED
    assert stages(engine) == [
        ("Northwind", "mql", 75),
        ("Oakridge", "lead", 10),
        ("Plainfield", "lead", 0),
        ("Warephase", "mql", 65),
    ]


class TestDaemon:
    """A rule's job scores the leads due before it evaluates, whatever job runs first."""

    def test_the_first_rule_job_before_any_scoring_pass(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """The tester's start: the nurture rule's job first, no pass ever ran."""
        insert_leads(engine, T0)
        evaluator = daemon(runtime)
        nurture = asyncio.run(evaluator.evaluate("nurture-new-leads"))
        mql = asyncio.run(evaluator.evaluate("mql-assignment"))
        assert nurture is not None
        assert mql is not None
        assert (nurture.error, mql.error) == (None, None)
        assert_funnel(engine)
        with engine.connect() as connection:  # a first pass of every lead, recorded
            assert connection.execute(select(SCORING_RUNS.c.last_run_at)).scalar() == T0

    def test_leads_written_after_a_pass_are_scored_before_the_next_rule(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        """Within ``scoring_every`` of a pass, the new leads alone are scored (not recorded as
        a pass: the cadence stays the last pass's), before the rule and the funnel tick."""
        insert_leads(engine, T0, "Plainfield")
        evaluator = daemon(runtime)
        assert asyncio.run(evaluator.funnel_tick()) == {"scoring": 1, "sla": 0, "nurture": 0}
        assert isinstance(runtime.clock, SettableClock)
        runtime.clock.set(T0 + timedelta(minutes=2))
        insert_leads(engine, T0, "Warephase", "Northwind", "Oakridge")
        asyncio.run(evaluator.evaluate("nurture-new-leads"))
        asyncio.run(evaluator.evaluate("mql-assignment"))
        assert_funnel(engine)
        with engine.connect() as connection:
            assert connection.execute(select(SCORING_RUNS.c.last_run_at)).scalar() == T0
        assert rows(engine, "leads", "external_id", "scored_at") == [
            ("Northwind", T0 + timedelta(minutes=2)),
            ("Oakridge", T0 + timedelta(minutes=2)),
            ("Plainfield", T0),  # by the funnel tick's pass
            ("Warephase", T0 + timedelta(minutes=2)),
        ]

    def test_a_funnel_tick_between_passes_scores_the_new_leads(
        self, runtime: Runtime, engine: Engine
    ) -> None:
        insert_leads(engine, T0, "Plainfield")
        evaluator = daemon(runtime)
        asyncio.run(evaluator.funnel_tick())
        insert_leads(engine, T0, "Warephase")
        assert asyncio.run(evaluator.funnel_tick()) == {"scoring": 1, "sla": 0, "nurture": 0}
        assert rows(engine, "leads", "external_id", "score") == [
            ("Plainfield", 0),
            ("Warephase", 65),
        ]


class TestRunOnce:
    """``run --once`` scores before its rules, with ``--rule`` too."""

    @pytest.mark.parametrize("only", [None, ["nurture-new-leads", "mql-assignment"]])
    def test_one_tick(self, runtime: Runtime, engine: Engine, only: list[str] | None) -> None:
        insert_leads(engine, T0)
        run_tick(runtime, runtime.load_rules(), T0, only=only)
        assert_funnel(engine)

    def test_run_once_rule_on_the_command_line(
        self, runtime: Runtime, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        insert_leads(engine, T0)
        config = str(runtime.settings.root / "config.yaml")
        now = datetime.now(UTC).replace(microsecond=0)
        for rule in ("nurture-new-leads", "mql-assignment"):
            code = main(
                ["--config", config, "run", "--once", "--rule", rule, "--now", now.isoformat()]
            )
            assert code == 0, capsys.readouterr()
        assert_funnel(engine)


class TestImport:
    """``leadflow import leads`` scores the leads it wrote when the model is enabled."""

    def test_imported_leads_are_scored_at_once(
        self, runtime: Runtime, engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = str(runtime.settings.root / "config.yaml")
        path = write(tmp_path, "accounts.csv", LEADS_CSV)
        capsys.readouterr()
        assert main(["--config", config, "import", "leads", str(path)]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"leads {path}: inserted 4, updated 0, unchanged 0, rejected 0",
            f"leads {path}: scored by the model, 4 score(s) changed",
        ]
        scored = rows(engine, "leads", "external_id", "score", "scored_at")
        assert [row[:2] for row in scored] == [
            ("Northwind", 75),
            ("Oakridge", 10),
            ("Plainfield", 0),
            ("Warephase", 65),
        ]
        assert [row[0] for row in scored if row[2] is None] == []
