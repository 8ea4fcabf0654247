"""The active enrollments a rule set would end for want of their stream, counted before it runs.

A stream removed from the rules (or renamed without ``renamed_from:`` naming its old id: to
leadflow a new id is a new stream) ends every
active enrollment in it at its next due step, ``exited`` with ``stream no longer defined``; a
stream shortened below an enrollment's next step ends it ``completed`` with ``stream
shortened``. :mod:`leadflow.engine.nurture` does that; this module says beforehand how many
leads it will be, for ``leadflow plan``, the daemon's reload and ``leadflow check --store``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Connection, and_, func, or_, select

from leadflow.rule_language.model import NurtureStream
from leadflow.store.tables import LEADS, NURTURE

STREAM_GONE = "stream no longer defined"
"""The exit reason of an enrollment whose stream the running rule set no longer has."""
STREAM_SHORTENED = "stream shortened"
"""The completion reason of an enrollment whose next step the stream no longer has."""
TO_KEEP_THEM = (
    "to keep them, keep the stream's id and steps, or give the old id in the new stream's "
    "renamed_from"
)
"""What a warning of leavers advises."""


@dataclass(frozen=True)
class Leavers:
    """The leads of one stream whose active enrollment a rule set would end."""

    stream: str
    leads: int
    reason: str
    """:data:`STREAM_GONE` (they exit) or :data:`STREAM_SHORTENED` (they complete)."""
    steps: tuple[int, ...] = field(default=(), compare=False)
    """The next steps (from 0) of the enrollments counted: which ones :func:`leaving_leads`
    reads."""

    def describe(self) -> str:
        """``stream welcome: 3 leads enrolled now will exit (stream no longer defined)``."""
        return f"stream {self.stream}: {self.consequence()}"

    def consequence(self) -> str:
        """``3 leads enrolled now will exit (stream no longer defined)``."""
        leads = f"{self.leads} lead{'' if self.leads == 1 else 's'}"
        if self.reason == STREAM_GONE:
            return f"{leads} enrolled now will exit ({STREAM_GONE})"
        return (
            f"{leads} enrolled now will complete without their remaining steps ({STREAM_SHORTENED})"
        )


def active_enrollments(connection: Connection) -> dict[str, dict[int, int]]:
    """stream -> next step (from 0) -> how many leads are actively enrolled there."""
    rows = connection.execute(
        select(NURTURE.c.stream, NURTURE.c.next_step, func.count(NURTURE.c.lead_id.distinct()))
        .where(NURTURE.c.status == "active")
        .group_by(NURTURE.c.stream, NURTURE.c.next_step)
    )
    found: dict[str, dict[int, int]] = defaultdict(dict)
    for stream, next_step, leads in rows:
        found[stream][int(next_step)] = int(leads)
    return dict(found)


def leavers(
    enrolled: Mapping[str, Mapping[int, int]],
    streams: Mapping[str, NurtureStream],
    *,
    base: Mapping[str, NurtureStream] | None = None,
) -> list[Leavers]:
    """Per stream, the leads in ``enrolled`` (:func:`active_enrollments`) whose enrollment a
    rule set with ``streams`` would end. With ``base`` (a plan's rules at its base), only what
    the change from ``base`` does: an enrollment the base would end as well is not counted."""
    streams, base = _by_any_id(streams), None if base is None else _by_any_id(base)
    found = []
    for stream_id, steps in sorted(enrolled.items()):
        before = base.get(stream_id) if base is not None else None
        if base is not None and before is None:
            continue  # not the change's doing
        stream = streams.get(stream_id)
        if stream is None:
            found.append(Leavers(stream_id, sum(steps.values()), STREAM_GONE, tuple(sorted(steps))))
            continue
        until = len(before.steps) if before is not None else None
        cut = {
            step: leads
            for step, leads in steps.items()
            if step >= len(stream.steps) and (until is None or step < until)
        }
        if cut:
            found.append(
                Leavers(stream_id, sum(cut.values()), STREAM_SHORTENED, tuple(sorted(cut)))
            )
    return found


def leaving_leads(connection: Connection, found: Sequence[Leavers]) -> frozenset[str]:
    """The external ids of the leads counted in ``found`` (:func:`leavers`)."""
    if not found:
        return frozenset()
    which = or_(
        *(
            and_(NURTURE.c.stream == leaving.stream, NURTURE.c.next_step.in_(leaving.steps))
            for leaving in found
        )
    )
    rows = connection.execute(
        select(LEADS.c.external_id)
        .join(NURTURE, NURTURE.c.lead_id == LEADS.c.id)
        .where(NURTURE.c.status == "active", which)
        .distinct()
    )
    return frozenset(str(external_id) for (external_id,) in rows)


def _by_any_id(streams: Mapping[str, NurtureStream]) -> dict[str, NurtureStream]:
    """Each stream under its id and under every id it was renamed from: an enrollment made
    under an old id goes on in the renamed stream."""
    renamed = {old: stream for stream in streams.values() for old in stream.renamed_from}
    return renamed | dict(streams)
