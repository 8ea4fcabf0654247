"""The scoring part of ``leadflow plan``, for a terminal and for a pull-request comment."""

from __future__ import annotations

from collections.abc import Iterator

from leadflow.rule_testing.scoring_preview import LeadMove, RuleCrossing, ScoringPreview

_SIGNS = {"added": "+", "removed": "-", "changed": "~", "enabled": "~", "disabled": "~"}
_CROSSING = {"+": "newly matching", "-": "no longer matching"}


def _source(active: bool) -> str:
    return "the model" if active else "the CRM"


def _sides(preview: ScoringPreview, ref: str, working: str) -> str:
    return (
        f"scores from {_source(preview.base_active)} at {ref}, "
        f"from {_source(preview.working_active)} {working}"
    )


def _changed(preview: ScoringPreview) -> str:
    if not preview.base_active and not preview.working_active:
        return "no score changes (the model is enabled on neither side)"
    return f"{preview.changed} of {preview.leads} leads' scores change"


def _signed(value: int | None) -> str:
    return "none" if value is None else f"{value:+d}"


def _distribution(preview: ScoringPreview) -> str:
    bands = ", ".join(f"{label}: {count}" for label, count in preview.bands)
    return (
        f"{bands}; largest fall {_signed(preview.lowest)}, largest rise {_signed(preview.highest)}"
    )


def _move(move: LeadMove) -> str:
    grade = f" ({move.grade})" if move.grade else ""
    return f"lead {move.external_id}: {move.old_score} -> {move.new_score}{grade}"


def _crossing_line(rule: RuleCrossing) -> str:
    return (
        f"{rule.rule_id} reads score: {rule.newly} newly matching, "
        f"{rule.no_longer} no longer matching"
    )


def _moves(rule: RuleCrossing, sample: int) -> Iterator[tuple[str, str]]:
    for sign in _CROSSING:
        moves = [move for move in rule.moves if move.sign == sign]
        for move in moves[:sample]:
            yield sign, _move(move)
        if len(moves) > sample:
            yield sign, f"... and {len(moves) - sample} more"


def scoring_text(preview: ScoringPreview, ref: str, *, sample: int) -> list[str]:
    """The scoring model's change: the score moves, then each score rule's crossings."""
    lines = [
        f"{_SIGNS[preview.status]} scoring model ({preview.status}): "
        f"{_sides(preview, ref, 'in the working tree')}; {_changed(preview)}"
    ]
    if preview.changed:
        lines.append(f"    score change: {_distribution(preview)}")
    for rule in preview.rules:
        lines.append(f"    {_crossing_line(rule)}")
        lines += [f"      {sign} {text}" for sign, text in _moves(rule, sample)]
    return lines


def scoring_markdown(preview: ScoringPreview, ref: str, *, sample: int) -> list[str]:
    """The scoring model's change as a pull-request comment section."""
    sides = _sides(preview, f"`{ref}`", "after this change")
    lines = [
        "",
        f"#### Scoring model: {preview.status}",
        "",
        f"{sides[0].upper()}{sides[1:]}: **{_changed(preview)}.**",
    ]
    if preview.changed:
        lines += ["", "| score change | leads |", "| --- | ---: |"]
        lines += [f"| {label} | {count} |" for label, count in preview.bands]
        lines += [
            "",
            f"Largest fall {_signed(preview.lowest)}, largest rise {_signed(preview.highest)}.",
        ]
    for rule in preview.rules:
        lines += [
            "",
            f"<details><summary><code>{rule.rule_id}</code> reads <code>score</code>: "
            f"{rule.newly} newly matching, {rule.no_longer} no longer matching</summary>",
            "",
        ]
        lines += [f"- {_CROSSING[sign]}: {text}" for sign, text in _moves(rule, sample)]
        lines += ["", "</details>"]
    return lines
