"""``leadflow run --once`` and ``leadflow send --once`` as a user runs them: output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from leadflow.cli import main
from leadflow.store.tables import AUDIT, LEADS, OUTBOX
from tests.mail_support import free_port
from tests.test_funnel_scenario import REPO, seed


def config(tmp_path: Path, store_url: str, extra: str = "") -> str:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: {{url: '{store_url}'}}\n"
        f"paths: {{rules: '{REPO / 'tests' / 'fixtures' / 'funnel_rules'}', templates: '{REPO / 'templates'}'}}\n"
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
