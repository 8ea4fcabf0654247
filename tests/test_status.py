"""``collect_status``: leads per stage and owner, deals open and closed, reps, the last imports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from import_support import write
from rich.console import Console
from sqlalchemy import Engine

from leadflow.cli.status_command import render_status
from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from leadflow.settings import ImportKind
from leadflow.store.status import LastImport, StoreStatus, collect_status

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class TestStatus:
    """Exact counts from a small store; an empty store reports zeros and no imports."""

    def test_empty_store(self, engine: Engine) -> None:
        assert collect_status(engine) == StoreStatus()

    def test_counts_after_imports(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        settings = make_settings()
        reps = "external_id,name,email,active\nR1,Ada,ada@x.org,yes\nR2,Alan,alan@x.org,no\n"
        leads = "external_id,stage,owner\nL1,mql,R1\nL2,mql,R1\nL3,lead,\nL4,sql,R2\n"
        deals = (
            "external_id,stage,outcome,closed_at\nD1,Won,won,2026-02-01\nD2,Open,,\n"
            "D3,Lost,lost,2026-02-02\nD4,Won,won,2026-02-03\n"
        )
        steps: list[tuple[ImportKind, str]] = [
            ("reps", reps),
            ("leads", leads),
            ("deals", deals),
            ("leads", leads),
        ]
        for kind, text in steps:
            import_file(engine, settings, kind, write(tmp_path, f"{kind}.csv", text), clock=clock)
        status = collect_status(engine)
        assert status.leads_by_stage == {"lead": 1, "mql": 2, "sql": 1}
        assert status.leads_by_owner_stage == {
            ("Ada", "mql"): 2,
            ("Alan", "sql"): 1,
            (None, "lead"): 1,
        }
        assert (status.deals_open, status.deals_closed) == (1, {"lost": 1, "won": 2})
        assert (status.reps_active, status.reps_inactive) == (1, 1)
        assert status.last_imports["leads"] == LastImport(
            "leads", str(tmp_path / "leads.csv"), T0, "done", 0, 0, 4, 0
        )
        assert list(status.last_imports) == ["reps", "leads", "deals"]

    def test_render(self) -> None:
        """The renderer prints the sections as lines a person can scan."""
        console = Console(width=120, record=True)
        status = StoreStatus(
            leads_by_stage={"mql": 2},
            leads_by_owner_stage={("Ada", "mql"): 2},
            deals_open=1,
            deals_closed={"won": 3},
            reps_active=1,
            last_imports={"leads": LastImport("leads", "/x/leads.csv", T0, "done", 2, 0, 0, 0, 1)},
        )
        render_status(status, console)
        lines = [line.rstrip() for line in console.export_text().splitlines()]
        assert lines[0] == "leads: 2"
        assert "deals: open 1; closed: won 3" in lines
        assert "reps: active 1, inactive 0" in lines
        header = "import file finished status inserted updated unchanged rejected superseded"
        assert header.split() in [line.split() for line in lines]
        assert any(
            line.split()
            == ["leads", "leads.csv", "2026-03-02", "09:00", "UTC", "done", "2", "0", "0", "0", "1"]
            for line in lines
        )
