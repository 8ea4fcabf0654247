"""``leadflow plan``: what a change to the rules would do, against the store as it is now.

The rules folder at a git revision (the base, e.g. ``main``) and the working folder are both
loaded and evaluated as dry runs against the same store at the same instant; the plan is the
difference, per rule: which leads and deals would be acted on that were not, which would no
longer be, and which would be acted on differently. Nothing is written to the store.

Each rule is evaluated against the store as it is: what one rule's actions would change for
another rule (an MQL no longer nurtured) is not simulated, as in ``leadflow run --dry-run``.

When the scoring model differs, every lead's score is computed under both sides (in the
database, without writing: :mod:`leadflow.rule_testing.scoring_preview`) and the plan shows
how the scores move and which leads would cross the lead rules that read ``score``.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, func, literal, select

from leadflow.engine.runtime import Runtime
from leadflow.engine.stream_leavers import (
    Leavers,
    active_enrollments,
    leavers,
    leaving_leads,
)
from leadflow.engine.tick import run_due_rules
from leadflow.errors import Problem, ProblemsError, UserInputError
from leadflow.rule_language.loader import RULE_FILE_SUFFIXES, load_rule_set
from leadflow.rule_language.model import RuleSet
from leadflow.rule_testing.plan_scoring import scoring_markdown, scoring_text
from leadflow.rule_testing.scoring_preview import ScoringPreview, preview_scoring
from leadflow.store.tables import ACTIVITIES, LEADS
from leadflow.store.types import UTCDateTime

GIT_TIMEOUT = 30
Status = Literal["added", "removed", "changed"]
StreamStatus = Literal["added", "removed", "changed", "renamed"]


@dataclass(frozen=True)
class SubjectChange:
    """One lead or deal the change treats differently: ``+`` newly, ``-`` no longer, ``~``."""

    subject: str
    """``lead L1`` or ``deal D7``."""
    sign: Literal["+", "-", "~"]


@dataclass(frozen=True)
class RulePlan:
    rule_id: str
    status: Status
    subject_kind: str
    base_actions: tuple[str, ...] | None
    working_actions: tuple[str, ...] | None
    base_count: int
    working_count: int
    changes: tuple[SubjectChange, ...]
    error: str | None = None

    def count(self, sign: str) -> int:
        return sum(1 for change in self.changes if change.sign == sign)


@dataclass(frozen=True)
class LeftOut:
    """What a plan as of ``now`` leaves out of the store as it is (a ``--now`` in the past)."""

    leads: int = 0
    """Leads whose current stage began after ``now`` (imported or moved since): no lead rule
    acts on them as of then (:func:`leadflow.engine.evaluation.rule_scope`), so they are in
    no rule's counts and cross no score rule; 0 when no lead rule or score rule is planned."""
    activities: int = 0
    """Activities of leads dated after ``now``: no score counts them then; 0 when the scoring
    model did not change."""


@dataclass(frozen=True)
class Plan:
    base_ref: str
    folder: str
    base_version: str
    working_version: str
    now: datetime
    rules: tuple[RulePlan, ...]
    unchanged_rules: int
    streams: tuple[tuple[str, StreamStatus], ...]
    renamed_from: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """A renamed stream's id -> its ids at the base (``renamed_from:``): listed once, as
    renamed, not as one stream removed and another added."""
    leavers: tuple[Leavers, ...] = ()
    """The leads enrolled now in a stream removed or shortened whose enrollments would end."""
    leaving_leads: frozenset[str] = frozenset()
    """Those leads (``lead L1``): they are treated differently too."""
    scoring: ScoringPreview | None = None
    """How a changed scoring model would move the scores; None when it did not change."""
    left_out: LeftOut = LeftOut()

    @property
    def leaving_by_stream(self) -> dict[str, Leavers]:
        return {leaving.stream: leaving for leaving in self.leavers}

    @property
    def affected(self) -> frozenset[str]:
        """Every lead and deal some rule would treat differently, score crossings included."""
        crossing = (
            {f"lead {move.external_id}" for rule in self.scoring.rules for move in rule.moves}
            if self.scoring is not None
            else set()
        )
        return (
            frozenset(change.subject for rule in self.rules for change in rule.changes)
            | crossing
            | self.leaving_leads
        )


def _git(folder: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(  # noqa: S603 (fixed argv, no shell)
            ["git", "-C", str(folder), *args],  # noqa: S607 (git from PATH is intended)
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        msg = f"cannot run git: {exc}"
        raise UserInputError(msg) from exc


def _git_text(folder: Path, *args: str, failure: str) -> str:
    result = _git(folder, *args)
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise UserInputError(f"{failure}" + (f" ({detail[0]})" if detail else ""))
    return result.stdout.decode(errors="replace").strip()


@contextmanager
def rules_at(folder: Path, ref: str) -> Iterator[tuple[Path, str]]:
    """The rules folder as it was at ``ref``, in a temporary folder; and its ``REF:path`` label.

    A folder that did not exist at ``ref`` is empty there: every rule is then added.
    """
    if not folder.is_dir():
        msg = f"--rules: {folder} is not a folder"
        raise UserInputError(msg)
    _git_text(
        folder,
        "rev-parse",
        "--show-toplevel",
        failure=f"{folder} is not in a git checkout; leadflow plan compares the rules with a git revision",
    )
    prefix = _git_text(folder, "rev-parse", "--show-prefix", failure="git rev-parse failed")
    _git_text(
        folder,
        "rev-parse",
        "--verify",
        "--quiet",
        f"{ref}^{{commit}}",
        failure=f"--base: unknown revision {ref!r}",
    )
    listing = _git(folder, "ls-tree", "-r", "-z", "--full-name", "--name-only", ref, "--", ".")
    names = [name for name in listing.stdout.decode().split("\0") if name]
    with tempfile.TemporaryDirectory(prefix="leadflow-plan-") as target:
        for name in names:
            relative = name.removeprefix(prefix)
            if not relative.lower().endswith(RULE_FILE_SUFFIXES):
                continue
            content = _git(folder, "show", f"{ref}:{name}")
            if content.returncode != 0:
                msg = f"cannot read {name} at {ref}: {content.stderr.decode(errors='replace').strip()}"
                raise UserInputError(msg)
            path = Path(target) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.stdout)
        yield Path(target), f"{ref}:{prefix}"


def load_base_rules(folder: Path, label: str, runtime: Runtime) -> RuleSet:
    """The base rule set; templates are not checked (the plan is about which subjects)."""
    try:
        return load_rule_set(folder, runtime.settings)
    except ProblemsError as exc:
        problems = [
            Problem(
                label + Path(p.file).relative_to(folder).as_posix(), p.line, p.column, p.message
            )
            if Path(p.file).is_relative_to(folder)
            else p
            for p in exc.problems
        ]
        lines = "\n".join(str(problem) for problem in problems)
        msg = f"the rules at {label.split(':', 1)[0]} do not load:\n{lines}"
        raise UserInputError(msg) from None


Planned = Mapping[str, Mapping[str, tuple[str, ...]]]
"""rule id -> subject -> the actions planned for it."""


def _evaluate(
    runtime: Runtime, rule_set: RuleSet, ids: set[str], now: datetime
) -> tuple[Planned, dict[str, str]]:
    planned: dict[str, dict[str, tuple[str, ...]]] = {}
    errors: dict[str, str] = {}
    for outcome in run_due_rules(runtime, rule_set, now, dry_run=True, only=ids, force=True):
        if outcome.error:
            errors[outcome.rule_id] = outcome.error
        planned[outcome.rule_id] = {
            f"{firing.subject} {firing.external_id}": firing.actions for firing in outcome.planned
        }
    return planned, errors


def plan_change(
    runtime: Runtime, base: RuleSet, working: RuleSet, now: datetime, *, base_ref: str, folder: str
) -> Plan:
    """Evaluate the rules that differ in both sets as dry runs; return the difference."""
    base_rules = {rule.id: rule for rule in base.rules}
    working_rules = {rule.id: rule for rule in working.rules}
    differing = {
        rule_id
        for rule_id in base_rules.keys() | working_rules.keys()
        if rule_id not in base_rules
        or rule_id not in working_rules
        or base_rules[rule_id].digest != working_rules[rule_id].digest
    }
    before, base_errors = _evaluate(runtime, base, differing & base_rules.keys(), now)
    after, working_errors = _evaluate(runtime, working, differing & working_rules.keys(), now)
    plans = []
    for rule_id in sorted(differing):
        old, new = base_rules.get(rule_id), working_rules.get(rule_id)
        status: Status = "added" if old is None else "removed" if new is None else "changed"
        was, will = before.get(rule_id, {}), after.get(rule_id, {})
        changes = [SubjectChange(s, "+") for s in sorted(will.keys() - was.keys())]
        changes += [SubjectChange(s, "-") for s in sorted(was.keys() - will.keys())]
        changes += [
            SubjectChange(s, "~") for s in sorted(was.keys() & will.keys()) if was[s] != will[s]
        ]
        either = new or old
        assert either is not None
        plans.append(
            RulePlan(
                rule_id=rule_id,
                status=status,
                subject_kind=either.subject.value,
                base_actions=_actions(old),
                working_actions=_actions(new),
                base_count=len(was),
                working_count=len(will),
                changes=tuple(changes),
                error=working_errors.get(rule_id) or base_errors.get(rule_id),
            )
        )
    scoring = preview_scoring(runtime.engine, base, working, now)
    leaving = _leavers(runtime.engine, base, working)
    lead_rules = any(plan.subject_kind == "lead" for plan in plans)
    renamed = _renames(base, working)
    return Plan(
        base_ref=base_ref,
        folder=folder,
        base_version=base.version,
        working_version=working.version,
        now=now,
        rules=tuple(plans),
        unchanged_rules=len(base_rules.keys() & working_rules.keys())
        - len(differing & base_rules.keys() & working_rules.keys()),
        streams=_stream_changes(base, working, renamed),
        renamed_from=renamed,
        leavers=leaving[0],
        leaving_leads=leaving[1],
        scoring=scoring,
        left_out=left_out(
            runtime.engine,
            now,
            leads=lead_rules or (scoring is not None and bool(scoring.rules)),
            activities=scoring is not None,
        ),
    )


def left_out(engine: Engine, now: datetime, *, leads: bool, activities: bool) -> LeftOut:
    """The leads that entered their stage after ``now`` (when ``leads``) and the activities
    dated after it (when ``activities``): what a plan as of a past instant does not see."""
    at = literal(now, UTCDateTime())
    with engine.connect() as connection:
        later_leads = (
            connection.execute(
                select(func.count()).select_from(LEADS).where(LEADS.c.stage_entered_at > at)
            ).scalar_one()
            if leads
            else 0
        )
        later_activities = (
            connection.execute(
                select(func.count())
                .select_from(ACTIVITIES)
                .where(ACTIVITIES.c.lead_id.is_not(None), ACTIVITIES.c.occurred_at > at)
            ).scalar_one()
            if activities
            else 0
        )
    return LeftOut(int(later_leads), int(later_activities))


def _leavers(
    engine: Engine, base: RuleSet, working: RuleSet
) -> tuple[tuple[Leavers, ...], frozenset[str]]:
    """The enrollments the working streams would end that the base's would not, per stream,
    and their leads (``lead L1``)."""
    if all(working.streams.get(key) == stream for key, stream in base.streams.items()):
        return (), frozenset()  # no stream removed or changed: nothing to read
    with engine.connect() as connection:
        found = leavers(active_enrollments(connection), working.streams, base=base.streams)
        external_ids = leaving_leads(connection, found)
    return tuple(found), frozenset(f"lead {external_id}" for external_id in external_ids)


def _stream_lines(plan: Plan, signs: Mapping[str, str]) -> list[str]:
    """``- stream welcome (removed): 3 leads enrolled now will exit (...)``, one per stream."""
    lines = []
    for stream, status in plan.streams:
        line = f"{signs[status]} stream {stream} ({_stream_status(plan, stream, status)})"
        leaving = _leaving(plan, stream)
        if leaving is not None:
            line += f": {leaving.consequence()}"
        lines.append(line)
    return lines


def _stream_status(plan: Plan, stream: str, status: StreamStatus, quote: str = "") -> str:
    """``changed``, or ``renamed from welcome`` (each id between ``quote`` marks)."""
    if status != "renamed":
        return status
    return "renamed from " + ", ".join(f"{quote}{old}{quote}" for old in plan.renamed_from[stream])


def _leaving(plan: Plan, stream: str) -> Leavers | None:
    """The leavers of ``stream``: counted under the id they were enrolled with, which is an
    old one of a renamed stream."""
    by_stream = plan.leaving_by_stream
    ids = (stream, *plan.renamed_from.get(stream, ()))
    return next((by_stream[key] for key in ids if key in by_stream), None)


def _actions(rule: object) -> tuple[str, ...] | None:
    from leadflow.engine.firing import describe_action
    from leadflow.rule_language.model import Rule

    if not isinstance(rule, Rule):
        return None
    if not rule.enabled:
        return ("(disabled)",)
    return tuple(describe_action(action) for action in rule.actions)


def _stream_changes(
    base: RuleSet, working: RuleSet, renamed: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[str, StreamStatus], ...]:
    """Each stream added, removed, changed or renamed (``renamed``: :func:`_renames`), by id;
    a renamed stream is listed once, under its new id."""
    gone = {old_id for old_ids in renamed.values() for old_id in old_ids}
    found: list[tuple[str, StreamStatus]] = []
    for stream_id in sorted((base.streams.keys() | working.streams.keys()) - gone):
        old, new = base.streams.get(stream_id), working.streams.get(stream_id)
        if stream_id in renamed:
            found.append((stream_id, "renamed"))
        elif old is None:
            found.append((stream_id, "added"))
        elif new is None:
            found.append((stream_id, "removed"))
        elif old != new:
            found.append((stream_id, "changed"))
    return tuple(found)


def _renames(base: RuleSet, working: RuleSet) -> dict[str, tuple[str, ...]]:
    """Each working stream renamed from a stream of the base that the working set no longer
    has -> those old ids."""
    found = {
        stream.id: tuple(old for old in stream.renamed_from if old in base.streams)
        for stream in working.streams.values()
        if stream.id not in base.streams
    }
    return {stream_id: old_ids for stream_id, old_ids in found.items() if old_ids}


_WORDS = {"+": "newly acted on", "-": "no longer acted on", "~": "acted on differently"}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _affected_line(plan: Plan) -> str:
    leads = sum(1 for subject in plan.affected if subject.startswith("lead "))
    deals = len(plan.affected) - leads
    return f"{_plural(leads, 'lead')} and {_plural(deals, 'deal')} would be treated differently."


def _left_out_line(plan: Plan) -> str | None:
    """One line saying what the plan as of ``now`` leaves out; None when it leaves out nothing."""
    leads, activities = plan.left_out.leads, plan.left_out.activities
    parts = []
    if leads:
        them = "it" if leads == 1 else "them"
        parts.append(
            f"{_plural(leads, 'lead')} that entered {'its' if leads == 1 else 'their'} stage "
            f"after it (imported or moved since: no rule acts on {them} as of then)"
        )
    if activities:
        word = "activity" if activities == 1 else "activities"
        parts.append(f"{activities} {word} dated after it (no score counts them then)")
    if not parts:
        return None
    return f"Left out as of {plan.now:%Y-%m-%d %H:%M:%S} UTC: {' and '.join(parts)}."


def _rule_line(rule: RulePlan, ref: str) -> str:
    counts = ", ".join(f"{rule.count(sign)} {words}" for sign, words in _WORDS.items())
    return (
        f"{rule.rule_id} ({rule.status}): {_plural(rule.base_count, rule.subject_kind)} at {ref}, "
        f"{rule.working_count} in the working tree; {counts}"
    )


def _samples(rule: RulePlan, sample: int) -> Iterator[tuple[str, str]]:
    for sign in _WORDS:
        subjects = [change.subject for change in rule.changes if change.sign == sign]
        for subject in subjects[:sample]:
            yield sign, subject
        if len(subjects) > sample:
            yield sign, f"... and {len(subjects) - sample} more"


def render_text(plan: Plan, *, sample: int = 10) -> list[str]:
    """The plan for a terminal: one line per changed rule, then a sample of its subjects."""
    lines = [
        f"Plan: {plan.folder} at {plan.base_ref} (version {plan.base_version}) -> working tree "
        f"(version {plan.working_version}), store as of {plan.now.isoformat()}",
    ]
    left_out_line = _left_out_line(plan)
    if left_out_line is not None:
        lines.append(left_out_line)
    lines.append("")
    signs = {"added": "+", "removed": "-", "changed": "~", "renamed": "~"}
    for rule in plan.rules:
        lines.append(f"{signs[rule.status]} {_rule_line(rule, plan.base_ref)}")
        if rule.error:
            lines.append(f"    error: {rule.error}")
        lines += [f"    {sign} {subject}" for sign, subject in _samples(rule, sample)]
        if rule.status == "changed" and rule.base_actions != rule.working_actions:
            lines.append(f"    actions at {plan.base_ref}: {'; '.join(rule.base_actions or ())}")
            lines.append(f"    actions now: {'; '.join(rule.working_actions or ())}")
    lines += _stream_lines(plan, signs)
    if plan.scoring is not None:
        lines += scoring_text(plan.scoring, plan.base_ref, sample=sample)
    if not plan.rules and not plan.streams and plan.scoring is None:
        lines.append("No rule, stream or scoring model changed.")
    lines += ["", f"{_plural(plan.unchanged_rules, 'rule')} unchanged. {_affected_line(plan)}"]
    return lines


def render_markdown(plan: Plan, *, sample: int = 10) -> list[str]:
    """The plan as a pull-request comment: a table of changed rules, samples folded away."""
    lines = [
        f"### leadflow plan: `{plan.folder}` at `{plan.base_ref}` → this change",
        "",
        f"Store as of {plan.now.isoformat()}; rule set `{plan.base_version}` → "
        f"`{plan.working_version}`. **{_affected_line(plan)}**",
        "",
    ]
    left_out_line = _left_out_line(plan)
    if left_out_line is not None:
        lines += [left_out_line, ""]
    if plan.rules:
        lines += [
            f"| rule | change | at `{plan.base_ref}` | after | newly | no longer | differently |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        lines += [
            f"| `{rule.rule_id}` | {rule.status} | {rule.base_count} | {rule.working_count} "
            f"| {rule.count('+')} | {rule.count('-')} | {rule.count('~')} |"
            for rule in plan.rules
        ]
        lines.append("")
    for stream, status in plan.streams:
        leaving = _leaving(plan, stream)
        lines.append(
            f"- stream `{stream}`: {_stream_status(plan, stream, status, '`')}"
            + (f": **{leaving.consequence()}**" if leaving is not None else "")
        )
    for rule in plan.rules:
        shown = list(_samples(rule, sample))
        if not shown and not rule.error:
            continue
        lines += [
            "",
            f"<details><summary><code>{rule.rule_id}</code>: {len(rule.changes)} {rule.subject_kind}(s)</summary>",
            "",
        ]
        if rule.error:
            lines.append(f"- error: `{rule.error}`")
        lines += [f"- {_WORDS[sign]}: {subject}" for sign, subject in shown]
        lines += ["", "</details>"]
    if plan.scoring is not None:
        lines += scoring_markdown(plan.scoring, plan.base_ref, sample=sample)
    if not plan.rules and not plan.streams and plan.scoring is None:
        lines.append("No rule, stream or scoring model changed.")
    lines += ["", f"{_plural(plan.unchanged_rules, 'rule')} unchanged."]
    return lines
