"""What nurture's steps did with their emails, read back from the audit: queued or skipped.

A step moves its lead on whether or not an email went out: a lead without an email address, or
one the frequency cap holds back, goes through the stream unmailed. The ``nurture_step`` audit
row of such a step carries ``skipped`` (the reason); counting steps alone called them "sent".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from leadflow.store.attributes import AttributeValue
from leadflow.store.tables import AUDIT


@dataclass(frozen=True)
class NurtureSends:
    """Nurture steps gone through: those whose email was queued, those skipped by reason."""

    emailed: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, counts: Iterable[tuple[str | None, int]]) -> NurtureSends:
        """From ``(skipped reason or None, steps)`` pairs, as the audit groups them."""
        emailed = 0
        skipped: dict[str, int] = {}
        for reason, count in counts:
            if reason is None:
                emailed += count
            else:
                skipped[reason] = skipped.get(reason, 0) + count
        return cls(emailed, dict(sorted(skipped.items())))

    @property
    def skipped_steps(self) -> int:
        return sum(self.skipped.values())

    @property
    def steps(self) -> int:
        return self.emailed + self.skipped_steps

    def text(self) -> str:
        """``85 (0 emails queued, 85 skipped: no email address)``."""
        if not self.skipped:
            return f"{self.steps} ({self.emailed} emails queued)"
        why = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items())
        if len(self.skipped) == 1:
            why = next(iter(self.skipped))
        return f"{self.steps} ({self.emailed} emails queued, {self.skipped_steps} skipped: {why})"

    def document(self) -> dict[str, Any]:
        """``{"steps": 85, "emails_queued": 0, "skipped": {"no email address": 85}}``."""
        return {"steps": self.steps, "emails_queued": self.emailed, "skipped": dict(self.skipped)}


def nurture_sends(
    connection: Connection,
    *,
    after_id: int,
    since: datetime | None = None,
    until: datetime | None = None,
) -> NurtureSends:
    """The ``nurture_step`` audit rows after the row ``after_id`` (at ``since`` or later and
    before ``until``, when given), counted by the database, by skipped reason."""
    reason = AttributeValue(AUDIT.c.params, "skipped", "string")
    query = (
        select(reason, func.count())
        .where(AUDIT.c.action == "nurture_step", AUDIT.c.id > after_id)
        .group_by(reason)
    )
    if since is not None:
        query = query.where(AUDIT.c.at >= since)
    if until is not None:
        query = query.where(AUDIT.c.at < until)
    return NurtureSends.of((found, int(count)) for found, count in connection.execute(query))


def last_audit_id(connection: Connection) -> int:
    """The newest audit row's id (0 for none): what a run counts its own rows after."""
    return int(connection.execute(select(func.max(AUDIT.c.id))).scalar_one() or 0)
