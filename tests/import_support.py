"""Helpers for the import tests: write a file, read a table back in a fixed order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from leadflow.store.models import metadata

FIXTURES = Path(__file__).parent / "fixtures"


def write(folder: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def rows(engine: Engine, table: str, *columns: str) -> list[tuple[Any, ...]]:
    """``columns`` of every row of ``table``, ordered by external id (or id)."""
    t = metadata.tables[table]
    order = t.c.external_id if "external_id" in t.c else t.c.id
    with engine.connect() as connection:
        query = select(*(t.c[c] for c in columns)).order_by(order)
        return [tuple(row) for row in connection.execute(query)]


def all_columns(engine: Engine, table: str) -> list[tuple[Any, ...]]:
    """Every column of every row: to show that nothing at all changed."""
    return rows(engine, table, *metadata.tables[table].c.keys())


def lead_entries(engine: Engine) -> list[tuple[Any, ...]]:
    """Every stage history row of a lead as ``(external_id, from_stage, to_stage)``, in the
    order they were recorded."""
    history = metadata.tables["stage_changes"]
    leads = metadata.tables["leads"]
    query = (
        select(leads.c.external_id, history.c.from_stage, history.c.to_stage)
        .join(leads, leads.c.id == history.c.lead_id)
        .order_by(history.c.id)
    )
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]
