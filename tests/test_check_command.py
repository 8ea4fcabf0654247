"""``leadflow check``: every problem as FILE:LINE:COL: rule ID: message, a summary, exit 0 or 1."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.rule_language.loader import load_rule_set

ROOT = Path(__file__).resolve().parents[1]
RULE = """\
rules:
  - id: hot-lead
    when: {field: score, at_least: 60}
    actions:
      - set_stage: mql
      - notify: {to: owner, template: welcome}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with config.yaml, one template and an empty rules folder, as the cwd."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text("paths:\n  rules: my-rules\n", encoding="utf-8")
    (tmp_path / "my-rules").mkdir()
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "welcome.subject.txt").write_text("Hello {{ lead.name }}\n", encoding="utf-8")
    (templates / "welcome.txt").write_text("Hi {{ lead.name }}, welcome.\n", encoding="utf-8")
    return tmp_path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["--config", "config.yaml", "check", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


class TestCheck:
    """A clean set prints a one-line summary and exits 0; any problem prints all and exits 1."""

    def test_a_good_set_prints_counts_and_version(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (project / "my-rules" / "mql.yaml").write_text(
            RULE + "streams:\n  - id: n\n    steps: [{template: welcome}]\n", encoding="utf-8"
        )
        (project / "config.yaml").write_text(
            "paths:\n  rules: my-rules\nmail:\n  tracking:\n    base_url: https://lf.example.com\n",
            encoding="utf-8",
        )
        settings = load_settings(project / "config.yaml", env={}).settings
        version = load_rule_set(project / "my-rules", settings).version
        assert check(capsys) == (0, [f"1 rule, 1 stream OK, version {version}"], "")

    @pytest.mark.parametrize(
        "marketing", ["streams:\n  - id: n\n    steps: [{template: welcome}]\n", ""]
    )
    def test_marketing_with_the_placeholder_link_is_warned(
        self, project: Path, capsys: pytest.CaptureFixture[str], marketing: str
    ) -> None:
        """A stream, or only a rule's notify to the lead, with no public URL of leadflow's
        and no page of the operator's: a warning line, still exit 0."""
        rule = RULE.replace("to: owner", "to: lead") if not marketing else RULE
        (project / "my-rules" / "mql.yaml").write_text(rule + marketing, encoding="utf-8")
        settings = load_settings(project / "config.yaml", env={}).settings
        rule_set = load_rule_set(project / "my-rules", settings)
        streams = f"{len(rule_set.streams)} stream{'' if len(rule_set.streams) == 1 else 's'}"
        assert check(capsys) == (
            0,
            [
                "warning: marketing email (nurture streams, notify to the lead) would carry the "
                "placeholder unsubscribe link "
                "https://example.com/unsubscribe?lead={external_id}&token={token} and no "
                "List-Unsubscribe header: set mail.tracking.base_url (the daemon's public URL, "
                "for leadflow's own unsubscribe page) or mail.unsubscribe_url (your own page)",
                f"1 rule, {streams} OK, version {rule_set.version}",
            ],
            "",
        )
        # Operational email only (notify the owner): nothing to warn of.
        (project / "my-rules" / "mql.yaml").write_text(RULE, encoding="utf-8")
        version = load_rule_set(project / "my-rules", settings).version
        assert check(capsys) == (0, [f"1 rule, 0 streams OK, version {version}"], "")

    def test_every_problem_then_the_count(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        rules = project / "my-rules"
        (rules / "a.yaml").write_text(
            RULE.replace("score", "scroe").replace("welcome", "welcom"), encoding="utf-8"
        )
        (rules / "b.yaml").write_bytes(b"rules:\n\t- id: x\n")
        code, lines, err = check(capsys)
        assert (code, err) == (1, "")
        assert lines == [
            "my-rules/a.yaml:3:19: rule hot-lead: unknown lead field 'scroe'; did you mean score?",
            "my-rules/a.yaml:6:17: rule hot-lead: template 'welcom':"
            f" {project}/templates/welcom.subject.txt: no template 'welcom';"
            f" templates in {project}/templates: welcome",
            "my-rules/b.yaml:2:1: invalid YAML: a tab character here: YAML indents with spaces only"
            " (replace the tab with spaces)",
            "3 problems",
        ]

    def test_an_empty_or_comment_only_file_is_a_problem(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Empty, blank, comment-only and '{}' files are refused, located, saying the two ways out;
        'rules: []' is the way to keep a file without rules."""
        rules = project / "my-rules"
        (rules / "a.yaml").write_bytes(b"")
        (rules / "b.yaml").write_text("  \n\n", encoding="utf-8")
        (rules / "c.yaml").write_text("# rules moved to d.yaml\n\n#  - id: old\n", encoding="utf-8")
        (rules / "d.yaml").write_text(RULE, encoding="utf-8")
        (rules / "e.yaml").write_text("# none for now\nrules: []\n", encoding="utf-8")
        (rules / "f.yaml").write_text("{}\n", encoding="utf-8")
        why = (
            ": delete it to remove its rules, or write 'rules: []' to keep it without any"
            " (refused so that a save cut short never removes live rules)"
        )
        assert check(capsys) == (
            1,
            [
                f"my-rules/a.yaml:1:1: the file is empty{why}",
                f"my-rules/b.yaml:1:1: the file is empty{why}",
                f"my-rules/c.yaml:1:1: the file holds only comments{why}",
                "my-rules/f.yaml:1:1: the file holds only an empty mapping ({}), with no rules:, "
                f"streams: or scoring: key{why}",
                "4 problems",
            ],
            "",
        )

    def test_a_template_that_does_not_render_is_a_problem(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (project / "templates" / "welcome.txt").write_text("Hi {{ lead.nme }}\n", encoding="utf-8")
        (project / "my-rules" / "a.yaml").write_text(RULE, encoding="utf-8")
        code, lines, _ = check(capsys)
        assert code == 1
        assert len(lines) == 2
        assert lines[0].startswith(
            f"my-rules/a.yaml:6:17: rule hot-lead: template 'welcome': {project}/templates/welcome.txt:1: "
        )
        assert "nme" in lines[0]
        assert lines[1] == "1 problem"

    def test_rules_option_overrides_the_configured_folder(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        other = project / "other"
        other.mkdir()
        (other / "r.yaml").write_text("rules: 5\n", encoding="utf-8")
        assert check(capsys, "--rules", "other") == (
            1,
            ["other/r.yaml:1:8: rules: expected a list (- item), found 5", "1 problem"],
            "",
        )

    def test_a_missing_folder_is_a_problem_not_a_traceback(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert check(capsys, "--rules", "nowhere") == (
            1,
            ["nowhere: rules folder not found", "1 problem"],
            "",
        )

    def test_a_rule_file_given_as_the_folder_names_its_folder(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (project / "other").mkdir()
        (project / "other" / "r.yaml").write_text("rules: []\n", encoding="utf-8")
        assert check(capsys, "--rules", "other/r.yaml") == (
            1,
            [
                "other/r.yaml: is a file; the rule set is a folder: give other (every file is read)",
                "1 problem",
            ],
            "",
        )

    def test_the_shipped_welcome_stream_says_what_it_sends(self) -> None:
        """It said "Three useful emails over two weeks" over two emails five days apart."""
        settings = load_settings(ROOT / "config.yaml", env={}).settings
        welcome = load_rule_set(ROOT / "rules", settings).streams["welcome"]
        assert welcome.description == "Two useful emails over a week."
        assert [(step.template, step.after) for step in welcome.steps] == [
            ("nurture_welcome", timedelta(0)),
            ("nurture_case_study", timedelta(days=5)),
        ]

    def test_the_shipped_rules_and_templates_pass(self, capsys: pytest.CaptureFixture[str]) -> None:
        settings = load_settings(ROOT / "config.yaml", env={}).settings
        version = load_rule_set(ROOT / "rules", settings).version
        rule_set = load_rule_set(ROOT / "rules", settings)
        code = main(["--config", str(ROOT / "config.yaml"), "check"])
        captured = capsys.readouterr()
        assert (code, captured.err) == (0, "")
        # The shipped config.yaml sets no public URL: its nurture streams would send the
        # placeholder unsubscribe link.
        assert captured.out == (
            "warning: marketing email (nurture streams, notify to the lead) would carry the "
            "placeholder unsubscribe link "
            "https://example.com/unsubscribe?lead={external_id}&token={token} and no "
            "List-Unsubscribe header: set mail.tracking.base_url (the daemon's public URL, "
            "for leadflow's own unsubscribe page) or mail.unsubscribe_url (your own page)\n"
            f"{len(rule_set.rules)} rules, {len(rule_set.streams)} streams, "
            f"a scoring model (disabled) OK, version {version}\n"
        )


class TestActivityTypes:
    """A scoring criterion's activity type a typo away from a known one is a warning line."""

    def test_a_misspelt_type_is_warned_of_and_the_set_passes(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (project / "my-rules" / "scoring.yaml").write_text(
            "scoring:\n  engagement:\n"
            "    - id: forms\n      activity: form_fil\n      points: 15\n"
            "    - id: crm\n      activity: [demo_request, page_view]\n      points: 5\n",
            encoding="utf-8",
        )
        code, lines, err = check(capsys)
        assert (code, err) == (0, "")
        assert lines[:-1] == [
            "my-rules/scoring.yaml:3:7: warning: scoring: criterion forms: activity 'form_fil' "
            "is not a type leadflow knows; did you mean 'form_fill'? (a type your CRM sends "
            "is fine)"
        ]
        assert lines[-1].startswith("0 rules, 0 streams, a scoring model OK, version ")

    def test_a_value_repeated_in_a_list_is_a_warning_line(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``in: [mql, mql]`` passes with a warning line at the repeat, exit 0."""
        (project / "my-rules" / "mql.yaml").write_text(
            "rules:\n  - id: a\n    when: {field: stage, in: [mql, mql]}\n"
            "    actions: [set_stage: sql]\n",
            encoding="utf-8",
        )
        code, lines, err = check(capsys)
        assert (code, err) == (0, "")
        assert lines[:-1] == [
            "my-rules/mql.yaml:3:36: warning: rule a: in: 'mql' is listed more than once "
            "(a repeat changes nothing; was another value meant?)"
        ]
        assert lines[-1].startswith("1 rule, 0 streams OK, version ")

    def test_a_number_for_a_text_field_is_a_problem(
        self, project: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (project / "my-rules" / "x.yaml").write_text(
            "rules:\n  - id: a\n    every: 5m\n    when: {field: email, equals: 5}\n"
            "    actions: [{set_stage: nurture}]\n",
            encoding="utf-8",
        )
        code, lines, err = check(capsys)
        assert (code, err) == (1, "")
        assert lines == [
            "my-rules/x.yaml:4:34: rule a: email is text: expected a text value, found 5 (a "
            'number; quote it: "5")',
            "1 problem",
        ]

    def test_the_types_leadflow_tracks_are_known(self) -> None:
        from leadflow.mail.tracking_hits import ACTIVITY_TYPES
        from leadflow.rule_language.scoring_model import KNOWN_ACTIVITY_TYPES

        assert set(ACTIVITY_TYPES.values()) <= set(KNOWN_ACTIVITY_TYPES)


@pytest.mark.parametrize("command", ["check", "config", "daemon"])
def test_a_calendar_time_off_the_clock_is_one_clear_line(
    tmp_path: Path, store_url: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``end: "25:00"`` said pydantic's "Input should be in a valid time format, hour value is
    outside expected range of 0-23"; each command says the file, key, value and range."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f'database:\n  url: {store_url}\ncalendar:\n  start: "09:00"\n  end: "25:00"\n',
        encoding="utf-8",
    )
    assert main(["-c", str(config), command]) == 1
    assert capsys.readouterr() == (
        "",
        f"error: {config}:5:3: calendar.end: expected a time of day from 00:00 to 24:00 "
        "(24:00 only as an end), got '25:00'\n",
    )
