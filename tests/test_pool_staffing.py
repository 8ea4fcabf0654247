"""A rule routing MQLs to a pool no active rep is in says so: in ``run --once``'s notes, once
per rule version in the log, and in each queued lead's audit reason, with a did-you-mean for a
pool that differs only by case. Pool names stay case-sensitive."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from structlog.testing import capture_logs

from leadflow.cli import main
from leadflow.engine.evaluation import run_rule
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.store.database import create_store_engine
from leadflow.store.tables import AUDIT, LEADS, REPS
from tests.test_funnel_scenario import REPO, T0, leads, seed
from tests.test_funnel_scenario import runtime as funnel_runtime
from tests.test_run_command import config

NOTE = (
    "pool 'central' has no active reps; "
    "pool 'east' has no reps; did you mean 'East'? "
    "pool 'west' has no reps; did you mean 'West'? "
    "pool 'inbound' has no reps; "
    "pools with reps: East, West (leads routed there wait unassigned)"
)
"""The rule routes to central, east, west and inbound; the CRM's pools are capitalised."""


runtime = funnel_runtime
"""The funnel's runtime: its fixture rules on the test's store, its clock at :data:`T0`."""


def mql_rule(rule_set: RuleSet) -> Rule:
    rule = rule_set.rule("mql-assignment")
    assert rule is not None
    return rule


def capitalised_pools(engine: Engine) -> None:
    """The seeded funnel with its reps in pools as a CRM writes them: ``East``, ``West``, and
    ``central`` with only an inactive rep in it."""
    seed(engine)
    with engine.begin() as connection:
        for external_id, pools in (("r1", ["East"]), ("r2", ["West"]), ("r3", ["central"])):
            connection.execute(
                update(REPS).where(REPS.c.external_id == external_id).values(pools=pools)
            )


def test_queued_leads_are_told_the_pool_they_probably_meant(runtime: Runtime) -> None:
    """No lead gets a rep (names are matched exactly); each queued MQL's audit row names the
    pool differing only by case and the pools that have reps."""
    capitalised_pools(runtime.engine)
    run_due_rules(runtime, runtime.load_rules(), T0)
    assert {lead: owner for lead, (_stage, owner, _score) in leads(runtime.engine).items()} == {
        "L1": None,
        "L2": None,
        "L3": None,
        "L4": None,
        "L5": None,
    }
    with runtime.engine.connect() as connection:
        rows = connection.execute(
            select(LEADS.c.external_id, AUDIT.c.params)
            .join(LEADS, LEADS.c.id == AUDIT.c.lead_id)
            .where(AUDIT.c.action == "assignment_queued")
            .order_by(LEADS.c.external_id)
        )
        queued = {external_id: params for external_id, params in rows}
    for params in queued.values():
        params.pop("rule_digest")
    east = "pool 'east' has no reps; did you mean 'East'? pools with reps: East, West"
    west = "pool 'west' has no reps; did you mean 'West'? pools with reps: East, West"
    assert queued == {
        "L1": {"pool": "east", "reason": east},
        "L3": {"pool": "east", "reason": east},
        "L4": {"pool": "west", "reason": west},
    }


def test_run_once_notes_the_unstaffed_pools(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text output and the JSON ``note`` name the pools, once per rule, not per lead."""
    capitalised_pools(engine)
    path = config(tmp_path, store_url)
    args = ["-c", path, "run", "--once", "--rule", "mql-assignment", "--all", "--dry-run"]
    assert main([*args, "--now", "2026-03-02T09:00:00Z"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("note:")] == [
        f"note: mql-assignment: {NOTE}"
    ]
    assert main([*args, "--now", "2026-03-02T09:00:00Z", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(rule["rule_id"], rule["note"]) for rule in document["rules"]] == [
        ("mql-assignment", NOTE)
    ]


def test_staffed_pools_need_no_note(runtime: Runtime) -> None:
    """Reps in every pool the rule names: nothing is said."""
    seed(runtime.engine)
    with runtime.engine.begin() as connection:
        connection.execute(
            update(REPS)
            .where(REPS.c.external_id == "r1")
            .values(pools=["central", "east", "west", "inbound"])
        )
    rule_set = runtime.load_rules()
    outcome = run_rule(runtime, rule_set, mql_rule(rule_set), T0)
    assert (outcome.fired, outcome.note) == (3, None)


def test_the_log_warns_once_per_rule_version(runtime: Runtime, tmp_path: Path) -> None:
    """A daemon evaluating the rule again and again warns once; a new rule version warns again."""
    capitalised_pools(runtime.engine)
    rule_set = runtime.load_rules()
    rule = mql_rule(rule_set)
    with capture_logs() as logs:
        for minutes in (0, 5, 10):
            run_rule(runtime, rule_set, rule, T0.replace(minute=minutes), dry_run=True)
    warnings = [entry for entry in logs if entry["event"] == "assignment_pool_unstaffed"]
    assert warnings == [
        {
            "event": "assignment_pool_unstaffed",
            "log_level": "warning",
            "rule_id": "mql-assignment",
            "rule_version": rule_set.version,
            "reason": NOTE,
        }
    ]
    folder = tmp_path / "changed_rules"
    shutil.copytree(REPO / "tests" / "fixtures" / "funnel_rules", folder)
    mql = folder / "mql.yaml"
    mql.write_text(mql.read_text(encoding="utf-8") + "\n# reviewed\n", encoding="utf-8")
    changed = runtime.load_rules(folder)
    assert changed.version != rule_set.version
    with capture_logs() as logs:
        run_rule(runtime, changed, mql_rule(changed), T0, dry_run=True)
    assert [
        entry["rule_version"] for entry in logs if entry["event"] == "assignment_pool_unstaffed"
    ] == [changed.version]


def test_the_maven_example_puts_its_reps_in_the_pools_the_shipped_rules_name(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/maven-crm/config.yaml with rules/mql.yaml: the export's ``West`` office makes a
    rep of pools ``west`` and ``inbound``, so every pool the rule routes to has reps."""
    example = REPO / "examples" / "maven-crm" / "config.yaml"
    text = (
        example.read_text(encoding="utf-8")
        .replace("sqlite:///state/maven.db", store_url)
        .replace("../../", f"{REPO}/")
    )
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    teams = tmp_path / "sales_teams.csv"
    teams.write_text(
        "sales_agent,manager,regional_office\n"
        "Anna Snelling,Dustin Brinkmann,Central\n"
        "Cara Losch,Rocco Neubert,East\n"
        "Darcel Schlecht,Summer Sewald,West\n",
        encoding="utf-8",
    )
    assert main(["-c", str(path), "import", "reps", str(teams)]) == 0
    engine = create_store_engine(store_url)
    try:
        with engine.connect() as connection:
            pools = {
                name: value for name, value in connection.execute(select(REPS.c.name, REPS.c.pools))
            }
    finally:
        engine.dispose()
    assert {name: pools[name] for name in ("Anna Snelling", "Cara Losch", "Darcel Schlecht")} == {
        "Anna Snelling": ["central", "inbound"],
        "Cara Losch": ["east", "inbound"],
        "Darcel Schlecht": ["west", "inbound"],
    }
    capsys.readouterr()
    args = ["-c", str(path), "run", "--once", "--rule", "mql-assignment", "--all", "--dry-run"]
    assert main([*args, "--now", "2017-12-31T12:00:00Z", "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [(rule["rule_id"], rule["note"]) for rule in document["rules"]] == [
        ("mql-assignment", None)
    ]
