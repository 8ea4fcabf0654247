"""What happened during one step, read back from the audit and the outbox.

The engine writes every action to the audit and every email to the outbox in the same
transaction; a step's actions are exactly the rows added after the step began. Reading them
back (rather than hooking into the engine) tests what the daemon really records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from leadflow.rule_testing.actions import Action
from leadflow.store.tables import AUDIT, DEALS, LEADS, OUTBOX, REPS

Row = Any


@dataclass(frozen=True)
class Watermark:
    """The last audit and outbox ids before a step: its actions are the rows after them."""

    audit: int
    outbox: int


def watermark(engine: Engine) -> Watermark:
    with engine.connect() as connection:
        audit = connection.execute(select(func.max(AUDIT.c.id))).scalar_one_or_none()
        outbox = connection.execute(select(func.max(OUTBOX.c.id))).scalar_one_or_none()
    return Watermark(audit or 0, outbox or 0)


@dataclass(frozen=True)
class _Names:
    """External ids by internal id, to show leads, deals and reps as the test names them."""

    leads: Mapping[int, str]
    deals: Mapping[int, str]
    reps: Mapping[int, str]

    @classmethod
    def load(cls, connection: Connection) -> _Names:
        def ids(table: Any) -> dict[int, str]:
            rows = connection.execute(select(table.c.id, table.c.external_id))
            return {int(row.id): str(row.external_id) for row in rows}

        return cls(ids(LEADS), ids(DEALS), ids(REPS))


def actions_since(engine: Engine, mark: Watermark) -> list[Action]:
    """Every action recorded after ``mark``: audit rows in order, then the new emails."""
    with engine.connect() as connection:
        names = _Names.load(connection)
        audit = connection.execute(
            select(AUDIT).where(AUDIT.c.id > mark.audit).order_by(AUDIT.c.id)
        ).all()
        emails = connection.execute(
            select(OUTBOX).where(OUTBOX.c.id > mark.outbox).order_by(OUTBOX.c.id)
        ).all()
    found = [action for row in audit if (action := _from_audit(row, names)) is not None]
    found += [
        Action.of(
            "email",
            {
                "to": row.recipient,
                "subject": row.subject,
                "suppressed": row.status_reason if row.status == "suppressed" else None,
            },
        )
        for row in emails
    ]
    return found


def _from_audit(row: Row, names: _Names) -> Action | None:
    params: Mapping[str, Any] = row.params or {}
    lead = names.leads.get(row.lead_id) if row.lead_id is not None else None
    deal = names.deals.get(row.deal_id) if row.deal_id is not None else None
    common = {"lead": lead, "deal": deal, "sla": params.get("sla"), "reason": params.get("reason")}
    if row.action == "email_queued":
        return None  # the email itself is read from the outbox, with its rendered subject
    reader = _READERS.get(row.action)
    if reader is None:
        return Action.of("audit", {"action": row.action, "lead": lead, "deal": deal})
    kind, extra = reader(params, names)
    return Action.of(kind, {**common, **extra})


def _rep(value: Any) -> str | None:
    return str(value["external_id"]) if isinstance(value, Mapping) else None


Reader = Callable[[Mapping[str, Any], _Names], tuple[str, dict[str, Any]]]


def _simple(kind: str) -> Reader:
    return lambda _params, _names: (kind, {})


_READERS: Mapping[str, Reader] = {
    "stage_changed": lambda p, _n: ("stage_changed", {"from": p.get("from"), "to": p.get("to")}),
    "score_changed": lambda p, _n: ("score_changed", {"from": p.get("from"), "to": p.get("to")}),
    "assigned": lambda p, _n: (
        "assigned",
        {"rep": _rep(p.get("rep")), "pool": p.get("pool"), "how": p.get("how")},
    ),
    "assignment_queued": lambda p, _n: ("queued", {"pool": p.get("pool")}),
    "sla_started": lambda p, _n: ("sla_started", {"due": p.get("due_at")}),
    "sla_not_started": _simple("sla_not_started"),
    "sla_met": _simple("sla_met"),
    "sla_met_late": _simple("sla_met_late"),
    "sla_cancelled": _simple("sla_cancelled"),
    "sla_breached": _simple("sla_breached"),
    "sla_escalated": lambda p, _n: ("escalated", {"level": p.get("level"), "to": p.get("to")}),
    "reassigned": lambda p, n: (
        "reassigned",
        {"to": p.get("to"), "from": n.reps.get(p.get("from_rep_id") or 0)},
    ),
    "reassign_failed": _simple("reassign_failed"),
    "deal_recycled": _simple("recycled"),
    "deal_won": lambda _p, _n: ("deal_closed", {"outcome": "won"}),
    "deal_lost": lambda _p, _n: ("deal_closed", {"outcome": "lost"}),
    "enrolled": lambda p, _n: ("enrolled", {"stream": p.get("stream")}),
    "nurture_step": lambda p, _n: (
        "nurture_step",
        {"stream": p.get("stream"), "step": p.get("step")},
    ),
    "nurture_exited": lambda p, _n: ("nurture_exited", {"stream": p.get("stream")}),
    "nurture_completed": lambda p, _n: ("nurture_completed", {"stream": p.get("stream")}),
    "email_skipped": lambda p, _n: ("email_skipped", {"to": p.get("to")}),
}
"""Audit action -> (test action kind, its values beyond lead, deal, sla and reason)."""
