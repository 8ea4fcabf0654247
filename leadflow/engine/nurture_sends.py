"""What nurture's steps did with their emails, read back from the audit: queued or skipped.

A step moves its lead on whether or not an email went out: a lead without an email address, or
one the frequency cap holds back, goes through the stream unmailed. The ``nurture_step`` audit
row of such a step carries ``skipped`` (the reason); counting steps alone called them "sent".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from leadflow.store.tables import AUDIT


@dataclass(frozen=True)
class NurtureSends:
    """Nurture steps gone through: those whose email was queued, those skipped by reason."""

    emailed: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, params: Iterable[Mapping[str, Any]]) -> NurtureSends:
        """The counts of ``nurture_step`` audit rows' params."""
        emailed = 0
        skipped: Counter[str] = Counter()
        for row in params:
            reason = row.get("skipped")
            if reason is None:
                emailed += 1
            else:
                skipped[str(reason)] += 1
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
    before ``until``, when given), counted."""
    query = select(AUDIT.c.params).where(AUDIT.c.action == "nurture_step", AUDIT.c.id > after_id)
    if since is not None:
        query = query.where(AUDIT.c.at >= since)
    if until is not None:
        query = query.where(AUDIT.c.at < until)
    return NurtureSends.of(connection.execute(query).scalars())


def last_audit_id(connection: Connection) -> int:
    """The newest audit row's id (0 for none): what a run counts its own rows after."""
    return int(connection.execute(select(func.max(AUDIT.c.id))).scalar_one() or 0)
