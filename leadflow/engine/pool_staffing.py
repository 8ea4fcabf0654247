"""Which pools have reps, and what to say when a rule routes leads to one that has none.

Pool names are matched exactly (decided: explicit names, a clear warning instead of guessing).
A pool no active rep is in queues every MQL routed there, each with an ``assignment_queued``
audit row and no rep emailed; these messages name the pools that do have reps and, where one
differs only by case (``west`` and an import's ``West``), suggest it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from leadflow.rule_language.actions import Assign
from leadflow.rule_language.model import Rule

NAMED_POOLS = 20
"""At most this many pools with reps are named in one message; the rest are counted."""


class Member(Protocol):
    """A rep of a pool, as far as staffing goes (:class:`~leadflow.engine.assignment.Member`)."""

    @property
    def active(self) -> bool: ...


def staffed_pools(pools: Mapping[str, Sequence[Member]]) -> list[str]:
    """The pools at least one active rep is in, sorted."""
    return sorted(name for name, members in pools.items() if any(m.active for m in members))


def routed_pools(action: Assign) -> list[str]:
    """Every pool ``action`` can give a lead to, in the order the rule names them."""
    named = [action.pool] if action.pool is not None else list(action.pools.values())
    if action.default_pool is not None:
        named.append(action.default_pool)
    return list(dict.fromkeys(named))


def unstaffed(pool: str, pools: Mapping[str, Sequence[Member]]) -> str:
    """``pool 'west' has no reps; did you mean 'West'?``: the pool and its case-only twin."""
    members = pools.get(pool, ())
    text = f"pool {pool!r} has {'no active reps' if members else 'no reps'}"
    twin = next(
        (
            name
            for name in staffed_pools(pools)
            if name != pool and name.casefold() == pool.casefold()
        ),
        None,
    )
    return f"{text}; did you mean {twin!r}?" if twin is not None else f"{text};"


def with_reps(pools: Mapping[str, Sequence[Member]]) -> str:
    """``pools with reps: Central, East, West`` (the first :data:`NAMED_POOLS`)."""
    names = staffed_pools(pools)
    if not names:
        return "pools with reps: none (import reps with a pools column)"
    shown = ", ".join(names[:NAMED_POOLS])
    more = f" and {len(names) - NAMED_POOLS} more" if len(names) > NAMED_POOLS else ""
    return f"pools with reps: {shown}{more}"


def unstaffed_reason(pool: str, pools: Mapping[str, Sequence[Member]]) -> str:
    """Why a lead routed to ``pool`` waits: the audit's ``assignment_queued`` reason."""
    return f"{unstaffed(pool, pools)} {with_reps(pools)}"


def unstaffed_pools_note(rule: Rule, pools: Mapping[str, Sequence[Member]]) -> str | None:
    """What to say beside a run of ``rule`` when one of the pools it assigns from has no
    active rep: every lead routed there is queued, unassigned and unannounced."""
    staffed = set(staffed_pools(pools))
    missing = [
        pool
        for action in _assignments(rule.actions)
        for pool in routed_pools(action)
        if pool not in staffed
    ]
    if not missing:
        return None
    parts = " ".join(unstaffed(pool, pools) for pool in dict.fromkeys(missing))
    return f"{parts} {with_reps(pools)} (leads routed there wait unassigned)"


def _assignments(actions: Iterable[object]) -> list[Assign]:
    return [action for action in actions if isinstance(action, Assign)]


def spaced_pool_notes(spaced: Mapping[str, int], rules: Iterable[Rule]) -> list[tuple[int, str]]:
    """For a reps import: each pool name with a space or a comma that no rule routes to, with
    the line naming it first and a hint. ``inbound west`` is one pool (``;`` separates pools):
    likely ``inbound; west`` written with the wrong separator, and its reps would then serve
    no rule while the pools the rules name stay unstaffed."""
    routed = {
        pool
        for rule in rules
        for action in _assignments(rule.actions)
        for pool in routed_pools(action)
    }
    notes: list[tuple[int, str]] = []
    for pool, line in spaced.items():
        if pool in routed:
            continue
        parts = pool.replace(",", " ").split()
        what = "a comma" if "," in pool else "a space"
        notes.append(
            (
                line,
                f"pool {pool!r} has {what} in its name and no rule routes leads to it: pools "
                f"are separated by ';' (did you mean {'; '.join(parts)!r}?); the rep was "
                f"imported into the one pool {pool!r}",
            )
        )
    return notes
