"""One evaluation batch of a rule: what its firings read, loaded once, and what they write.

The batch's matched leads and its reps are plain rows (:mod:`leadflow.engine.plain_rows`),
its deals ORM objects detached from the session: a firing changes them in memory, and what changed is written for the whole batch by
:mod:`leadflow.engine.batch_writes`. Everything a firing would otherwise ask the database
once per lead (the reps, each rep's open MQLs, where round robin stands, a lead's active
enrollments, its recent marketing email) is read here once for the batch and kept up to date
in memory as firings succeed.

A firing stages its writes and its changes to this shared state; they join the batch only if
the whole firing succeeds (:meth:`FiringBatch.commit`), so a firing that fails half-way leaves
nothing behind, as a savepoint would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from leadflow.engine.assignment import Member, locked_rotation, open_mqls, pool_members
from leadflow.engine.batch_writes import BatchWrites
from leadflow.engine.plain_rows import all_reps, leads_by_id
from leadflow.mail.enqueue import recent_marketing
from leadflow.settings import Settings
from leadflow.store.id_ranges import among, chunks
from leadflow.store.models import AssignmentRotation, Deal, Lead, Rep
from leadflow.store.tables import NURTURE, ROTATIONS

LEAD_COLUMNS = (
    "stage",
    "stage_entered_at",
    "owner_id",
    "previous_owner_id",
    "score",
    "score_adjustment",
)
"""What an action may change on a lead."""
DEAL_COLUMNS = ("outcome", "closed_at", "recycle_reason", "updated_at")
"""What an action may change on a deal."""


@dataclass
class Enrollment:
    id: int
    stream: str


@dataclass
class FiringBatch:
    session: Session
    settings: Settings
    now: datetime
    leads: dict[int, Lead]
    """The batch's leads (for a deal rule, the deals' leads), plain rows, by id."""
    reps: dict[int, Rep]
    roster: BatchRoster
    per_firing: list[BatchWrites] = field(default_factory=list)
    """What the batch's successful firings write, firing by firing."""
    staged: BatchWrites = field(default_factory=BatchWrites)
    """What the firing in progress writes, if it succeeds."""
    _enrollments: dict[int, list[Enrollment]] | None = None
    _recent_marketing: dict[int, int] | None = None
    _staged_enrollments: dict[int, list[Enrollment]] = field(default_factory=dict)
    _staged_marketing: dict[int, int] = field(default_factory=dict)
    _before: tuple[Any, ...] | None = None
    """The firing's lead's changeable columns as they were when it began."""
    _deal_before: tuple[Any, ...] | None = None

    @classmethod
    def load(
        cls,
        session: Session,
        settings: Settings,
        now: datetime,
        leads: Sequence[Lead],
        deals: Sequence[Deal] = (),
    ) -> FiringBatch:
        """The batch for ``leads`` (plain rows, :mod:`leadflow.engine.plain_rows`), or ``deals``
        and their leads, which are detached from ``session`` here: from now on only the batch's
        writes reach the store."""
        session.expunge_all()
        by_id = {lead.id or 0: lead for lead in leads}
        wanted = {deal.lead_id for deal in deals if deal.lead_id is not None} - set(by_id)
        # A deal's lead that entered its current stage after now (evaluated as of a past
        # instant: a lead imported since) is left out, as a lead rule leaves it out: its row is
        # not what it was then, and a stage set at now would precede its latest entry. The
        # deal's lead actions are then skipped and audited (``set_stage_skipped``).
        for lead in leads_by_id(session, wanted, in_stage_at=now):
            by_id[lead.id or 0] = lead
        reps = {rep.id or 0: rep for rep in all_reps(session)}
        return cls(session, settings, now, by_id, reps, BatchRoster(session, settings, now, reps))

    # --- reads -----------------------------------------------------------------------------

    def rep(self, rep_id: int | None) -> Rep | None:
        return self.reps.get(rep_id) if rep_id is not None else None

    def rep_named(self, external_id: str) -> Rep | None:
        return next((rep for rep in self.reps.values() if rep.external_id == external_id), None)

    def rep_external_id(self, rep_id: int | None) -> str | None:
        rep = self.rep(rep_id)
        return rep.external_id if rep is not None else None

    def active_enrollments(self, lead_id: int) -> list[Enrollment]:
        """The lead's active enrollments, as this batch has left them so far."""
        if lead_id in self._staged_enrollments:
            return self._staged_enrollments[lead_id]
        if self._enrollments is None:
            self._enrollments = defaultdict(list)
            for chunk in chunks(list(self.leads)):
                query = select(NURTURE.c.id, NURTURE.c.lead_id, NURTURE.c.stream).where(
                    among(NURTURE.c.lead_id, chunk, self.session.get_bind().dialect.name),
                    NURTURE.c.status == "active",
                )
                for row in self.session.execute(query):
                    self._enrollments[row.lead_id].append(Enrollment(row.id, row.stream))
        return list(self._enrollments.get(lead_id, []))

    def stage_enrollments(self, lead_id: int, enrollments: list[Enrollment]) -> None:
        self._staged_enrollments[lead_id] = enrollments

    def recent_marketing(self, lead_id: int) -> int:
        """The lead's marketing email inside the frequency cap's window, this batch's too."""
        if self._recent_marketing is None:
            self._recent_marketing = recent_marketing(
                self.session, list(self.leads), self.now, self.settings
            )
        return self._recent_marketing.get(lead_id, 0) + self._staged_marketing.get(lead_id, 0)

    def count_marketing(self, lead_id: int) -> None:
        self._staged_marketing[lead_id] = self._staged_marketing.get(lead_id, 0) + 1

    # --- one firing ------------------------------------------------------------------------

    def begin(self, lead: Lead | None, deal: Deal | None) -> None:
        """Start staging one firing on ``lead`` (and ``deal``)."""
        self.staged = BatchWrites()
        self._staged_enrollments = {}
        self._staged_marketing = {}
        self._before = None if lead is None else _values(lead, LEAD_COLUMNS)
        self._deal_before = None if deal is None else _values(deal, DEAL_COLUMNS)
        self.roster.begin()

    def commit(self, lead: Lead | None, deal: Deal | None) -> None:
        """The firing succeeded: its writes and its changes join the batch."""
        if lead is not None:
            before = self._before
            assert before is not None  # begin() saw this lead
            changed = _changed(lead, LEAD_COLUMNS, before)
            if changed:
                self.staged.lead_changes[lead.id or 0] = changed
            self.roster.moved(before, _values(lead, LEAD_COLUMNS))
        if deal is not None:
            assert self._deal_before is not None  # begin() saw this deal
            changed = _changed(deal, DEAL_COLUMNS, self._deal_before)
            if changed:
                self.staged.deal_changes[deal.id or 0] = changed
        self.per_firing.append(self.staged)
        if self._enrollments is not None:
            self._enrollments.update(self._staged_enrollments)
        if self._recent_marketing is not None:
            for lead_id, count in self._staged_marketing.items():
                self._recent_marketing[lead_id] = self._recent_marketing.get(lead_id, 0) + count
        self.roster.commit()  # the next firing's begin() starts its own staged writes

    def discard(self, lead: Lead | None, deal: Deal | None) -> None:
        """The firing failed: nothing of it is written, the subject is as it was."""
        if lead is not None and self._before is not None:
            for name, value in zip(LEAD_COLUMNS, self._before, strict=True):
                setattr(lead, name, value)
        if deal is not None and self._deal_before is not None:
            for name, value in zip(DEAL_COLUMNS, self._deal_before, strict=True):
                setattr(deal, name, value)
        self.staged = BatchWrites()
        self.roster.begin()


_READERS: dict[tuple[str, ...], attrgetter[tuple[Any, ...]]] = {
    columns: attrgetter(*columns) for columns in (LEAD_COLUMNS, DEAL_COLUMNS)
}
"""Each set of changeable columns read in one call (twice per firing)."""


def _values(row: Lead | Deal, columns: tuple[str, ...]) -> tuple[Any, ...]:
    return _READERS[columns](row)


def _changed(row: Lead | Deal, columns: tuple[str, ...], before: tuple[Any, ...]) -> dict[str, Any]:
    after = _values(row, columns)
    if after == before:
        return {}
    return {name: new for name, old, new in zip(columns, before, after, strict=True) if new != old}


class BatchRoster:
    """The reps for a batch's assignments: open MQLs counted once, then kept in memory.

    Round robin reads each pool's position once (locked on PostgreSQL until the batch commits)
    and writes the pools' last picks with the batch.
    """

    def __init__(
        self, session: Session, settings: Settings, now: datetime, reps: Mapping[int, Rep]
    ) -> None:
        self.session = session
        self.settings = settings
        self.now = now
        self._pools = pool_members(reps.values())
        self._open: dict[int, int] | None = None
        self._picks: dict[str, int | None] = {}
        self._stored: set[str] = set()
        self._staged_picks: dict[str, int] = {}
        self._changed: set[str] = set()

    def members(self, pool: str) -> list[Member]:
        return self._pools.get(pool, [])

    def pools(self) -> Mapping[str, list[Member]]:
        return self._pools

    def open_mqls(self, rep_ids: list[int]) -> Mapping[int, int]:
        if self._open is None:
            self._open = open_mqls(self.session, None, self.settings)
        return self._open

    def last_pick(self, pool: str) -> int | None:
        if pool in self._staged_picks:
            return self._staged_picks[pool]
        if pool not in self._picks:
            rotation = locked_rotation(self.session, pool)
            self._picks[pool] = rotation.last_rep_id if rotation is not None else None
            if rotation is not None:
                self._stored.add(pool)
            self.session.expunge_all()
        return self._picks[pool]

    def picked(self, pool: str, rep_id: int) -> None:
        self._staged_picks[pool] = rep_id

    def begin(self) -> None:
        self._staged_picks = {}

    def moved(self, before: tuple[Any, ...], after: tuple[Any, ...]) -> None:
        """A lead's stage or owner changed: the owners' open MQL counts follow."""
        if self._open is None:
            return
        mql = self.settings.stages.mql
        stage = LEAD_COLUMNS.index("stage")
        owner = LEAD_COLUMNS.index("owner_id")
        if before[stage] == mql and before[owner] is not None:
            self._open[before[owner]] = self._open.get(before[owner], 0) - 1
        if after[stage] == mql and after[owner] is not None:
            self._open[after[owner]] = self._open.get(after[owner], 0) + 1

    def commit(self) -> None:
        self._picks.update(self._staged_picks)
        self._changed |= set(self._staged_picks)
        self._staged_picks = {}

    def write(self) -> None:
        """Store the last pick of every pool this batch assigned in by round robin."""
        for pool in sorted(self._changed):
            last = self._picks[pool]
            if pool in self._stored:
                self.session.execute(
                    update(ROTATIONS)
                    .where(ROTATIONS.c.pool == pool)
                    .values(last_rep_id=last, updated_at=self.now)
                )
            else:
                self.session.add(
                    AssignmentRotation(pool=pool, last_rep_id=last, updated_at=self.now)
                )
                self.session.flush()
                self._stored.add(pool)
