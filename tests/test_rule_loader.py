"""The rule loader: every problem in a rules folder at once, each as FILE:LINE:COL: message.

These pin the exact lines ``leadflow check`` prints, so a marketing-ops author always learns
where the mistake is and what to write instead, and never sees a traceback.
"""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from leadflow.errors import Problem, ProblemsError, YamlSyntaxError
from leadflow.mail.templates import TemplateCatalog
from leadflow.rule_language import yaml_source
from leadflow.rule_language.actions import (
    AdjustScore,
    Assign,
    CloseDeal,
    Enroll,
    EscalationLevel,
    Notify,
    SetScore,
    SetStage,
    StartSla,
)
from leadflow.rule_language.conditions import AllOf, Comparison
from leadflow.rule_language.loader import check_rule_set, load_rule_set, rule_files
from leadflow.rule_language.model import Reentry, RuleSet
from leadflow.rule_language.operators import OPERATORS
from leadflow.rule_language.schedule import Schedule
from leadflow.settings import RulesSettings, Settings

SETTINGS = Settings.model_validate(
    {"attributes": {"leads": {"country": "string", "employees": "integer", "opening": "string"}}}
)
STAGES = "subscriber, lead, mql, sql, opportunity, customer, nurture, recycled, disqualified"
ACTIONS = "set_stage, adjust_score, set_score, assign, notify, start_sla, enroll, close_deal"
GOOD = """\
rules:
  - id: hot-lead
    when: {field: score, at_least: 60}
    actions: [set_stage: mql]
"""


@pytest.fixture
def rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``rules/`` folder; problems are labelled relative to its parent."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "rules"
    folder.mkdir()
    return folder


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def problems(folder: Path, **files: str | bytes) -> list[str]:
    """Write ``files`` (name -> content; ``__`` in a name is a ``/``) and check the folder."""
    for name, content in files.items():
        write(folder, name.replace("__", "/"), content)
    rule_set, found = check_rule_set(folder, SETTINGS)
    assert (rule_set is None) == bool(found)
    return [str(problem) for problem in found]


def loaded(folder: Path, text: str) -> RuleSet:
    write(folder, "r.yaml", text)
    return load_rule_set(folder, SETTINGS)


class TestUnreadableFiles:
    """Text that is not YAML, or not text at all, is one located problem, never a traceback."""

    def test_yaml_syntax_error_names_where_the_parser_stopped(self, rules: Path) -> None:
        text = "rules:\n  - id: a\n    when: {field: score, at_least: 1\n"
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:4:1: invalid YAML: expected ',' or '}', but got '<stream end>'"
        ]

    def test_tab_indentation_says_to_use_spaces(self, rules: Path) -> None:
        assert problems(rules, **{"r.yaml": "rules:\n\t- id: a\n"}) == [
            "rules/r.yaml:2:1: invalid YAML: a tab character here: YAML indents with spaces only"
            " (replace the tab with spaces)"
        ]

    @pytest.mark.parametrize(
        ("name", "text", "expected"),
        [
            (
                "scoring.yaml",
                "scoring:\n  fit:\n    - id: a\n      when: {field: score, at_least: 1}\n"
                "      points: 5\n engagement: []\n",
                "rules/scoring.yaml:6:2: invalid YAML: this line is indented more than its "
                "neighbours: it starts at column 2, but the keys of the mapping it is in start "
                "at column 1 (line 1); line it up with the key above it that it belongs beside, "
                "or indent it under a key ending in ':'",
            ),
            (
                "r.yaml",
                "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n"
                "     actions: [set_stage: mql]\n",
                "rules/r.yaml:4:6: invalid YAML: this line is indented more than its "
                "neighbours: it starts at column 6, but the keys of the mapping it is in start "
                "at column 5 (line 2); line it up with the key above it that it belongs beside, "
                "or indent it under a key ending in ':'",
            ),
            (
                "r.yaml",
                "rules:\n  - id: a\n    when: field: score\n",
                "rules/r.yaml:3:16: invalid YAML: a ':' followed by a space inside a value: "
                'quote the value ("a: b") or, for a nested key, put it on a line of its own, '
                "indented under its parent key",
            ),
            (
                "r.yaml",
                "rules:\n  - id: a\n    when\n    actions: [set_stage: mql]\n",
                "rules/r.yaml:3:5: invalid YAML: 'when' is neither 'key: value' nor a list "
                "item '- value': add the ':' after the key, or, if it continues the value above "
                "it, quote that value",
            ),
            (
                "r.yaml",
                "rules:\n  - id: a\n- id: b\n",
                "rules/r.yaml:3:1: invalid YAML: a list item ('-') where the mapping that "
                "starts on line 1 expects a key: put the item under the key it belongs to (a "
                "line ending in ':', with the item indented below it)",
            ),
            (
                "r.yaml",
                "rules:\n  - id: a\n    when:\n      all:\n        - field: score\n"
                "         at_least: 60\n",
                # PyYAML marks the item's dash (column 9): the keys start after it.
                "rules/r.yaml:6:10: invalid YAML: this line is indented less than its "
                "neighbours: it starts at column 10, but the keys of the mapping it is in start "
                "at column 11 (line 5); line it up with the key above it that it belongs beside, "
                "or indent it under a key ending in ':'",
            ),
        ],
        ids=[
            "indented-more",
            "key-indented-more",
            "colon-in-value",
            "no-colon",
            "stray-item",
            "item-key-indented-less",
        ],
    )
    def test_structural_mistakes_say_what_to_fix(
        self, rules: Path, name: str, text: str, expected: str
    ) -> None:
        """PyYAML's structural errors (``expected <block end>, but found '<block mapping
        start>'``) are said as what to fix, at the same FILE:LINE:COL, in any rules file."""
        assert problems(rules, **{name: text}) == [expected]

    @pytest.mark.parametrize(
        ("text", "column"),
        [("scoring:\n", 1), ("scoring: {}\n", 1), ("scoring:\n  description: x\n", 1)],
        ids=["bare-key", "empty-mapping", "no-criteria"],
    )
    def test_a_scoring_section_without_criteria_is_refused(
        self, rules: Path, text: str, column: int
    ) -> None:
        """``scoring:`` with nothing under it (a save cut short) quietly removed the live
        model; it is refused as an empty file is. ``enabled: false`` alone still turns
        scoring off."""
        assert problems(rules, **{"scoring.yaml": text}) == [
            f"rules/scoring.yaml:1:{column}: scoring: expected its criteria (fit: and/or "
            "engagement:), or 'enabled: false' to turn scoring off (refused so that a save cut "
            "short never removes the live model)"
        ]
        off = "scoring:\n  enabled: false\n"
        rule = "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n"
        assert problems(rules, **{"scoring.yaml": off, "r.yaml": rule}) == []

    def test_duplicate_keys_are_refused(self, rules: Path) -> None:
        text = "rules:\n  - id: a\n    id: b\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n"
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:5: duplicate key 'id': each key may appear once"
        ]

    def test_binary_junk(self, rules: Path) -> None:
        assert problems(rules, **{"r.yaml": b"\x00\x01\x02rules\xff"}) == [
            "rules/r.yaml:1:1: binary file: a rule file must be YAML text"
        ]

    def test_non_utf8_bytes_are_located(self, rules: Path) -> None:
        latin1 = "rules:\n  - id: caf\xe9\n".encode("latin-1")
        assert problems(rules, **{"r.yaml": latin1}) == [
            "rules/r.yaml:2:12: not UTF-8 text: save the file as UTF-8"
        ]

    def test_values_yaml_cannot_construct_are_located(self, rules: Path) -> None:
        text = "rules:\n  - id: a\n    when: {field: stage_entered_at, before: 2026-13-01}\n"
        assert problems(rules, **{"r.yaml": text, "s.yaml": "x: !!int abc\n"}) == [
            "rules/r.yaml:3:45: invalid YAML: '2026-13-01' is not a valid date: month must be in 1..12",
            "rules/s.yaml:1:4: invalid YAML: 'abc' is not a valid whole number:"
            " invalid literal for int() with base 10: 'abc'",
        ]

    @pytest.mark.slow
    def test_self_referring_aliases_deep_nesting_and_alias_bombs(self, rules: Path) -> None:
        bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
            for i in range(5)
        )
        assert problems(
            rules,
            **{
                "a.yaml": "a: &a [*a]\n",
                "b.yaml": "rules: " + "[" * 3000 + "]" * 3000,
                "c.yaml": "rules: " + "[" * 70 + "]" * 70,
                "d.yaml": bomb,
                # As many values written out, no alias: the refusal does not speak of aliases.
                "e.yaml": "rules: [" + ", ".join(["1"] * 100_001) + "]\n",
            },
        ) == [
            "rules/a.yaml:1:4: invalid YAML: an alias (*name) refers to a value that contains it",
            "rules/b.yaml:1:68: invalid YAML: nested too deeply: at most 60 levels of mappings and lists",
            "rules/c.yaml:1:68: invalid YAML: nested too deeply: at most 60 levels of mappings and lists",
            "rules/d.yaml:1:35: invalid YAML: too many values: more than 100000 once aliases (*name) are expanded",
            "rules/e.yaml:1:300003: invalid YAML: too many values: more than 100000",
        ]

    def test_a_file_over_the_value_limit_is_parsed_once(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A file over the limit of values is refused by LibYAML's parse alone: it was parsed a
        second time by PyYAML's pure Python parser only to be refused for the same reason (a
        1 MiB file of 300,000 values took 11 s in `leadflow check`, 2 s now). Counted, not
        timed: which parser ran is what the fix changed."""
        monkeypatch.setattr(yaml_source, "MAX_NODES", 20_000)
        second_parses: list[str] = []
        pyyaml = yaml_source.parse_with_pyyaml

        def counted(file: str, text: str) -> yaml_source.SourceDocument:
            second_parses.append(file)
            return pyyaml(file, text)

        monkeypatch.setattr(yaml_source, "parse_with_pyyaml", counted)

        def flow_list(values: int) -> str:
            return "rules:\n  - when: {in: [" + ", ".join(["1"] * values) + "]}\n"

        yaml_source.parse_document("under.yaml", flow_list(19_990))
        with pytest.raises(YamlSyntaxError) as refused:
            yaml_source.parse_document("over.yaml", flow_list(20_010))
        # No alias named: none in it.
        assert refused.value.message == "too many values: more than 20000"
        assert second_parses == []
        # The parser the walker falls back to is still there for what LibYAML cannot read.
        with pytest.raises(YamlSyntaxError):
            yaml_source.parse_document("tab.yaml", "rules:\n\t- a\n")
        assert second_parses == ["tab.yaml"]

    def test_more_than_one_document_is_refused(self, rules: Path) -> None:
        assert problems(rules, **{"r.yaml": "rules: []\n---\nrules: []\n"}) == [
            "rules/r.yaml:2:1: invalid YAML: but found another document"
        ]


class TestShapeOfAFile:
    """The top level holds rules: and streams:; each rule has the keys it needs and no others."""

    def test_wrong_top_level(self, rules: Path) -> None:
        assert problems(rules, **{"a.yaml": "- id: a\n", "b.yaml": "hello\n"}) == [
            "rules/a.yaml:1:1: expected a mapping with rules:, streams: and/or scoring: at the top of the file",
            "rules/b.yaml:1:1: expected a mapping with rules:, streams: and/or scoring: at the top of the file",
        ]

    def test_unknown_keys_suggest_the_close_match_and_do_not_hide_other_problems(
        self, rules: Path
    ) -> None:
        text = (
            "rules:\n  - id: a\n    descripton: x\n    when: {field: score, at_least: 1}\n"
            "    actions: [set_stage: mql]\n    colour: red\nstreems: []\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:5: rule a: unknown key 'descripton'; did you mean 'description'?",
            "rules/r.yaml:6:5: rule a: unknown key 'colour'; expected one of actions, cron,"
            " description, enabled, every, id, reentry, subject, timezone, when",
            "rules/r.yaml:7:1: unknown key 'streems'; did you mean 'streams'?",
        ]

    def test_missing_keys_and_wrong_types_in_plain_words(self, rules: Path) -> None:
        text = "rules:\n  - \n  - 5\n  - id: 7\n  - id: Bad Id\n    when: {field: score, at_least: 1}\n    actions: []\n"
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:2:4: expected a mapping (key: value)",
            "rules/r.yaml:3:5: expected a mapping (key: value), found 5",
            "rules/r.yaml:4:5: missing required key 'when'",
            "rules/r.yaml:4:5: missing required key 'actions'",
            "rules/r.yaml:4:9: id: expected text, found 7",
            "rules/r.yaml:5:9: rule Bad Id: id: expected an id of lowercase letters, digits, '_', '.' and '-',"
            " starting with a letter or digit, found 'Bad Id'",
            "rules/r.yaml:7:14: rule Bad Id: actions: expected at least one item",
        ]

    def test_an_id_with_control_characters_is_shown_escaped(self, rules: Path) -> None:
        text = (
            'rules:\n  - id: "r\\u0000\\u001b[2J"\n    when: {field: score, at_least: 1}\n'
            "    actions: [set_stage: mql]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:2:9: rule 'r\\x00\\x1b[2J': id: expected an id of lowercase letters, "
            "digits, '_', '.' and '-', starting with a letter or digit, found 'r\\x00\\x1b[2J'",
        ]

    def test_an_empty_folder_and_rules_list_are_an_empty_rule_set(self, rules: Path) -> None:
        """When ``rules.allow_empty`` allows it (tests/test_empty_rule_set.py: refused else)."""
        allowed = SETTINGS.model_copy(update={"rules": RulesSettings(allow_empty=True)})
        assert load_rule_set(rules, allowed).rules == ()
        write(rules, "r.yaml", "# nothing yet\nrules: []\n")
        assert load_rule_set(rules, allowed).rules == ()

    def test_a_file_without_a_document_is_a_problem(self, rules: Path) -> None:
        """Empty or comments only: refused, so a save cut short never drops live rules."""
        why = (
            ": delete it to remove its rules, or write 'rules: []' to keep it without any"
            " (refused so that a save cut short never removes live rules)"
        )
        assert problems(rules, **{"r.yaml": "# nothing yet\n"}) == [
            f"rules/r.yaml:1:1: the file holds only comments{why}"
        ]
        assert problems(rules, **{"r.yaml": b"\n \n"}) == [
            f"rules/r.yaml:1:1: the file is empty{why}"
        ]
        assert problems(rules, **{"r.yaml": "~\n"}) == [
            f"rules/r.yaml:1:1: the file holds no document (null){why}"
        ]

    def test_an_empty_scoring_file_is_told_how_to_turn_scoring_off(self, rules: Path) -> None:
        """The scoring model's file was told to write 'rules: []', which keeps the file and
        drops the model without a word."""
        assert problems(rules, **{"scoring.yaml": "# cut short\n"}) == [
            "rules/scoring.yaml:1:1: the file holds only comments: delete it to remove the "
            "scoring model, or write 'scoring: {enabled: false}' to turn scoring off (refused "
            "so that a save cut short never removes the live model)"
        ]

    def test_an_empty_mapping_is_a_problem(self, rules: Path) -> None:
        """'{}' names none of rules:, streams:, scoring:: refused like an empty file (it was
        taken as no rules), located at the mapping."""
        what = (
            "the file holds only an empty mapping ({}), with no rules:, streams: or scoring: "
            "key: delete it to remove its rules, or write 'rules: []' to keep it without any"
            " (refused so that a save cut short never removes live rules)"
        )
        assert problems(rules, **{"r.yaml": "{}\n"}) == [f"rules/r.yaml:1:1: {what}"]
        assert problems(rules, **{"r.yaml": "# the MQL rules\n\n  {}\n"}) == [
            f"rules/r.yaml:3:3: {what}"
        ]

    def test_a_missing_folder_is_one_problem(self, tmp_path: Path) -> None:
        rule_set, found = check_rule_set(tmp_path / "nope", SETTINGS)
        assert rule_set is None
        assert found == [Problem(str(tmp_path / "nope"), 0, 0, "rules folder not found")]


class TestDurations:
    """Durations read as 90m/4h/2d/1w; typos, zero, and absurd lengths are located problems."""

    def test_bad_durations_everywhere_a_duration_goes(self, rules: Path) -> None:
        text = (
            "rules:\n  - id: a\n    every: soon\n    reentry: {once_per: 0d}\n"
            "    when: {field: stage_entered_at, older_than: 99999999999d}\n"
            "    actions:\n      - start_sla: {name: s, within: 4 hours}\n"
            "streams:\n  - id: n\n    steps: [{template: x, after: -1d}]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:12: rule a: every: 'soon' is not a duration; write a number and a unit (s, m, h, d, w), e.g. 90m",
            "rules/r.yaml:4:14: rule a: reentry: expected once, every_time or {once_per: 30d}",
            "rules/r.yaml:5:49: rule a: '99999999999d' is too long; at most 36525d (100 years)",
            "rules/r.yaml:7:38: rule a: start_sla: within: '4 hours' is not a duration; write a number and a unit (s, m, h, d, w), e.g. 90m",
            "rules/r.yaml:10:34: stream n, step 1: after: '-1d': a duration must be longer than zero; write 1d",
        ]

    def test_good_durations_are_converted_once(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    every: 1h 30m\n    reentry: {once_per: 2w}\n"
            "    when: {field: days_in_stage, more_than: 3}\n    actions: [set_stage: mql]\n"
            "streams:\n  - id: n\n    steps: [{template: x}, {template: y, after: 3d}]\n",
        )
        rule = rule_set.rules[0]
        assert (rule.schedule, rule.reentry) == (
            Schedule.interval(timedelta(minutes=90)),
            Reentry("once_per", timedelta(weeks=2)),
        )
        assert [step.after for step in rule_set.streams["n"].steps] == [
            timedelta(0),
            timedelta(days=3),
        ]
        assert rule.condition == Comparison(
            rule.condition.field,  # type: ignore[union-attr]
            OPERATORS["more_than"],
            timedelta(days=3),
        )


class TestCronSchedules:
    """``cron:`` with an IANA ``timezone:`` instead of ``every:``; each mistake is located."""

    RULE = "    when: {{field: score, at_least: 50}}\n    actions: [set_stage: mql]\n"

    def rule(self, schedule: str) -> str:
        return "rules:\n  - id: a\n" + schedule + self.RULE.format()

    def test_a_cron_rule_loads_with_its_zone(self, rules: Path) -> None:
        rule_set = loaded(rules, self.rule("    cron: 0  9 * * 1-5\n    timezone: Europe/Berlin\n"))
        assert rule_set.rules[0].schedule == Schedule(cron="0 9 * * 1-5", timezone="Europe/Berlin")

    def test_an_unquoted_star_gets_the_fix_in_the_message(self, rules: Path) -> None:
        text = self.rule("    cron: */5 * * * *\n    timezone: UTC\n")
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:12: invalid YAML: expected alphabetic or numeric character, but found"
            " '/' (YAML reads a value starting with * as an alias: quote it, e.g."
            ' "*/5 * * * *")'
        ]

    def test_mistakes_are_located(self, rules: Path) -> None:
        files = {
            "a.yaml": self.rule("    cron: 61 9 * * *\n    timezone: Europe/Berlin\n"),
            "b.yaml": self.rule("    cron: 0 9 * *\n    timezone: Europe/Berlin\n").replace(
                "id: a", "id: b"
            ),
            "c.yaml": self.rule("    cron: 0 9 * * 1-5\n").replace("id: a", "id: c"),
            "d.yaml": self.rule("    every: 1h\n    cron: 0 9 * * *\n    timezone: UTC\n").replace(
                "id: a", "id: d"
            ),
            "e.yaml": self.rule("    cron: 0 9 * * *\n    timezone: Europe/Berln\n").replace(
                "id: a", "id: e"
            ),
            "f.yaml": self.rule("    cron: 0 0 30 2 *\n    timezone: UTC\n").replace(
                "id: a", "id: f"
            ),
            "g.yaml": self.rule("    every: 1h\n    timezone: UTC\n").replace("id: a", "id: g"),
            "h.yaml": self.rule("    cron: 0 9 * * 1-5 *\n    timezone: UTC\n").replace(
                "id: a", "id: h"
            ),
            "i.yaml": self.rule("    cron: 0 9 * * *\n    timezone: 5\n").replace("id: a", "id: i"),
        }
        assert problems(rules, **files) == [
            "rules/a.yaml:3:11: rule a: cron: '61 9 * * *' is not a cron expression"
            " (minute hour day month weekday): Bad minute",
            "rules/b.yaml:3:11: rule b: cron: '0 9 * *' is not a cron expression: expected 5"
            " fields (minute hour day month weekday), found 4",
            "rules/c.yaml:2:5: rule c: a cron: schedule needs timezone: (an IANA name such as"
            " Europe/Berlin)",
            "rules/d.yaml:2:5: rule d: give either every: or cron:, not both",
            "rules/e.yaml:4:15: rule e: timezone: unknown timezone 'Europe/Berln'; did you mean"
            " Europe/Berlin, Europe/Belfast, Europe/Helsinki?",
            "rules/f.yaml:3:11: rule f: cron: '0 0 30 2 *' is not a cron expression"
            " (minute hour day month weekday): Bad day-of-month",
            "rules/g.yaml:2:5: rule g: timezone: belongs to a cron: schedule; every: counts from"
            " the last run",
            "rules/h.yaml:3:11: rule h: cron: '0 9 * * 1-5 *' is not a cron expression: expected 5"
            " fields (minute hour day month weekday), found 6",
            "rules/i.yaml:4:15: rule i: timezone: expected an IANA timezone name such as"
            " Europe/Berlin, got 5",
        ]


class TestConditions:
    """Unknown fields, operators and stages list the close matches; values are type-checked."""

    def test_unknown_names_suggest_close_matches(self, rules: Path) -> None:
        text = (
            "rules:\n  - id: a\n    when:\n      all:\n"
            "        - {field: scor, at_least: 1}\n"
            "        - {field: score, atleast: 1}\n"
            "        - {field: stage, equals: mqll}\n"
            "        - {alll: []}\n"
            "        - {field: attributes.contry, equals: NO}\n"
            "        - {field: unsubscribed, equals: 'yes'}\n"
            "        - {field: score, at_least: 1, at_most: 5}\n"
            "        - {field: days_in_stage, at_least: .inf}\n"
            "    actions: [set_stage: mql]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:5:19: rule a: unknown lead field 'scor'; did you mean score, score_fit?",
            "rules/r.yaml:6:26: rule a: score (integer) does not take 'atleast'; did you mean 'at_least'?"
            " use one of equals, not_equals, in, not_in, at_least, at_most, more_than, less_than, is_set",
            f"rules/r.yaml:7:34: rule a: unknown stage 'mqll'; did you mean 'mql'? stages are {STAGES}",
            "rules/r.yaml:8:12: rule a: unknown condition 'alll'; did you mean 'all'?"
            " (expected one of all, any, not, field, idle_beyond_average_cycle)",
            "rules/r.yaml:9:19: rule a: unknown lead field 'attributes.contry'; did you mean attributes.country, attributes.opening, attributes.employees?",
            "rules/r.yaml:10:41: rule a: unsubscribed is true or false, found 'yes'",
            "rules/r.yaml:11:11: rule a: field score: expected exactly one operator (equals, not_equals,"
            " in, not_in, at_least, at_most, more_than, less_than, is_set), found at_least, at_most",
            "rules/r.yaml:12:44: rule a: at_least: expected a finite number, found .inf",
        ]

    def test_values_are_named_as_the_file_wrote_them(self, rules: Path) -> None:
        """A refused value is named as written (``~``, ``True``, ``.inf``), not as Python
        prints it (``None``, ``True``, ``inf``), with what YAML made of it; a quoted value keeps
        its quotes, and a YAML 1.1 boolean word where a flag belongs is said to be text."""
        text = (
            "rules:\n  - id: a\n    when:\n      all:\n"
            "        - {field: attributes.country, equals: ~}\n"
            "        - {field: attributes.country, in: [SE, null, TRUE]}\n"
            "        - {field: attributes.country, equals: }\n"
            "        - {field: unsubscribed, equals: yes}\n"
            "        - {field: unsubscribed, equals: 'on'}\n"
            "        - {field: attributes.country, is_set: Off}\n"
            "        - {field: score, at_least: False}\n"
            "        - {field: score, at_most: 2026-01-31}\n"
            "        - {field: score, more_than: 1e400}\n"
            "        - {field: created_at, after: Null}\n"
            "    actions: [set_stage: mql]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:5:47: rule a: attributes.country is text: expected a text value,"
            ' found ~ (YAML reads it as no value; quote it: "~")',
            "rules/r.yaml:6:48: rule a: attributes.country is text: expected a text value,"
            ' found null (YAML reads it as no value; quote it: "null")',
            "rules/r.yaml:6:54: rule a: attributes.country is text: expected a text value,"
            ' found TRUE (YAML reads it as true; quote it: "TRUE")',
            "rules/r.yaml:7:46: rule a: attributes.country is text: expected a text value,"
            " found nothing (YAML reads an empty value as no value)",
            "rules/r.yaml:8:41: rule a: unsubscribed is true or false,"
            " found yes (text: rule files read only true and false as booleans)",
            "rules/r.yaml:9:41: rule a: unsubscribed is true or false, found 'on'",
            "rules/r.yaml:10:47: rule a: is_set expects true or false,"
            " found Off (text: rule files read only true and false as booleans)",
            "rules/r.yaml:11:36: rule a: at_least: expected a number, found False (YAML reads it as false)",
            "rules/r.yaml:12:35: rule a: at_most: expected a number, found 2026-01-31",
            "rules/r.yaml:13:37: rule a: more_than: expected a finite number, found 1e400",
            "rules/r.yaml:14:38: rule a: created_at is a datetime: expected a date like"
            " 2026-01-31 or a time like 2026-01-31T09:00:00Z, found Null (YAML reads it as no value)",
        ]

    def test_a_deal_rules_values_are_named_as_written_too(self, rules: Path) -> None:
        """The average-cycle options and a number of days are named as the file wrote them."""
        text = (
            "rules:\n  - id: b\n    subject: deal\n    when:\n      all:\n"
            "        - idle_beyond_average_cycle: {idle_from: ~}\n"
            "        - idle_beyond_average_cycle: {group_by: NULL}\n"
            "        - {field: age_days, at_least: 1e9}\n"
            "    actions: [set_stage: customer]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:6:50: rule b: idle_from: expected last_activity or engaged,"
            " found ~ (YAML reads it as no value)",
            "rules/r.yaml:7:49: rule b: group_by needs a text field of the deal, e.g. product;"
            " NULL (YAML reads it as no value) is not one",
            "rules/r.yaml:8:39: rule b: age_days: at most 36525 days, found 1e9",
        ]

    def test_the_norway_problem_country_codes_and_times_stay_strings(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    when:\n      all:\n"
            "        - {field: attributes.country, in: [NO, SE, yes, on, off, y]}\n"
            "        - {field: attributes.opening, equals: 09:00}\n"
            "        - {field: score, in: [010, 1e3]}\n"
            "    actions: [set_stage: mql]\n",
        )
        condition = rule_set.rules[0].condition
        assert isinstance(condition, AllOf)
        country, opening, score = condition.items
        assert isinstance(country, Comparison)
        assert country.operand == ("NO", "SE", "yes", "on", "off", "y")
        assert isinstance(opening, Comparison)
        assert opening.operand == "09:00"
        assert isinstance(score, Comparison)
        assert score.operand == (10, 1000)

    def test_a_time_is_not_a_number(self, rules: Path) -> None:
        text = "rules:\n  - id: a\n    when: {field: attributes.employees, equals: 09:00}\n    actions: [set_stage: mql]\n"
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:49: rule a: equals: expected a number, found '09:00'"
        ]

    def test_a_number_for_a_text_field_is_refused_as_written(self, rules: Path) -> None:
        """A number for a text field (an email, a name, a stage, a declared string attribute)
        is refused like null, named as written with the quoted spelling to use instead."""
        text = (
            "rules:\n  - id: a\n    when:\n      all:\n"
            "        - {field: email, equals: 5}\n"
            "        - {field: name, in: [Ann, 7]}\n"
            "        - {field: attributes.country, not_equals: 1e3}\n"
            "        - {field: stage, equals: 3}\n"
            "        - {field: external_id, starts_with: -2.5}\n"
            "    actions: [set_stage: mql]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:5:34: rule a: email is text: expected a text value,"
            ' found 5 (a number; quote it: "5")',
            "rules/r.yaml:6:35: rule a: name is text: expected a text value,"
            ' found 7 (a number; quote it: "7")',
            "rules/r.yaml:7:51: rule a: attributes.country is text: expected a text value,"
            ' found 1e3 (a number; quote it: "1e3")',
            "rules/r.yaml:8:34: rule a: stage is text: expected a text value,"
            ' found 3 (a number; quote it: "3")',
            "rules/r.yaml:9:45: rule a: external_id is text: expected a text value,"
            ' found -2.5 (a number; quote it: "-2.5")',
        ]

    def test_a_quoted_number_for_a_text_field_is_text(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    when: {field: external_id, in: ['5', \"007\"]}\n"
            "    actions: [set_stage: mql]\n",
        )
        condition = rule_set.rules[0].condition
        assert isinstance(condition, Comparison)
        assert condition.operand == ("5", "007")
        assert rule_set.warnings == ()

    def test_an_activity_property_takes_a_number_as_text(self, rules: Path) -> None:
        """An activity's properties have no declared type: a page number compares as text."""
        rule_set = loaded(
            rules,
            "scoring:\n  engagement:\n    - id: p\n      activity: page_view\n"
            "      when: {field: properties.page, equals: 5}\n      points: 1\n",
        )
        assert rule_set.scoring is not None
        (criterion,) = rule_set.scoring.engagement
        assert isinstance(criterion.condition, Comparison)
        assert criterion.condition.operand == "5"

    def test_a_value_repeated_in_a_list_is_a_warning(self, rules: Path) -> None:
        """``in: [mql, mql]`` loads (the set ran before), with one warning per repeated value
        at its first repeat; scoring conditions warn the same way."""
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    when: {field: stage, in: [mql, sql, mql, mql, sql]}\n"
            "    actions: [set_stage: mql]\n"
            "  - id: b\n    when: {field: score, not_in: [10, 010, 20]}\n"
            "    actions: [set_stage: mql]\n"
            "scoring:\n  fit:\n    - id: c\n"
            "      when: {field: attributes.country, in: [SE, SE]}\n      points: 1\n",
        )
        condition = rule_set.rules[0].condition
        assert isinstance(condition, Comparison)
        assert condition.operand == ("mql", "sql")
        assert [str(warning) for warning in rule_set.warnings] == [
            "rules/r.yaml:3:41: rule a: in: 'mql' is listed more than once (a repeat changes"
            " nothing; was another value meant?)",
            "rules/r.yaml:3:51: rule a: in: 'sql' is listed more than once (a repeat changes"
            " nothing; was another value meant?)",
            "rules/r.yaml:6:39: rule b: not_in: 10 is listed more than once (a repeat changes"
            " nothing; was another value meant?)",
            "rules/r.yaml:11:50: scoring: criterion c: in: 'SE' is listed more than once"
            " (a repeat changes nothing; was another value meant?)",
        ]

    def test_idle_beyond_average_cycle_is_for_deals(self, rules: Path) -> None:
        text = (
            "rules:\n  - id: a\n    when: {idle_beyond_average_cycle: {}}\n    actions: [set_stage: mql]\n"
            "  - id: b\n    subject: deal\n"
            "    when: {idle_beyond_average_cycle: {factor: 0, group_by: amount, windw: 1y}}\n"
            "    actions: [close_deal: {reason: idle}]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:3:39: rule a: idle_beyond_average_cycle applies to deals: set subject: deal on this rule",
            "rules/r.yaml:7:69: rule b: unknown option 'windw'; did you mean 'window'? expected factor, group_by, idle_from, min_deals, window",
        ]


class TestActions:
    """Actions are one key naming them; options are checked; shorthands expand."""

    def test_shorthand_actions_expand_into_their_only_option(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions:\n"
            "      - set_stage: mql\n      - adjust_score: -5\n      - set_score: 10\n      - enroll: n\n"
            "streams:\n  - id: n\n    steps: [{template: x}]\n",
        )
        assert rule_set.rules[0].actions == (
            SetStage(stage="mql"),
            AdjustScore(by=-5),
            SetScore(to=10),
            Enroll(stream="n"),
        )

    def test_full_actions_with_options(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions:\n"
            "      - assign: {route_by: attributes.country, pools: {NO: nordics}, default_pool: emea}\n"
            "      - notify: {to: owner, template: mql_assigned}\n"
            "      - start_sla:\n          name: first_touch\n          within: 4h\n"
            "          escalate:\n            - {notify: owner, template: sla_reminder}\n"
            "            - {after: 4h, reassign: true}\n",
        )
        assign, notify, sla = rule_set.rules[0].actions
        assert assign == Assign(
            route_by="attributes.country", pools={"NO": "nordics"}, default_pool="emea"
        )
        assert notify == Notify(to="owner", template="mql_assigned")
        assert isinstance(sla, StartSla)
        assert (sla.name, sla.within, sla.calendar) == (
            "first_touch",
            timedelta(hours=4),
            "default",
        )
        assert sla.escalate == (
            EscalationLevel(after=timedelta(0), notify="owner", template="sla_reminder"),
            EscalationLevel(after=timedelta(hours=4), reassign=True),
        )

    def test_unknown_actions_streams_stages_calendars_and_bad_options(self, rules: Path) -> None:
        text = (
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions:\n"
            "      - set_stag: mql\n"
            "      - enroll: nurtur\n"
            "      - start_sla: {name: s, within: 4h, calendar: emea}\n"
            "      - set_stage: sqll\n"
            "      - notify: {to: boss, template: x}\n"
            "      - {set_stage: mql, enroll: n}\n"
            "      - assign: {pool: a, route_by: attributes.country}\n"
            "      - assign: {route_by: attributes.contry, default_pool: p}\n"
            "      - adjust_score: 99999999\n"
            "streams:\n  - id: nurture\n    steps: [{template: x}]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            f"rules/r.yaml:5:9: rule a: unknown action 'set_stag'; did you mean 'set_stage'? expected one of {ACTIONS}",
            "rules/r.yaml:6:17: rule a: unknown stream 'nurtur'; did you mean 'nurture'?",
            "rules/r.yaml:7:52: rule a: unknown calendar 'emea'; known: default",
            f"rules/r.yaml:8:20: rule a: unknown stage 'sqll'; did you mean 'sql'? stages are {STAGES}",
            "rules/r.yaml:9:22: rule a: notify: to: expected owner, manager, lead or rep:<external id>",
            f"rules/r.yaml:10:9: rule a: an action is one key naming it, e.g. '- set_stage: mql'; expected one of {ACTIONS}",
            "rules/r.yaml:11:17: rule a: assign: give either pool: NAME, or route_by: FIELD with pools: {value: pool}",
            "rules/r.yaml:12:28: rule a: route_by: unknown lead field 'attributes.contry';"
            " did you mean attributes.country, attributes.opening, attributes.employees?",
            "rules/r.yaml:13:23: rule a: adjust_score: by: expected less than or equal to 1000000",
        ]

    def test_deal_only_and_lead_only_actions(self, rules: Path) -> None:
        text = (
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions: [{close_deal: {reason: x}}]\n"
            "  - id: b\n    subject: deal\n    when: {field: amount, at_least: 1}\n"
            "    actions: [{assign: {pool: p}}, {start_sla: {name: s, within: 1h}}]\n"
        )
        assert problems(rules, **{"r.yaml": text}) == [
            "rules/r.yaml:4:16: rule a: close_deal is not available in a lead rule",
            "rules/r.yaml:8:16: rule b: assign is not available in a deal rule",
            "rules/r.yaml:8:37: rule b: start_sla is not available in a deal rule",
        ]

    def test_a_deal_rule_closes_deals(self, rules: Path) -> None:
        rule_set = loaded(
            rules,
            "rules:\n  - id: recycle\n    subject: deal\n"
            "    when: {idle_beyond_average_cycle: {factor: 2, group_by: product}}\n"
            "    actions: [close_deal: {reason: idle too long}]\n",
        )
        assert rule_set.rules[0].actions == (CloseDeal(outcome="recycled", reason="idle too long"),)


class TestStreamProblems:
    """A stream refused for one of its steps is the only problem: the rules enrolling it are not
    told it is unknown, and the step is counted from 1, as rule tests count ``step:``."""

    TEXT = (
        "rules:\n  - id: nurture-cold\n    when: {field: score, at_least: 1}\n"
        "    actions: [enroll: three-step]\n"
        "  - id: nurture-warm\n    when: {field: score, at_least: 50}\n"
        "    actions: [enroll: three-step]\n"
        "streams:\n  - id: three-step\n    steps:\n"
        "      - {template: a}\n      - {template: b, after: 3days}\n"
        "      - {templat: c, after: 2d}\n"
    )

    def test_only_the_step_is_blamed(self, rules: Path) -> None:
        assert problems(rules, **{"r.yaml": self.TEXT}) == [
            "rules/r.yaml:12:30: stream three-step, step 2: after: '3days' is not a duration; "
            "write a number and a unit (s, m, h, d, w), e.g. 90m",
            "rules/r.yaml:13:10: stream three-step, step 3: unknown key 'templat'; "
            "did you mean 'template'?",
        ]

    def test_a_stream_nobody_defined_is_still_unknown(self, rules: Path) -> None:
        text = self.TEXT.replace(
            "enroll: three-step]\n  - id: nurture-warm", "enroll: thre-step]\n  - id: nurture-warm"
        )
        assert problems(rules, **{"r.yaml": text})[0] == (
            "rules/r.yaml:4:23: rule nurture-cold: unknown stream 'thre-step'; "
            "did you mean 'three-step'?"
        )


class TestTheWholeSet:
    """Ids are unique across files; every problem of every file is reported in one pass."""

    def test_duplicate_rule_ids_across_files_name_both_places(self, rules: Path) -> None:
        other = "rules:\n  - id: x\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n"
        assert problems(
            rules,
            **{"a.yaml": GOOD, "b__b.yaml": other + GOOD.removeprefix("rules:\n")},
        ) == [
            "rules/b/b.yaml:5:9: rule hot-lead: duplicate id, already defined at rules/a.yaml:2:5"
        ]

    def test_duplicate_stream_ids(self, rules: Path) -> None:
        stream = "streams:\n  - id: n\n    steps: [{template: x}]\n"
        assert problems(rules, **{"a.yaml": stream, "b.yaml": stream}) == [
            "rules/b.yaml:2:9: stream n: duplicate id, already defined at rules/a.yaml:2:5"
        ]

    def test_every_problem_of_every_file_at_once_in_file_order(self, rules: Path) -> None:
        files: dict[str, str | bytes] = {
            "a.yaml": "rules:\n\t- x\n",
            "b.yaml": b"\xff\xfe",
            "c.yaml": GOOD.replace("score", "scroe").replace("mql", "mq"),
            "d.yaml": GOOD.replace("hot-lead", "other"),
        }
        assert problems(rules, **files) == [
            "rules/a.yaml:2:1: invalid YAML: a tab character here: YAML indents with spaces only"
            " (replace the tab with spaces)",
            "rules/b.yaml:1:1: not UTF-8 text: save the file as UTF-8",
            "rules/c.yaml:3:19: rule hot-lead: unknown lead field 'scroe'; did you mean score?",
            f"rules/c.yaml:4:26: rule hot-lead: unknown stage 'mq'; did you mean 'mql'? stages are {STAGES}",
        ]

    def test_load_rule_set_raises_with_every_problem(self, rules: Path) -> None:
        write(rules, "r.yaml", GOOD.replace("60", "lots"))
        with pytest.raises(ProblemsError) as caught:
            load_rule_set(rules, SETTINGS)
        assert (
            str(caught.value)
            == "rules/r.yaml:3:36: rule hot-lead: at_least: expected a number, found 'lots'"
        )
        assert caught.value.problems == [
            Problem(
                "rules/r.yaml", 3, 36, "rule hot-lead: at_least: expected a number, found 'lots'"
            )
        ]


class TestTemplates:
    """Every template a rule or stream uses is checked once, and reported where it is used."""

    def test_template_problems_are_reported_at_each_use(self, rules: Path) -> None:
        write(
            rules,
            "r.yaml",
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions:\n"
            "      - notify: {to: owner, template: missing}\n"
            "      - notify: {to: manager, template: fine}\n"
            "      - start_sla: {name: s, within: 1h, escalate: [{notify: owner, template: missing}]}\n"
            "streams:\n  - id: n\n    steps: [{template: fine}, {template: missing, after: 1d}]\n",
        )
        asked: list[str] = []

        def check_template(name: str) -> list[Problem]:
            asked.append(name)
            return (
                []
                if name == "fine"
                else [Problem(f"templates/{name}.txt", 0, 0, "no such template")]
            )

        rule_set, found = check_rule_set(rules, SETTINGS, check_template=check_template)
        assert rule_set is None
        assert [str(problem) for problem in found] == [
            "rules/r.yaml:5:17: rule a: template 'missing': templates/missing.txt: no such template",
            "rules/r.yaml:7:79: rule a: template 'missing': templates/missing.txt: no such template",
            "rules/r.yaml:10:42: stream n, step 2: template 'missing': templates/missing.txt: no such template",
        ]
        assert asked == ["missing", "fine"]  # each name checked once, in order of first use

    def test_a_missing_templates_folder_is_one_problem(self, rules: Path, tmp_path: Path) -> None:
        """Deleting templates/ gave one problem per template use (16 with the shipped rules)."""
        write(
            rules,
            "r.yaml",
            "rules:\n  - id: a\n    when: {field: score, at_least: 1}\n    actions:\n"
            "      - notify: {to: owner, template: one}\n"
            "      - notify: {to: manager, template: two}\n"
            "streams:\n  - id: n\n    steps: [{template: three}]\n",
        )
        catalog = TemplateCatalog(tmp_path / "gone", SETTINGS)
        rule_set, found = check_rule_set(rules, SETTINGS, check_template=catalog.check)
        assert rule_set is None
        assert [str(problem) for problem in found] == [
            f"{tmp_path / 'gone'}: templates folder not found"
        ]

    def test_a_number_names_its_operator(self, rules: Path) -> None:
        write(rules, "r.yaml", GOOD.replace("at_least: 60", 'at_least: "sixty"'))
        assert [str(problem) for problem in check_rule_set(rules, SETTINGS)[1]] == [
            "rules/r.yaml:3:36: rule hot-lead: at_least: expected a number, found 'sixty'"
        ]

    def test_without_a_checker_templates_are_not_looked_at(self, rules: Path) -> None:
        write(rules, "r.yaml", "streams:\n  - id: n\n    steps: [{template: missing}]\n")
        assert list(load_rule_set(rules, SETTINGS).streams) == ["n"]


class TestVersionAndFiles:
    """The version is a content hash; hidden files and Kubernetes' ``..data`` are skipped."""

    def test_git_commit_and_uncommitted_edits_are_in_the_version(self, tmp_path: Path) -> None:
        """In a checkout the version names the commit, and ``-dirty`` while edits are unsaved
        to git, so a status or an audit row never passes edited rules off as a commit's."""
        repo = tmp_path / "repo"
        write(repo / "rules", "r.yaml", GOOD)
        git = ["git", "-C", str(repo), "-c", "user.name=Ops", "-c", "user.email=o@example.com"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "."], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "rules"], check=True)
        commit = subprocess.run(
            [*git, "rev-parse", "--short=10", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        clean = load_rule_set(repo / "rules", SETTINGS).version
        assert clean.endswith(f"+git.{commit}")
        write(repo / "rules", "r.yaml", GOOD.replace("60", "61"))
        edited = load_rule_set(repo / "rules", SETTINGS).version
        assert edited.endswith(f"+git.{commit}-dirty")
        assert edited.split("+")[0] != clean.split("+")[0]

    def test_version_is_stable_for_the_same_content_and_changes_with_it(
        self, rules: Path, tmp_path: Path
    ) -> None:
        first = loaded(rules, GOOD).version
        assert loaded(rules, GOOD).version == first
        twin = tmp_path / "twin"
        write(twin, "r.yaml", GOOD)
        assert load_rule_set(twin, SETTINGS).version == first
        changed = loaded(rules, GOOD.replace("60", "61"))
        assert changed.version != first
        assert len(first) == 12
        assert all(c in "0123456789abcdef" for c in first)

    def test_rule_digest_changes_only_with_that_rule(self, rules: Path) -> None:
        other = (
            "  - id: other\n    when: {field: score, at_least: 1}\n    actions: [set_stage: mql]\n"
        )
        before = loaded(rules, GOOD + other)
        after = loaded(rules, GOOD + other.replace("at_least: 1", "at_least: 2"))
        assert before.rules[0].digest == after.rules[0].digest
        assert before.rules[1].digest != after.rules[1].digest

    def test_hidden_files_and_folders_and_editor_files_are_skipped(self, rules: Path) -> None:
        for name in (
            "..data/a.yaml",
            "..2026_03_02/a.yaml",
            ".a.yaml",
            ".git/x.yml",
            "a.yaml~",
            "#a.yaml#",
            "a.yaml.swp",
        ):
            write(rules, name, "junk: [")
        write(rules, "sub/b.yml", GOOD)
        write(rules, "a.yaml", GOOD.replace("hot-lead", "first"))
        assert [path.relative_to(rules).as_posix() for path in rule_files(rules)] == [
            "a.yaml",
            "sub/b.yml",
        ]
        rule_set = load_rule_set(rules, SETTINGS)
        assert [rule.id for rule in rule_set.rules] == ["first", "hot-lead"]
        assert rule_set.files == ("rules/a.yaml", "rules/sub/b.yml")


class TestScoringModelProblems:
    """A scoring model's mistakes, one line each in the author's words."""

    @staticmethod
    def criterion(extra: str) -> str:
        return (
            "scoring:\n  engagement:\n    - id: views\n      activity: page_view\n"
            f"      points: 2\n      {extra}\n"
        )

    def test_a_negative_duration_is_a_duration_that_must_be_positive(self, rules: Path) -> None:
        assert problems(
            rules,
            **{
                "a.yaml": self.criterion("half_life: -7d"),
                "b.yaml": self.criterion("window: -90d"),
            },
        ) == [
            "rules/a.yaml:6:18: scoring: criterion views: half_life: '-7d': a duration must be "
            "longer than zero; write 7d",
            "rules/b.yaml:6:15: scoring: criterion views: window: '-90d': a duration must be "
            "longer than zero; write 90d",
        ]

    @pytest.mark.parametrize("cap", ["twenty", "0", "-5", "true", "2.5"])
    def test_a_wrong_cap_is_one_problem(self, rules: Path, cap: str) -> None:
        found = "'twenty'" if cap == "twenty" else cap  # true as written, not Python's True
        assert problems(rules, **{"a.yaml": self.criterion(f"cap: {cap}")}) == [
            "rules/a.yaml:6:12: scoring: criterion views: cap: expected a whole number of "
            "points from 1 to 1,000,000, or {points: N, per: 7d} for a cap per period, "
            f"found {found}"
        ]

    def test_a_wrong_cap_per_period_is_one_problem(self, rules: Path) -> None:
        assert problems(
            rules,
            **{
                "a.yaml": self.criterion("cap: {per: 7d}"),
                "b.yaml": self.criterion("cap: {points: 3, per: -1d, pts: 4}"),
            },
        ) == [
            "rules/a.yaml:6:12: scoring: criterion views: cap: missing required key 'points' "
            "(a cap per period is {points: N, per: 7d})",
            "rules/b.yaml:6:12: scoring: criterion views: cap: per: '-1d': a duration must be "
            "longer than zero; write 1d; unknown key 'pts'; did you mean 'points'? "
            "(a cap per period is {points: N, per: 7d})",
        ]

    @pytest.mark.parametrize(
        ("activity", "found"), [("5", "5"), ("[page_view, 3]", "['page_view', 3]"), ("''", "''")]
    )
    def test_a_wrong_activity_is_one_problem(self, rules: Path, activity: str, found: str) -> None:
        """It was two, in pydantic's own type names (``activity.constrained-str: expected
        text``, ``activity.list[constrained-str]: expected a list``)."""
        text = (
            "scoring:\n  engagement:\n    - id: views\n"
            f"      activity: {activity}\n      points: 2\n"
        )
        assert problems(rules, **{"a.yaml": text}) == [
            "rules/a.yaml:4:17: scoring: criterion views: activity: expected an activity type "
            "(text of 1 to 60 characters, such as page_view) or a list of them, "
            f"found {found}"
        ]

    def test_a_fit_and_an_engagement_criterion_may_not_share_an_id(self, rules: Path) -> None:
        """Explain, the score history and `score fit` name a criterion by its id alone."""
        text = (
            "scoring:\n  fit:\n    - id: a\n      when: {field: company, is_set: true}\n"
            "      points: 5\n  engagement:\n    - id: a\n      activity: page_view\n"
            "      points: 5\n"
        )
        assert problems(rules, **{"a.yaml": text}) == [
            "rules/a.yaml:7:11: criterion a: duplicate id, already defined at rules/a.yaml:3:7"
        ]

    def test_caps_as_documented_load(self, rules: Path) -> None:
        write(rules, "a.yaml", self.criterion("cap: {points: 3, per: 7d}"))
        write(rules, "b.yaml", GOOD)
        model = load_rule_set(rules, SETTINGS).scoring
        assert model is not None
        assert (model.engagement[0].cap, model.engagement[0].cap_per) == (3, timedelta(days=7))

    def test_grade_bands_with_a_gap_are_refused(self, rules: Path) -> None:
        text = "scoring:\n  grades:\n    fit: {A: 25, C: 5}\n    engagement: {1: 30, 2: 15, 3: 5}\n"
        fewer = "scoring:\n  grades:\n    fit: {A: 25, B: 5}\n    engagement: {1: 30}\n"
        assert problems(rules, **{"a.yaml": text, "b.yaml": fewer}) == [
            "rules/a.yaml:3:5: scoring: grades: fit: band B is missing: give the bands from A "
            "on, without a gap (A, B, C; below the last is D)",
        ]
