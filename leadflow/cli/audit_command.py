"""``leadflow audit``: why things happened, one row per action."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.table import Table

from leadflow.cli.console import data_console
from leadflow.cli.context import cli_context
from leadflow.clock import parse_instant
from leadflow.engine.audit_history import AuditFilter, audit_rows
from leadflow.errors import UserInputError
from leadflow.ingest.values import text_problem


def show_audit(
    ctx: typer.Context,
    lead: Annotated[
        str | None, typer.Option("--lead", help="Only this lead (external id).")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule id.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only actions at or after this ISO time.")
    ] = None,
    output: Annotated[
        Literal["table", "jsonl"], typer.Option("--format", help="table or jsonl.")
    ] = "table",
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="At most this many rows (newest).")
    ] = 200,
) -> None:
    """Show the audit trail: time, rule, version, lead or deal, action, parameters, evidence."""
    context = cli_context(ctx)
    try:
        since_at = parse_instant(since) if since is not None else None
    except ValueError as exc:
        raise UserInputError(f"--since: {exc}") from None
    for option, value in (("--lead", lead), ("--rule", rule)):
        problem = text_problem(value) if value is not None else None
        if problem is not None:  # a byte that is not UTF-8 in the shell, say: no store holds it
            raise UserInputError(f"{option}: {problem}")
    rows = audit_rows(context.engine, AuditFilter(lead, rule, since_at, limit))
    if output == "jsonl":
        for row in rows:
            print(
                json.dumps(
                    {
                        "at": row.at.isoformat(),
                        "rule_id": row.rule_id,
                        "rule_version": row.rule_version,
                        "source": row.source,
                        "lead": row.lead,
                        "deal": row.deal,
                        "action": row.action,
                        "params": row.params,
                        "evidence": row.evidence,
                    },
                    default=str,
                )
            )
        return
    table = Table(
        "at (UTC)", "rule", "version", "lead/deal", "action", "parameters", "because", box=None
    )
    for row in rows:
        subject = f"deal {row.deal}" if row.deal else (row.lead or "")
        table.add_row(
            row.at.strftime("%Y-%m-%d %H:%M"),
            row.rule_id or row.source,
            (row.rule_version or "")[:12],
            subject,
            row.action,
            _compact(row.params),
            _compact(row.evidence),
        )
    data_console(min_width=160).print(table)
    if not rows:
        data_console(stderr=True).print("no audit rows match")


def _compact(values: dict[str, object]) -> str:
    return ", ".join(
        f"{key}={value}"
        for key, value in values.items()
        if key != "rule_digest" and value is not None
    )
