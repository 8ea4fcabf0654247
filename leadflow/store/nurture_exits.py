"""Ending nurture enrollments because their lead was flagged unsubscribed or do-not-email.

An import, a posted lead and a lead's own unsubscribe all end them the way nurture's own step
does when it sees the flag (``exited``, with the reason it writes, and a ``nurture_exited``
audit row), set-based and in the caller's transaction, so the enrollment never shows
``active`` until its next step is due.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, func, insert, literal, select, update

from leadflow.store.id_ranges import among, chunks
from leadflow.store.tables import AUDIT, LEADS, NURTURE
from leadflow.store.types import JSONDocument, UTCDateTime

FLAG_EXITS = (("unsubscribed", "unsubscribed"), ("do_not_email", "do not email"))
"""The flags an import or a posted lead sets that end nurture, with the exit reason nurture's
own step writes for each (:func:`leadflow.engine.nurture.exit_reason`)."""


def end_flagged_nurture(connection: Connection, lead_ids: Sequence[int], now: datetime) -> None:
    """End the active nurture enrollments of those of ``lead_ids`` now flagged unsubscribed or
    do-not-email, in SQL: the enrollment must not show ``active`` until its next step is due.
    Each ends with the ``nurture_exited`` audit row nurture's own exit writes, in the same
    transaction. Their queued marketing email is suppressed by the sender when it claims it."""
    for flag, reason in FLAG_EXITS:
        flagged = select(LEADS.c.id).where(LEADS.c[flag].is_(True))
        for chunk in chunks(sorted(lead_ids)):
            ending = (
                among(NURTURE.c.lead_id, chunk),
                NURTURE.c.status == "active",
                NURTURE.c.lead_id.in_(flagged.where(among(LEADS.c.id, chunk))),
            )
            # Before the update, which is what makes them no longer ``active``.
            connection.execute(
                insert(AUDIT).from_select(
                    ["at", "source", "action", "lead_id", "rule_id", "params", "evidence"],
                    select(
                        literal(now, UTCDateTime()),
                        literal("nurture"),
                        literal("nurture_exited"),
                        NURTURE.c.lead_id,
                        NURTURE.c.rule_id,
                        _exit_params(connection.dialect.name, reason),
                        literal({}, JSONDocument),
                    )
                    .where(*ending)
                    .order_by(NURTURE.c.id),
                )
            )
            connection.execute(
                update(NURTURE)
                .where(*ending)
                .values(status="exited", exit_reason=reason, exited_at=now, next_step_at=None)
            )


def _exit_params(dialect: str, reason: str) -> Any:
    """``{"stream": ..., "reason": reason}`` built by the database, as nurture's exit writes it."""
    build = func.jsonb_build_object if dialect == "postgresql" else func.json_object
    # Typed: PostgreSQL cannot tell the type of a bare parameter among the "any" arguments.
    return build(
        literal("stream", String()),
        NURTURE.c.stream,
        literal("reason", String()),
        literal(reason, String()),
    )
