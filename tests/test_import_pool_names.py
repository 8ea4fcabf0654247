"""A reps file's pool cell with a space (``inbound west``) is one pool: ``;`` separates pools.
The row lands as written; when no rule routes to that pool the import notes it, with a hint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from leadflow.cli import main

RULE = (
    "rules:\n  - id: route\n    every: 5m\n    when: {{field: score, at_least: 60}}\n"
    "    actions:\n      - assign: {{pool: {pool}}}\n"
)


def project(tmp_path: Path, routed: str) -> Path:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "route.yaml").write_text(RULE.format(pool=json.dumps(routed)))
    (tmp_path / "reps.csv").write_text(
        "external_id,name,email,pools\n"
        "R1,Ann,ann@example.com,inbound west\n"
        "R2,Bob,bob@example.com,west\n"
        "R3,Cy,cy@example.com,inbound west\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("database:\n  url: sqlite:///state/leadflow.db\nlog:\n  format: json\n")
    return config


def pools(tmp_path: Path) -> dict[str, list[str]]:
    engine = create_engine(f"sqlite:///{tmp_path / 'state' / 'leadflow.db'}")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT external_id, pools FROM reps")).all()
    engine.dispose()
    return {key: json.loads(value) for key, value in rows}


def test_a_spaced_pool_no_rule_routes_to_is_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, "west")
    reps = tmp_path / "reps.csv"
    assert main(["-c", str(config), "import", "reps", str(reps)]) == 0
    captured = capsys.readouterr()
    note = (
        "pool 'inbound west' has a space in its name and no rule routes leads to it: pools are "
        "separated by ';' (did you mean 'inbound; west'?); the rep was imported into the one "
        "pool 'inbound west'"
    )
    assert captured.out == f"reps {reps}: inserted 3, updated 0, unchanged 0, rejected 0\n"
    logged, shown = captured.err.splitlines()
    assert shown == f"{reps}:2: {note}"
    line = json.loads(logged)
    assert (line["event"], line["level"], line["line"], line["note"]) == (
        "import_pool_name_spaced",
        "warning",
        2,
        note,
    )
    # The import itself is as it was: the rows land with the pool as written.
    assert pools(tmp_path) == {"R1": ["inbound west"], "R2": ["west"], "R3": ["inbound west"]}


def test_a_spaced_pool_a_rule_routes_to_is_not_noted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = project(tmp_path, "inbound west")
    reps = tmp_path / "reps.csv"
    assert main(["-c", str(config), "import", "reps", str(reps)]) == 0
    assert capsys.readouterr() == (
        f"reps {reps}: inserted 3, updated 0, unchanged 0, rejected 0\n",
        "",
    )
    assert pools(tmp_path) == {"R1": ["inbound west"], "R2": ["west"], "R3": ["inbound west"]}
