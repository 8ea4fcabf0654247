"""Names a rule test uses that must be known: declared attributes, given reps, pools.

A typo in a given lead's attribute (``regoin``) or in an expected rep (``w9``) would otherwise
run, and fail with a diff whose actual side is empty, with nothing to say why. The test file is
refused instead, each name at its FILE:LINE:COL with the closest known name, as ``leadflow
check`` refuses a rule's unknown field and ``leadflow import`` an unknown column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from leadflow.errors import Problem
from leadflow.rule_language.actions import Assign
from leadflow.rule_language.model import Located, RuleSet
from leadflow.rule_testing.given import GivenBatch, GivenRep
from leadflow.settings import Settings
from leadflow.suggestions import did_you_mean

NameKind = Literal["rep", "pool"]

NAMED_FIELDS: Mapping[tuple[str, str], NameKind] = {
    ("assigned", "rep"): "rep",
    ("assigned", "pool"): "pool",
    ("queued", "pool"): "pool",
    ("reassigned", "from"): "rep",
    ("reassigned", "to"): "rep",
}
"""The fields of expected actions that name a rep (by external id) or a pool."""


@dataclass(frozen=True)
class ExpectedName:
    """A rep or pool an expected action names, and where."""

    kind: NameKind
    name: str
    label: str
    """How the message names the field: ``assigned: rep``."""
    where: Located

    def problem(self, known: Iterable[str], whose: str) -> Problem:
        choices = sorted(set(known))
        listed = f"; expected one of {', '.join(choices)}" if choices else ""
        hint = did_you_mean(self.name, choices, prefix="; ", ignore_case=True) or listed
        message = f"{self.label}: no {self.kind} {self.name!r} {whose}{hint}"
        return Problem(self.where.file, self.where.line, self.where.column, message)


def undeclared_attributes(
    kind: str, attributes: Mapping[str, Any], settings: Settings
) -> list[tuple[str, str]]:
    """(attribute, message) for each attribute of a given lead or deal not declared in config."""
    if kind not in ("leads", "deals"):
        return []
    declared = settings.attributes.leads if kind == "leads" else settings.attributes.deals
    found = []
    for name in attributes:
        if str(name) in declared:
            continue
        otherwise = f"declared: {', '.join(declared)}" if declared else "none are declared"
        hint = did_you_mean(str(name), declared, otherwise=otherwise, ignore_case=True)
        message = f"attributes: {str(name)!r} is not declared under attributes.{kind}; {hint}"
        found.append((str(name), message))
    return found


@dataclass
class GivenReps:
    """The reps (and their pools) a case has been given so far; None when a file gave some."""

    reps: set[str] | None
    pools: set[str]

    @classmethod
    def none(cls) -> GivenReps:
        return cls(set(), set())

    def add(self, batches: Iterable[GivenBatch]) -> None:
        for batch in batches:
            if batch.kind != "reps":
                continue
            if batch.source is not None:
                self.reps = None  # their names are in a file the importer reads: not checked
                continue
            for item in batch.records:
                rep = item.record
                assert isinstance(rep, GivenRep)
                if self.reps is not None:
                    self.reps.add(rep.external_id)
                self.pools.update(rep.pools)

    def unknown_reps(self, names: Iterable[ExpectedName]) -> list[Problem]:
        if self.reps is None:
            return []
        known = self.reps
        return [
            name.problem(known, "among the given reps")
            for name in names
            if name.kind == "rep" and name.name not in known
        ]

    def unknown_pools(self, names: Iterable[ExpectedName]) -> list[PendingPool]:
        """Pools no given rep is in: the rules may still name them (a lead queued for a pool
        nobody works in), so they are checked once the rules are loaded."""
        if self.reps is None:
            return []
        given = frozenset(self.pools)
        return [
            PendingPool(name, given)
            for name in names
            if name.kind == "pool" and name.name not in given
        ]


@dataclass(frozen=True)
class PendingPool:
    """An expected pool no given rep is in, and the pools the given reps are in."""

    name: ExpectedName
    given: frozenset[str]


def rule_pools(rule_set: RuleSet) -> set[str]:
    """Every pool the rules assign to."""
    found: set[str] = set()
    for rule in rule_set.rules:
        for action in rule.actions:
            if isinstance(action, Assign):
                found.update(
                    name
                    for name in (action.pool, action.default_pool, *action.pools.values())
                    if name is not None
                )
    return found


def unknown_pools(pending: Iterable[PendingPool], rule_set: RuleSet) -> list[Problem]:
    """Problems for the pools neither a given rep nor a rule names."""
    pools = rule_pools(rule_set)
    return [
        item.name.problem(pools | item.given, "in the rules or among the given reps' pools")
        for item in pending
        if item.name.name not in pools
    ]
