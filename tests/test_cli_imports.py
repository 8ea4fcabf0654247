"""Each command imports only what it runs: what ``--help``, ``check`` and ``test`` load.

Start-up is measured in ``bench/startup_bench.py``; these tests hold its structure instead of
its time, which a shared machine would make flaky: each command runs in a fresh interpreter,
and the modules it left in ``sys.modules`` are compared with what it must never need. A
top-level ``import sqlalchemy`` in a command module, ``cli/context.py`` or the rule language
fails here, naming the module and the line that imported it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

DAEMON = ("alembic", "fastapi", "uvicorn", "starlette", "apscheduler", "aiosmtplib", "watchfiles")
"""The daemon's and the migrations' libraries: no command below uses them."""
STORE = ("sqlalchemy", "sqlmodel", "psycopg", "httpx", "prometheus_client", "email_validator")
"""The store, the drivers and what the engine sends with."""
LOGS = ("structlog", "rich", "asyncio")
"""structlog (which loads rich and asyncio): configured by commands that log."""

_PROBE = """
import json, sys, traceback

watched = set(json.loads(sys.argv[1]))
first = {}


class Watch:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in watched and top not in first:
            frames = [f for f in traceback.extract_stack() if "leadflow" in f.filename]
            first[top] = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        return None


sys.meta_path.insert(0, Watch())
from leadflow.cli import main

code = main(sys.argv[2:])
print(json.dumps({"code": code, "loaded": {m: first[m] for m in sorted(first)}}))
"""


def loaded_by(*argv: str) -> dict[str, str]:
    """The watched packages ``leadflow ARGV`` imported, each with the leadflow line that did."""
    watched = [*DAEMON, *STORE, *LOGS, "pydantic", "yaml", "jinja2"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(watched), *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["code"] == 0, done.stdout
    loaded: dict[str, str] = report["loaded"]
    return loaded


def _only(loaded: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {name: where for name, where in loaded.items() if name in names}


def test_help_loads_no_settings_store_or_logging() -> None:
    """``--help`` builds the commands from their signatures: typer, rich's help and nothing of
    what the commands do (no pydantic settings, no YAML, no templates)."""
    loaded = loaded_by("--help")
    forbidden = (*DAEMON, *STORE, "structlog", "asyncio", "pydantic", "yaml", "jinja2")
    assert _only(loaded, forbidden) == {}


def test_version_loads_nothing_of_the_commands() -> None:
    loaded = loaded_by("--version")
    assert _only(loaded, (*DAEMON, *STORE, *LOGS, "pydantic", "yaml", "jinja2")) == {}


def test_check_parses_rules_and_templates_without_the_store() -> None:
    """``check`` needs settings (pydantic), YAML and jinja2; conditions are parsed, never
    compiled to SQL, and it logs nothing, so neither SQLAlchemy nor structlog loads."""
    loaded = loaded_by("check", "--rules", "rules")
    assert _only(loaded, (*DAEMON, *STORE, *LOGS)) == {}
    assert {"pydantic", "yaml", "jinja2"} <= set(loaded)  # it did check something


def test_rule_tests_load_the_engine_but_not_the_daemon() -> None:
    """``test`` runs the engine on a scratch SQLite store built from the metadata: SQLAlchemy
    and the engine's own libraries load; migrations, PostgreSQL's driver, the CRM webhook
    client and the daemon's libraries do not."""
    loaded = loaded_by("test", "rule_tests/recycling.yaml")
    assert _only(loaded, (*DAEMON, "psycopg", "httpx")) == {}
    assert "sqlalchemy" in loaded  # the rule tests did run


@pytest.mark.parametrize("command", ["schema", "config"])
def test_settings_commands_do_not_open_the_store(command: str) -> None:
    loaded = loaded_by(command)
    assert _only(loaded, (*DAEMON, *STORE)) == {}
