"""The actions a rule test talks about: one line each, compared field by field.

An action is a kind (``assigned``, ``escalated``, ``email``...) and named values, written in a
test file as ``- assigned: {lead: L1, rep: r1}``. Each kind has *key* fields that an expected
action must give, and *detail* fields compared only when the test gives them (a test about
assignment need not spell out the round-robin reason). ``email`` always compares
``suppressed``: a suppressed email is not the same thing as a sent one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

from leadflow.rule_testing.written_times import WrittenTime, plain

ActionValue = str | None


@dataclass(frozen=True)
class ActionKind:
    name: str
    keys: tuple[str, ...]
    details: tuple[str, ...] = ()
    always: tuple[str, ...] = ()
    """Fields always compared, absent meaning ``null`` (email: ``suppressed``)."""

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field, in the order a line shows them (subject first, reasons last)."""
        return tuple(sorted(self.keys + self.always + self.details, key=_ORDER.index))


_ORDER = (
    "action", "lead", "deal", "sla", "level", "rep", "from", "to", "subject", "suppressed",
    "pool", "stream", "step", "outcome", "due", "how", "reason",
)  # fmt: skip


KINDS: Mapping[str, ActionKind] = {
    kind.name: kind
    for kind in (
        ActionKind("assigned", ("lead", "rep"), ("pool", "how")),
        ActionKind("queued", ("lead", "pool"), ("reason",)),
        ActionKind("stage_changed", ("lead", "to"), ("from",)),
        ActionKind("score_changed", ("lead", "to"), ("from",)),
        ActionKind("sla_started", ("lead", "sla"), ("due",)),
        ActionKind("sla_not_started", ("lead", "sla"), ("reason",)),
        ActionKind("sla_met", ("lead", "sla"), ("reason",)),
        ActionKind("sla_met_late", ("lead", "sla"), ("reason",)),
        ActionKind("sla_cancelled", ("lead", "sla"), ("reason",)),
        ActionKind("sla_breached", ("lead", "sla"), ("reason",)),
        ActionKind("escalated", ("lead", "level", "to"), ("sla",)),
        ActionKind("reassigned", ("lead", "to"), ("from", "sla")),
        ActionKind("reassign_failed", ("lead",), ("sla", "reason")),
        ActionKind("recycled", ("deal",), ("reason",)),
        ActionKind("deal_closed", ("deal", "outcome"), ("reason",)),
        ActionKind("enrolled", ("lead", "stream")),
        ActionKind("nurture_step", ("lead", "stream", "step")),
        ActionKind("nurture_exited", ("lead", "stream"), ("reason",)),
        ActionKind("nurture_completed", ("lead", "stream")),
        ActionKind("email", ("to", "subject"), always=("suppressed",)),
        ActionKind("email_skipped", ("lead",), ("to", "reason")),
        ActionKind("audit", ("action",), ("lead", "deal")),
    )
}
"""Every kind of action a step can expect, with its key and detail fields."""

TIME_FIELDS = frozenset({"due"})
_BARE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.@+/ -]*[A-Za-z0-9_.@/-])?$")
_LOOKS_TYPED = re.compile(r"^(?:true|false|null|~|yes|no|on|off)$", re.IGNORECASE)


def time_text(value: datetime) -> str:
    """A stored time as a test shows it: UTC, seconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def value_text(value: object) -> ActionValue:
    """Any value of an action as the text compared (numbers and names alike)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Action:
    """One action that happened, or is expected to; ``compared`` names the fields that count."""

    kind: str
    values: tuple[tuple[str, ActionValue], ...]
    compared: frozenset[str] = frozenset()
    written: tuple[tuple[str, WrittenTime], ...] = ()
    """An expected action's times as the test wrote them: shown so in a diff."""

    @classmethod
    def of(cls, kind: str, values: Mapping[str, object]) -> Action:
        """An actual action: every field of the kind, in the kind's order."""
        spec = KINDS[kind]
        shown = {
            name: _time_field(values.get(name))
            if name in TIME_FIELDS
            else value_text(values.get(name))
            for name in spec.fields
        }
        # Only key fields are shown as null; an empty detail or ``suppressed`` is left out.
        kept = tuple(
            (name, shown[name])
            for name in spec.fields
            if shown[name] is not None or name in spec.keys
        )
        return cls(kind, kept, frozenset(spec.fields))

    def get(self, name: str) -> ActionValue:
        return dict(self.values).get(name)

    def accepts(self, actual: Action) -> bool:
        """Whether ``actual`` is what this expected action describes."""
        if actual.kind != self.kind:
            return False
        mine = dict(self.values)
        return all(mine.get(name) == actual.get(name) for name in self.compared)

    def render(
        self, like: Action | None = None, forms: Mapping[str, WrittenTime] | None = None
    ) -> str:
        """One line of YAML, as a test file would write it; its times as this (expected)
        action wrote them, or, for an actual action, in the form ``like`` wrote them, else in
        ``forms`` (the step's: :func:`time_forms`)."""
        forms = {**(forms or {}), **dict(like.written if like is not None else ())}
        mine = dict(self.written)
        parts = []
        for name, value in self.values:
            if name in mine:
                text: str | None = mine[name].text
            elif name in forms:
                text = forms[name].show(value)
            else:
                parts.append(f"{name}: {_flow(value)}")
                continue
            parts.append(f"{name}: {text if text is not None and plain(text) else _flow(text)}")
        return f"{self.kind}: {{{', '.join(parts)}}}"


def _time_field(value: object) -> ActionValue:
    """The audit keeps times as ISO text with an offset; show them as every other time."""
    if isinstance(value, str):
        try:
            return time_text(datetime.fromisoformat(value))
        except ValueError:
            return value
    return value_text(value)


def _flow(value: ActionValue) -> str:
    if value is None:
        return "null"
    if _BARE.match(value) and not _LOOKS_TYPED.match(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def align(expected: list[Action], actual: list[Action]) -> tuple[list[Action], list[Action]]:
    """``actual`` reordered to follow ``expected``: matches in the expected order, then extras.

    Both lists are compared as multisets; aligning them keeps a diff down to the real
    differences instead of every line that moved.
    """
    remaining = list(actual)
    ordered: list[Action] = []
    for wanted in expected:
        found = next((item for item in remaining if wanted.accepts(item)), None)
        if found is not None:
            remaining.remove(found)
            ordered.append(wanted)
    return ordered, remaining


def matches(expected: list[Action], actual: list[Action]) -> bool:
    ordered, extra = align(expected, actual)
    return not extra and len(ordered) == len(expected)


def time_forms(expected: list[Action], zone: tzinfo) -> dict[str, WrittenTime]:
    """How an actual time is shown beside no expected one of its own (an unexpected action):
    as the step's expected actions wrote that field, the first of them; else as a test writes
    a time without an offset, in the test's calendar ``zone``. It was shown in UTC
    (``"2026-03-02T12:00:00Z"``) beside expected times written in Berlin's."""
    local = WrittenTime("", zone, with_offset=False, seconds=False)
    forms = dict.fromkeys(TIME_FIELDS, local)
    for item in reversed(expected):  # the first written wins
        forms.update(item.written)
    return forms


def diff_lines(expected: list[Action], actual: list[Action], zone: tzinfo = UTC) -> list[str]:
    """A unified diff of the expected and actual actions, each one line of YAML.

    An actual action that matches nothing is shown where an expected one of the same kind and
    subject went unmatched, so a wrong value reads as one changed line. Actual times are
    shown as the expected ones are written (:func:`time_forms`; ``zone``: the test's
    calendar).
    """
    import difflib

    forms = time_forms(expected, zone)

    ordered, extra = align(expected, actual)
    matched = list(ordered)
    want = [f"- {item.render()}" for item in expected]
    got: list[str] = []
    for item in expected:
        if matched and matched[0] is item:
            matched.pop(0)
            got.append(f"- {item.render()}")
            continue
        subject = item.values[0] if item.values else None
        near = next(
            (a for a in extra if a.kind == item.kind and (not a.values or a.values[0] == subject)),
            None,
        )
        if near is not None:
            extra.remove(near)
            got.append(f"- {near.render(like=item, forms=forms)}")
    got += [f"- {item.render(forms=forms)}" for item in extra]
    return list(
        difflib.unified_diff(want, got, fromfile="expected", tofile="actual", lineterm="", n=3)
    )
