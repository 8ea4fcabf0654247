"""``leadflow schema``: a draft 2020-12 JSON Schema that editors use to complete and validate rules.

Valid rule files (the shipped ones and hand-written ones) validate against it and pass the
loader; invalid ones fail both, so the editor and ``leadflow check`` tell the same story.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.rule_language.json_schema import rule_file_schema
from leadflow.rule_language.loader import check_rule_set
from leadflow.rule_language.yaml_source import parse_document
from leadflow.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings.model_validate(
    {
        "attributes": {"leads": {"country": "string", "employees": "integer", "founded": "date"}},
        # One file's shape is compared; a set without rules is refused apart (rules.allow_empty).
        "rules": {"allow_empty": True},
    }
)
VALIDATOR = Draft202012Validator(rule_file_schema(SETTINGS))


def as_editor_sees_it(text: str) -> Any:
    """The file as a YAML language server hands it to the schema: dates are strings."""
    data = parse_document("file.yaml", text).data
    return json.loads(json.dumps(data, default=str))


def schema_errors(text: str) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(as_editor_sees_it(text))]


def loader_problems(tmp_path: Path, text: str) -> list[str]:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    (folder / "r.yaml").write_text(text, encoding="utf-8")
    return [str(problem) for problem in check_rule_set(folder, SETTINGS)[1]]


HEAD = "rules:\n  - id: r\n"
VALID = {
    "shorthand actions": HEAD + "    when: {field: score, at_least: 60}\n"
    "    actions: [set_stage: mql, adjust_score: -5, set_score: 10, enroll: n]\n"
    "streams:\n  - id: n\n    steps: [{template: a}, {template: b, after: 3d}]\n",
    "every lead operator": HEAD + "    every: 1h 30m\n    reentry: {once_per: 30d}\n"
    "    when:\n      all:\n"
    "        - {field: stage, in: [lead, nurture]}\n"
    "        - {field: stage, not_equals: customer}\n"
    "        - {field: attributes.country, not_in: [NO, SE]}\n"
    "        - {field: attributes.employees, more_than: 50}\n"
    "        - {field: attributes.founded, before: 2020-01-01}\n"
    "        - {field: last_activity_at, within: 2d}\n"
    "        - {field: stage_entered_at, older_than: 1w}\n"
    "        - {field: created_at, after: 2026-01-31T09:00:00Z}\n"
    "        - {field: days_in_stage, at_most: 2.5}\n"
    "        - {field: unsubscribed, equals: false}\n"
    "        - {field: owner_id, is_set: false}\n"
    "        - not: {any: [{field: email, equals: x}, {field: company, is_set: false}]}\n"
    "    actions:\n"
    "      - assign: {route_by: attributes.country, pools: {NO: nordics}, default_pool: emea}\n"
    "      - notify: {to: owner, template: mql_assigned}\n"
    "      - notify: {to: 'rep:r-17', template: mql_assigned}\n"
    "      - start_sla:\n          name: first_touch\n          within: 4h\n"
    "          met_by: {activities: [call], stage_change: false}\n"
    "          escalate:\n            - {after: 0, notify: owner, template: sla_reminder}\n"
    "            - {after: 4h, reassign: true}\n",
    "a deal rule": HEAD + "    subject: deal\n    reentry: every_time\n"
    "    when:\n      all:\n"
    "        - idle_beyond_average_cycle: {factor: 2, group_by: product, window: 365d, min_deals: 20}\n"
    "        - {field: idle_days, at_least: 30}\n"
    "        - {field: amount, at_least: 1000.5}\n"
    "        - {field: outcome, is_set: false}\n"
    "    actions: [close_deal: {reason: idle, outcome: lost}, set_stage: recycled]\n",
    "a file kept without rules": "# none for now\nrules: []\n",
}
INVALID = {
    "an empty file": "",
    "a file of comments only": "# rules: moved to mql.yaml\n",
    "unknown rule key": HEAD
    + "    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n    colour: red\n",
    "unknown field": HEAD
    + "    when: {field: scroe, at_least: 1}\n    actions: [set_stage: mql]\n",
    "undeclared attribute": HEAD
    + "    when: {field: attributes.size, equals: 1}\n    actions: [set_stage: mql]\n",
    "operator of another type": HEAD
    + "    when: {field: score, older_than: 2d}\n    actions: [set_stage: mql]\n",
    "two operators": HEAD
    + "    when: {field: score, at_least: 1, at_most: 5}\n    actions: [set_stage: mql]\n",
    "a number for a text field": HEAD
    + "    when: {field: email, equals: 5}\n    actions: [set_stage: mql]\n",
    "unknown stage": HEAD
    + "    when: {field: stage, equals: mqll}\n    actions: [set_stage: mql]\n",
    "missing actions": HEAD + "    when: {field: score, at_least: 1}\n",
    "bad duration": HEAD
    + "    every: soon\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n",
    "deal action in a lead rule": HEAD
    + "    when: {field: score, at_least: 1}\n    actions: [close_deal: {reason: x}]\n",
    "lead action in a deal rule": HEAD
    + "    subject: deal\n    when: {field: amount, at_least: 1}\n    actions: [assign: {pool: p}]\n",
    "cycle on leads": HEAD
    + "    when: {idle_beyond_average_cycle: {}}\n    actions: [set_stage: mql]\n",
    "pool and route_by": HEAD
    + "    when: {field: score, at_least: 1}\n    actions: [assign: {pool: a, route_by: stage}]\n",
    "unknown action": HEAD
    + "    when: {field: score, at_least: 1}\n    actions: [set_stag: mql]\n",
    "bad id": "rules:\n  - id: Not An Id\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n",
    "unknown top-level key": "rulez: []\n",
}


class TestSchema:
    """The schema is valid draft 2020-12 and names the current config's fields."""

    def test_it_is_a_valid_draft_2020_12_schema(self) -> None:
        Draft202012Validator.check_schema(rule_file_schema(SETTINGS))

    def test_declared_attributes_are_offered_as_field_names(self) -> None:
        schema = rule_file_schema(SETTINGS)
        offered = {
            name
            for branch in schema["$defs"]["lead_condition"]["anyOf"]
            for name in branch["properties"].get("field", {}).get("enum", [])
        }
        assert {"attributes.country", "attributes.employees", "attributes.founded"} <= offered
        assert {"score", "stage", "days_in_stage", "last_activity_at"} <= offered
        assert "idle_days" not in offered

    def test_the_cli_prints_the_schema_of_the_configured_settings(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["--config", str(ROOT / "config.yaml"), "schema"]) == 0
        settings = load_settings(ROOT / "config.yaml", env={}).settings
        assert json.loads(capsys.readouterr().out) == rule_file_schema(settings)


class TestValidation:
    """Valid files validate and load; invalid ones fail both the schema and the loader."""

    @pytest.mark.parametrize("path", sorted((ROOT / "rules").glob("*.yaml")), ids=lambda p: p.name)
    def test_the_shipped_rule_files_validate(self, path: Path) -> None:
        settings = load_settings(ROOT / "config.yaml", env={}).settings
        validator = Draft202012Validator(rule_file_schema(settings))
        data = as_editor_sees_it(path.read_text(encoding="utf-8"))
        assert [error.message for error in validator.iter_errors(data)] == []

    @pytest.mark.parametrize("name", sorted(VALID))
    def test_valid_files(self, name: str, tmp_path: Path) -> None:
        assert schema_errors(VALID[name]) == []
        assert loader_problems(tmp_path, VALID[name]) == []

    @pytest.mark.parametrize("name", sorted(INVALID))
    def test_invalid_files(self, name: str, tmp_path: Path) -> None:
        assert schema_errors(INVALID[name]) != []
        assert loader_problems(tmp_path, INVALID[name]) != []
