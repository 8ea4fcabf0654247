"""``leadflow audit`` answers "why did this happen?" from the audit rows a real run wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, insert, select, update

from leadflow.cli import main
from leadflow.store.audit_trail import audit_row
from leadflow.store.tables import AUDIT, REPS
from tests.test_funnel_scenario import seed
from tests.test_run_command import config

RUN_AT = "2026-03-02T09:00:00Z"


def audited(
    engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], *asked: str
) -> list[dict[str, Any]]:
    """The audit rows ``leadflow audit ASKED --format jsonl`` prints after one run at RUN_AT."""
    seed(engine)
    args = ["-c", config(tmp_path, store_url)]
    assert main([*args, "run", "--once", "--now", RUN_AT]) == 0
    capsys.readouterr()
    assert main([*args, "audit", *asked, "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


class TestAuditCommand:
    """Filters select exactly the rows asked for; a bad ``--since`` is one line and exit 1."""

    def test_one_leads_history_as_jsonl(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--lead`` lists that lead's actions, oldest first, with the evidence of each."""
        rows = audited(engine, store_url, tmp_path, capsys, "--lead", "L1")
        assert {row["lead"] for row in rows} == {"L1"}
        assert [row["action"] for row in rows] == [
            "stage_changed",
            "assigned",
            "email_queued",
            "sla_started",
        ]
        assert {row["rule_id"] for row in rows} == {"mql-assignment"}
        assert {key: rows[0]["params"][key] for key in ("from", "to")} == {
            "from": "lead",
            "to": "mql",
        }
        assert rows[1]["params"]["rep"] == {"external_id": "r1", "name": "Rita Rep"}
        assert rows[2]["params"]["to"] == "rita@example.com"
        assert rows[3]["params"]["due_at"] == "2026-03-02T13:00:00+00:00"
        assert {json.dumps(row["evidence"], sort_keys=True) for row in rows} == {
            '{"owner_id": null, "score": 70, "stage": "lead"}'
        }
        assert {row["at"] for row in rows} == {"2026-03-02T09:00:00+00:00"}

    def test_json_is_one_array_of_the_jsonl_objects(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--format json``, as ``status`` and ``outbox`` take it, was refused ("'json' is not
        one of 'table', 'jsonl'"); it is one JSON array holding what jsonl prints line by line."""
        lines = audited(engine, store_url, tmp_path, capsys, "--lead", "L1")
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "audit", "--lead", "L1", "--format", "json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert document == lines
        assert [row["action"] for row in document] == [
            "stage_changed",
            "assigned",
            "email_queued",
            "sla_started",
        ]

    def test_jsonl_writes_utf8_as_is(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A rep named "Rita Müller" is written so, not ``"Rita M\\u00fcller"``: one JSON
        document per line, UTF-8, as the other ``--format json`` outputs are."""
        seed(engine)
        with engine.begin() as connection:
            connection.execute(
                update(REPS).where(REPS.c.external_id == "r1").values(name="Rita Müller")
            )
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "run", "--once", "--now", RUN_AT]) == 0
        capsys.readouterr()
        assert main([*args, "audit", "--lead", "L1", "--format", "jsonl"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assigned = [line for line in lines if '"action": "assigned"' in line]
        assert len(assigned) == 1
        assert '"name": "Rita Müller"' in assigned[0]
        assert "\\u" not in "".join(lines)
        assert [json.loads(line)["action"] for line in lines] == [
            "stage_changed",
            "assigned",
            "email_queued",
            "sla_started",
        ]

    def test_limit_0_lists_every_row(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--limit 0`` was refused ("greater than or equal to 1") while ``outbox --limit 0``
        and ``run --dry-run --limit 0`` list every one; it lists every row too."""
        # More rows than the default --limit (200): 0 read as the default would cut them.
        with engine.begin() as connection:
            connection.execute(
                insert(AUDIT),
                [
                    audit_row(at=datetime(2026, 1, 1, tzinfo=UTC), source="import", action="note")
                    for _ in range(200)
                ],
            )
        everything = audited(engine, store_url, tmp_path, capsys, "--limit", "0")
        args = ["-c", config(tmp_path, store_url)]
        assert main([*args, "audit", "--limit", "100000", "--format", "jsonl"]) == 0
        assert everything == [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        with engine.connect() as connection:
            assert (
                len(everything)
                == connection.execute(select(func.count()).select_from(AUDIT)).scalar_one()
            )
        assert len(everything) > 200
        assert main([*args, "audit", "--limit", "3", "--format", "jsonl"]) == 0
        newest = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert newest == everything[-3:]

    def test_rule_and_since_filters(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--rule`` keeps that rule's rows; ``--since`` after the run leaves none."""
        rows = audited(engine, store_url, tmp_path, capsys, "--rule", "nurture-new-leads")
        assert [(row["lead"], row["action"]) for row in rows] == [
            ("L2", "enrolled"),
            ("L2", "nurture_step"),
        ]
        args = ["-c", config(tmp_path, store_url)]
        # --since at the run keeps every row of it (the same rows as no filter at all) ...
        assert main([*args, "audit", "--format", "jsonl"]) == 0
        everything = capsys.readouterr().out
        assert main([*args, "audit", "--since", "2026-03-02T09:00:00Z", "--format", "jsonl"]) == 0
        assert capsys.readouterr().out == everything
        assert ("L2", "enrolled") in [
            (row["lead"], row["action"]) for row in map(json.loads, everything.splitlines())
        ]
        # ... and a second after it, none.
        assert main([*args, "audit", "--since", "2026-03-02T09:00:01Z"]) == 0
        captured = capsys.readouterr()
        assert "no audit rows match" in captured.err

    def test_bad_since_is_a_user_error(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unreadable ``--since`` names the option and exits 1, without a traceback."""
        code = main(["-c", config(tmp_path, store_url), "audit", "--since", "yesterday-ish"])
        err = capsys.readouterr().err
        assert code == 1
        assert err == (
            "error: --since: 'yesterday-ish' is not an ISO 8601 time; "
            "write e.g. 2017-12-31T09:00:00Z\n"
        )

    def test_a_lead_no_store_has_is_a_user_error(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--lead NOPE`` (no such lead) exits 1 naming it, where "no rows" would read as
        "nothing happened to it"; one line, with no empty table on stdout nor "no audit rows
        match" before it (in table and jsonl alike)."""
        for output in ("table", "jsonl"):
            argv = ["-c", config(tmp_path, store_url), "audit", "--lead", "NOPE"]
            code = main([*argv, "--format", output])
            captured = capsys.readouterr()
            assert code == 1
            assert (captured.out, captured.err) == (
                "",
                "error: --lead NOPE: no lead has this external id\n",
            )

    def test_a_rule_id_no_audit_row_names_is_a_user_error(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``--rule mql-asignment`` (a typo) printed an empty table and exited 0, read as "the
        rule did nothing"; it is one line and exit 1, as ``--lead NOPE`` is."""
        code = main(["-c", config(tmp_path, store_url), "audit", "--rule", "mql-asignment"])
        captured = capsys.readouterr()
        assert code == 1
        assert (captured.out, captured.err) == (
            "",
            "error: --rule mql-asignment: no audit row names this rule id, nor does the rules "
            "folder\n",
        )
        # A rule of the folder that has not fired yet is no mistake: no rows, exit 0.
        code = main(["-c", config(tmp_path, store_url), "audit", "--rule", "mql-assignment"])
        captured = capsys.readouterr()
        assert (code, captured.err) == (0, "no audit rows match\n")

    def test_lead_id_no_store_can_hold_is_a_user_error(
        self, engine: Engine, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A byte that is not UTF-8 in the shell (argv's surrogate escape) is one line, exit 1."""
        code = main(["-c", config(tmp_path, store_url), "audit", "--lead", "L\udcff"])
        err = capsys.readouterr().err
        assert code == 1
        assert err == (
            "error: --lead: text may not contain a lone UTF-16 surrogate (\\udcff); write the "
            "character itself, or a complete surrogate pair such as \\ud83d\\ude00\n"
        )
