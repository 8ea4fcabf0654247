"""``leadflow audit``: why things happened, one row per action."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import typer

from leadflow.cli.console import data_console, json_default
from leadflow.cli.context import cli_context
from leadflow.clock import parse_instant
from leadflow.errors import UserInputError


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
        Literal["table", "jsonl", "json"],
        typer.Option(
            "--format", help="table, jsonl (one object per line) or json (one array of them)."
        ),
    ] = "table",
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            min=0,
            help="At most this many rows (newest); 0: every one (as outbox's and run's).",
        ),
    ] = 200,
) -> None:
    """Show the audit trail: time, rule, version, lead or deal, action, parameters, evidence."""
    from rich.table import Table

    from leadflow.engine.audit_history import AuditFilter, audit_rows, email_statuses
    from leadflow.ingest.json_values import text_problem

    context = cli_context(ctx)
    try:
        since_at = parse_instant(since) if since is not None else None
    except ValueError as exc:
        raise UserInputError(f"--since: {exc}") from None
    for option, value in (("--lead", lead), ("--rule", rule)):
        problem = text_problem(value) if value is not None else None
        if problem is not None:  # a byte that is not UTF-8 in the shell, say: no store holds it
            raise UserInputError(f"{option}: {problem}")
    rows = audit_rows(context.reading_engine, AuditFilter(lead, rule, since_at, limit or None))
    if not rows and lead is not None and not _lead_exists(context.reading_engine, lead):
        # A mistyped id is the likelier story than a lead nothing happened to: say so, in one
        # line and before any table, and fail, so a script does not take "no rows" for
        # "nothing happened".
        raise UserInputError(f"--lead {lead}: no lead has this external id")
    if (
        not rows
        and rule is not None
        and not _rule_audited(context.reading_engine, rule)
        and rule not in _rule_ids(context.settings)
    ):
        # The same for a mistyped rule id: no row of the audit ever named it, and the rules
        # folder defines no such rule (one that has not fired yet is no mistake).
        raise UserInputError(
            f"--rule {rule}: no audit row names this rule id, nor does the rules folder"
        )
    # A queued email's row (a rule's or a nurture step's) also says what became of it: the
    # outbox's status now.
    statuses = email_statuses(context.reading_engine, filter(None, map(_outbox_id, rows)))
    if output != "table":
        documents = [_document(row, statuses) for row in rows]
        # UTF-8 as it is ("Zürich"), as every other JSON output of the CLI. ``json`` is for
        # the reader who typed it as for ``status``/``outbox`` (it was refused): one array.
        if output == "json":
            print(json.dumps(documents, default=json_default, ensure_ascii=False, indent=2))
        for document in documents if output == "jsonl" else ():
            print(json.dumps(document, default=json_default, ensure_ascii=False))
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
            _compact({**row.params, **_email_status_text(row, statuses)}),
            _compact(row.evidence),
        )
    data_console(min_width=160).print(table)
    if not rows:
        data_console(stderr=True).print("no audit rows match")


def _document(row: Any, statuses: dict[int, dict[str, Any]]) -> dict[str, Any]:
    return {
        "at": row.at.isoformat(),
        "rule_id": row.rule_id,
        "rule_version": row.rule_version,
        "source": row.source,
        "lead": row.lead,
        "deal": row.deal,
        "action": row.action,
        "params": row.params,
        "evidence": row.evidence,
        **_email_status(row, statuses),
    }


def _lead_exists(engine: Any, external_id: str) -> bool:
    from leadflow.store.tables import LEADS

    return _any_row(engine, LEADS, LEADS.c.external_id == external_id)


def _rule_ids(settings: Any) -> set[str]:
    """The rule ids of the configured rules folder; none when it does not load (its problems
    are for ``leadflow check``)."""
    from leadflow.rule_language.loader import check_rule_set

    rule_set, _problems = check_rule_set(settings.path(settings.paths.rules), settings)
    return {r.id for r in rule_set.rules} if rule_set is not None else set()


def _rule_audited(engine: Any, rule_id: str) -> bool:
    from leadflow.store.tables import AUDIT

    return _any_row(engine, AUDIT, AUDIT.c.rule_id == rule_id)


def _any_row(engine: Any, table: Any, condition: Any) -> bool:
    """Whether a row of ``table`` meets ``condition`` (one index probe, no row read back)."""
    from sqlalchemy import select

    with engine.connect() as connection:
        return connection.execute(select(table.c.id).where(condition).limit(1)).first() is not None


EMAIL_ROWS = ("email_queued", "nurture_step")
"""The audit rows naming an email by its outbox id: a rule's ``notify`` and a nurture step's."""


def _outbox_id(row: Any) -> int | None:
    outbox_id = row.params.get("outbox_id") if row.action in EMAIL_ROWS else None
    return outbox_id if isinstance(outbox_id, int) else None


def _email_status(row: Any, statuses: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``{"email_status": ...}`` for a queued email's row (status, sent_at, attempts, last
    error from the outbox); nothing for other rows."""
    outbox_id = _outbox_id(row)
    if outbox_id is None or outbox_id not in statuses:
        return {}
    return {"email_status": statuses[outbox_id]}


def _email_status_text(row: Any, statuses: dict[int, dict[str, Any]]) -> dict[str, str]:
    """The table's short form: ``email_status=sent 2026-03-02T09:01:00+00:00, 2 attempts``."""
    found = _email_status(row, statuses).get("email_status")
    if found is None:
        return {}
    text = str(found["status"])
    if found["sent_at"]:
        text += f" {found['sent_at']}"
    if found["attempts"]:
        text += f", {found['attempts']} attempt{'' if found['attempts'] == 1 else 's'}"
    if found["last_error"]:
        text += f", last error: {found['last_error']}"
    return {"email_status": text}


def _compact(values: dict[str, object]) -> str:
    return ", ".join(
        f"{key}={_shown(value)}"
        for key, value in values.items()
        if key != "rule_digest" and value is not None
    )


def _shown(value: object) -> object:
    """A fraction to two places, as the ages beside it: the table cut the average sales cycle
    kept at full precision (``48.326474622770…``); the JSON formats keep the exact value."""
    return round(value, 2) if isinstance(value, float) else value
