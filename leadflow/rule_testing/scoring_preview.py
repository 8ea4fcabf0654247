"""What a change of the scoring model would do to every lead's score, computed without writing.

``leadflow plan`` compares two rule sets. When their scoring models differ (one added,
removed, changed, enabled or disabled), each lead's score is computed under both sides in the
database, by SELECTs that write nothing, as the rescoring pass would compute it (fit +
engagement + the lead's adjustment, and the grade); a side without an *enabled* model keeps
the stored score, as leadflow would. The preview reports how many scores move and by how much, and for every
enabled lead rule that reads ``score`` (the MQL rule), which leads would newly match and which
would stop matching: the rule's own WHERE, evaluated against the leads with their ``score``
replaced by each side's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from typing import cast as typed

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    Subquery,
    Table,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from leadflow.engine.evaluation import rule_scope
from leadflow.engine.sales_cycle import averages_for
from leadflow.rule_language.conditions import (
    EvaluationContext,
    cycle_conditions,
    referenced_fields,
)
from leadflow.rule_language.fields import Subject
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.sql import grade_expression, scored_by_model
from leadflow.store.tables import LEADS

ScoringStatus = Literal["added", "removed", "changed", "enabled", "disabled"]

CHANGE_BANDS: tuple[tuple[str, int | None, int | None], ...] = (
    ("-20 or less", None, -20),
    ("-19 to -10", -19, -10),
    ("-9 to -1", -9, -1),
    ("+1 to +9", 1, 9),
    ("+10 to +19", 10, 19),
    ("+20 or more", 20, None),
)
"""How a changed score's move is counted: (label, lowest, highest), both ends included."""


@dataclass(frozen=True)
class LeadMove:
    """One lead a score rule would treat differently: ``+`` newly matching, ``-`` no longer."""

    external_id: str
    sign: Literal["+", "-"]
    old_score: int
    new_score: int
    grade: str | None
    """The grade under the working side (the stored one when that side has no enabled model)."""


@dataclass(frozen=True)
class RuleCrossing:
    rule_id: str
    newly: int
    no_longer: int
    moves: tuple[LeadMove, ...]
    """Every lead that crosses, by external id."""


@dataclass(frozen=True)
class ScoringPreview:
    status: ScoringStatus
    base_active: bool
    working_active: bool
    leads: int
    changed: int
    """Leads whose score differs between the two sides."""
    bands: tuple[tuple[str, int], ...]
    """(band label, leads) over CHANGE_BANDS, for the changed leads."""
    lowest: int | None
    highest: int | None
    """The largest fall and the largest rise (signed); None when no score falls (rises)."""
    rules: tuple[RuleCrossing, ...]


def scoring_status(base: RuleSet, working: RuleSet) -> ScoringStatus | None:
    """How the scoring model differs between the two sets; None when it does not."""
    old, new = base.scoring, working.scoring
    if old is None and new is None:
        return None
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if old.enabled != new.enabled:
        return "enabled" if new.enabled else "disabled"
    return None if old.digest == new.digest else "changed"


def scored_leads(model: ScoringModel | None, now: datetime, dialect: str) -> Select[Any]:
    """(id, score, fit, engagement, grade) for every lead under ``model`` as of ``now``; the
    stored values without one (a side whose model is absent or disabled keeps the CRM's)."""
    if model is None:
        return select(
            LEADS.c.id.label("id"),
            LEADS.c.score.label("score"),
            LEADS.c.score_fit.label("fit"),
            LEADS.c.score_engagement.label("engagement"),
            LEADS.c.score_grade.label("grade"),
        )
    lead = scored_by_model(model, now, dialect).offset(0).subquery("modelled")
    return select(
        lead.c.id.label("id"),
        (lead.c.fit + lead.c.engagement + lead.c.score_adjustment).label("score"),
        lead.c.fit.label("fit"),
        lead.c.engagement.label("engagement"),
        grade_expression(model.grades, lead.c.fit, lead.c.engagement).label("grade"),
    )


def preview_scoring(
    engine: Engine, base: RuleSet, working: RuleSet, now: datetime
) -> ScoringPreview | None:
    """Every lead's score under both sides' models, compared; None when the models agree.

    Two statements, each computing both sides' scores once: the distribution of the change,
    then the leads some score rule would treat differently (every rule's condition evaluated
    twice in the same row, once per side's score).
    """
    status = scoring_status(base, working)
    if status is None:
        return None
    old_model, new_model = base.active_scoring, working.active_scoring
    score_rules = [
        rule
        for rule in working.rules
        if rule.enabled and rule.subject is Subject.LEAD and _reads_score(rule)
    ]
    with engine.connect() as connection:
        dialect = connection.dialect.name
        old = scored_leads(old_model, now, dialect).subquery("old_scores")
        new = scored_leads(new_model, now, dialect).subquery("new_scores")
        both = (
            select(
                old.c.id.label("id"),
                old.c.score.label("old_score"),
                new.c.score.label("new_score"),
                new.c.grade.label("new_grade"),
            )
            .join_from(old, new, new.c.id == old.c.id)
            .subquery("both_scores")
        )
        leads, changed, lowest, highest, bands = _distribution(connection, both)
        rules = _crossings(connection, score_rules, both, now)
    return ScoringPreview(
        status=status,
        base_active=old_model is not None,
        working_active=new_model is not None,
        leads=leads,
        changed=changed,
        bands=bands,
        lowest=lowest,
        highest=highest,
        rules=rules,
    )


def _reads_score(rule: Rule) -> bool:
    return any(spec.name == "score" for spec in referenced_fields(rule.condition))


def _distribution(
    connection: Connection, both: Subquery
) -> tuple[int, int, int | None, int | None, tuple[tuple[str, int], ...]]:
    delta = both.c.new_score - both.c.old_score
    in_bands = [
        func.count().filter(and_(delta != 0, *_within(delta, low, high)))
        for _label, low, high in CHANGE_BANDS
    ]
    totals = connection.execute(
        select(
            func.count(),
            func.count().filter(delta != 0),
            func.min(case((delta < 0, delta))),
            func.max(case((delta > 0, delta))),
            *in_bands,
        ).select_from(both)
    ).one()
    bands = tuple(
        (label, int(count))
        for (label, _low, _high), count in zip(CHANGE_BANDS, totals[4:], strict=True)
    )
    return int(totals[0]), int(totals[1]), totals[2], totals[3], bands


def _within(delta: Any, low: int | None, high: int | None) -> list[Any]:
    clauses = []
    if low is not None:
        clauses.append(delta >= low)
    if high is not None:
        clauses.append(delta <= high)
    return clauses


class _LeadColumns:
    """The lead table's columns, with ``score`` replaced by one side's score."""

    def __init__(self, score: ColumnElement[Any]) -> None:
        self._score = score

    def __getitem__(self, name: str) -> ColumnElement[Any]:
        return self._score if name == "score" else LEADS.c[name]

    def __getattr__(self, name: str) -> ColumnElement[Any]:
        return self[name]


class _LeadsScoredBy:
    """The leads as a rule's condition reads them (``table.c``), scored by one side."""

    def __init__(self, score: ColumnElement[Any]) -> None:
        self.c = _LeadColumns(score)


def _crossings(
    connection: Connection, rules: list[Rule], both: Subquery, now: datetime
) -> tuple[RuleCrossing, ...]:
    """For each rule, the leads its WHERE matches under one side's scores and not the other's."""
    if not rules:
        return ()
    matches = []
    for rule in rules:
        with Session(bind=connection) as session:
            context = EvaluationContext(
                now, averages_for(session, list(cycle_conditions(rule.condition)), now)
            )
        for side in (both.c.old_score, both.c.new_score):
            leads = typed(Table, _LeadsScoredBy(side))
            where = and_(to_where(rule.condition, leads, context), rule_scope(rule, leads, now))
            matches.append(case((where, literal(1)), else_=literal(0)))
    pairs = [(matches[index], matches[index + 1]) for index in range(0, len(matches), 2)]
    rows = connection.execute(
        select(
            LEADS.c.external_id,
            both.c.old_score,
            both.c.new_score,
            both.c.new_grade,
            *(value for pair in pairs for value in pair),
        )
        .join_from(LEADS, both, both.c.id == LEADS.c.id)
        .where(or_(*(old != new for old, new in pairs)))
        .order_by(LEADS.c.external_id)
    ).all()
    crossings = []
    for index, rule in enumerate(rules):
        moves = tuple(
            LeadMove(
                row.external_id,
                "+" if row[4 + 2 * index + 1] else "-",
                row.old_score,
                row.new_score,
                row.new_grade,
            )
            for row in rows
            if row[4 + 2 * index] != row[4 + 2 * index + 1]
        )
        crossings.append(
            RuleCrossing(
                rule_id=rule.id,
                newly=sum(1 for move in moves if move.sign == "+"),
                no_longer=sum(1 for move in moves if move.sign == "-"),
                moves=moves,
            )
        )
    return tuple(crossings)
