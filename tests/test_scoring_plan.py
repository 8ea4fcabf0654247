"""``leadflow plan`` with a changed scoring model: every lead's score under both sides, compared.

A rules repository whose base commit holds a scoring model (``enabled: false``: the CRM's
scores count) and a store of six leads with hand-computed scores under that model at
2026-03-02T09:00Z. Turning the model on moves five scores; one lead newly reaches the MQL rule
and one stops matching it. On SQLite and PostgreSQL alike, and nothing is written.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from leadflow.cli import main
from leadflow.store.database import create_store_engine
from leadflow.store.tables import LEADS, SCORE_CHANGES

REPO = Path(__file__).resolve().parent.parent
MODEL = """\
scoring:
  description: Fit by industry, size and region plus engagement that halves every two weeks.
  enabled: false
  fit:
    - id: target-industry
      when: {field: attributes.industry, in: [software, fintech, healthcare]}
      points: 20
    - id: mid-market-or-larger
      when: {field: attributes.employees, at_least: 200}
      points: 15
    - id: served-region
      when: {field: attributes.region, in: [Central, East, West]}
      points: 5
    - id: free-mail-address
      description: A personal address is rarely a buyer.
      when:
        any:
          - {field: email, ends_with: "@gmail.com"}
          - {field: email, ends_with: "@yahoo.com"}
          - {field: email, ends_with: "@hotmail.com"}
      points: -15
  engagement:
    - id: pricing-page
      activity: page_view
      when: {field: properties.url, contains: /pricing}
      points: 10
      half_life: 7d
      cap: 20
    - id: page-view
      activity: page_view
      points: 2
      half_life: 14d
      cap: {points: 6, per: 1d}
    - id: content-download
      activity: [download, webinar]
      points: 8
      half_life: 30d
      cap: 24
    - id: email-engagement
      activity: [email_open, email_click]
      points: 1
      half_life: 14d
      cap: 5
    - id: form-fill
      activity: form_fill
      points: 15
      window: 90d
    - id: unsubscribed
      activity: unsubscribe
      points: -20
  grades:
    fit: {A: 35, B: 20, C: 5}
    engagement: {1: 30, 2: 15, 3: 5}
"""
"""A scoring model of the test's own (fit by industry, size, region and address), shipped
``enabled: false``: the hand computations below do not move when rules/scoring.yaml does."""
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW = "2026-03-02T09:00:00Z"

LEADS_AT_T0: list[tuple[str, int, str, str, dict[str, Any]]] = [
    # Under MODEL at T0:
    # fit 20+15+5 = 40; pricing view now 10 + page view 2 + form fill 15 = 27 -> 67, A2
    (
        "L1",
        30,
        "lead",
        "ann@acme.test",
        {"industry": "software", "employees": 500, "region": "East"},
    ),
    # fit 20+5-15 = 10, nothing done -> 10, C4 (70 stored: an MQL today, not with the model)
    ("L2", 70, "lead", "bob@gmail.com", {"industry": "fintech", "employees": 50, "region": "West"}),
    # fit 15+5 = 20; a download 30 days ago 8 x 0.5 = 4, a webinar now 8 -> 32 as stored, B3
    (
        "L3",
        32,
        "lead",
        "cy@gamma.test",
        {"industry": "retail", "employees": 1000, "region": "Central"},
    ),
    # fit 40; 7 opens capped at 5, unsubscribed -20 -> 25, A4; a customer, never an MQL again
    (
        "L4",
        10,
        "customer",
        "di@delta.test",
        {"industry": "healthcare", "employees": 300, "region": "East"},
    ),
    # fit 35; 5 views in a day 10 capped at 6, a form fill 100 days ago out of its window -> 41, A3
    (
        "L5",
        50,
        "nurture",
        "ed@eps.test",
        {"industry": "software", "employees": 200, "region": "North"},
    ),
    # fit 40, nothing done -> 40, A4; an MQL waiting for a rep: matches either way
    (
        "L6",
        20,
        "mql",
        "fay@phi.test",
        {"industry": "software", "employees": 1000, "region": "East"},
    ),
]
ACTIVITIES_AT_T0 = [
    ("L1", "page_view", T0, {"url": "https://acme.test/pricing"}),
    ("L1", "form_fill", T0 - timedelta(days=10), {}),
    ("L3", "download", T0 - timedelta(days=30), {}),
    ("L3", "webinar", T0, {}),
    *(("L4", "email_open", T0 - timedelta(minutes=index), {}) for index in range(7)),
    ("L4", "unsubscribe", T0, {}),
    *(("L5", "page_view", T0 - timedelta(hours=index), {"url": "/blog"}) for index in range(5)),
    ("L5", "form_fill", T0 - timedelta(days=100), {}),
]


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Ops", "-c", "user.email=ops@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def seed(store_url: str) -> None:
    engine = create_store_engine(store_url)
    old = T0 - timedelta(days=200)
    with engine.begin() as connection:
        ids = {}
        for external_id, score, stage, email, attributes in LEADS_AT_T0:
            ids[external_id] = connection.execute(
                insert(LEADS)
                .values(
                    external_id=external_id,
                    email=email,
                    score=score,
                    stage=stage,
                    attributes=attributes,
                    # L1 and L2 are new in their stage: the nurture rule reads them too.
                    stage_entered_at=T0 - timedelta(days=3) if external_id in {"L1", "L2"} else old,
                    created_at=old,
                    updated_at=old,
                )
                .returning(LEADS.c.id)
            ).scalar_one()
        connection.execute(
            insert(SCORE_CHANGES.metadata.tables["activities"]),
            [
                {
                    "external_id": f"A{index}",
                    "lead_id": ids[lead],
                    "type": kind,
                    "occurred_at": at,
                    "properties": properties,
                    "created_at": at,
                }
                for index, (lead, kind, at, properties) in enumerate(ACTIVITIES_AT_T0)
            ],
        )
    engine.dispose()


@pytest.fixture
def scoring_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str) -> Path:
    """The shipped rules and MODEL committed; the working tree turns the model on."""
    repo = tmp_path / "rules-repo"
    repo.mkdir()
    (repo / "config.yaml").write_text(
        f"database: {{url: '{store_url}'}}\npaths:\n  templates: {REPO / 'templates'}\n"
        "attributes:\n  leads: {region: string, industry: string, employees: integer}\n",
        encoding="utf-8",
    )
    shutil.copytree(REPO / "rules", repo / "rules")
    (repo / "rules" / "scoring.yaml").write_text(MODEL, encoding="utf-8")
    seed(store_url)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "shipped rules")
    scoring = repo / "rules" / "scoring.yaml"
    scoring.write_text(
        scoring.read_text(encoding="utf-8").replace("enabled: false", "enabled: true"),
        encoding="utf-8",
    )
    monkeypatch.chdir(repo)
    monkeypatch.delenv("LEADFLOW_CONFIG", raising=False)
    monkeypatch.delenv("LEADFLOW_DATABASE__URL", raising=False)
    return repo


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["plan", "--now", NOW, *args])
    return code, capsys.readouterr().out.splitlines()


BANDS = "-20 or less: 1, -19 to -10: 0, -9 to -1: 1, +1 to +9: 0, +10 to +19: 1, +20 or more: 2"


class TestScoringPlan:
    """The scores under both models, their moves, and the MQL rule's crossings, exactly."""

    def test_turning_the_model_on(
        self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Scores from the CRM at HEAD, from the model after: five move, L1 crosses 60 upwards
        and L2 falls under it; L6, an MQL waiting for a rep, matches either way."""
        code, out = plan(capsys, "--base", "HEAD")
        assert code == 0
        assert out[2:] == [
            "~ scoring model (enabled): scores from the CRM at HEAD, from the model in the "
            "working tree; 5 of 6 leads' scores change",
            f"    score change: {BANDS}; largest fall -60, largest rise +37",
            "    mql-assignment reads score: 1 newly matching, 1 no longer matching",
            "      + lead L1: 30 -> 67 (A2)",
            "      - lead L2: 70 -> 10 (C4)",
            "    nurture-new-leads reads score: 1 newly matching, 1 no longer matching",
            "      + lead L2: 70 -> 10 (C4)",
            "      - lead L1: 30 -> 67 (A2)",
            "",
            "3 rules unchanged. 2 leads and 0 deals would be treated differently.",
        ]

    def test_a_changed_model_with_a_limit_of_none(
        self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Both sides enabled, the working one values the target industry at 40, not 20: the
        base side is computed by its own model (not read from the store): L5 reaches 61 and
        becomes an MQL; --limit 0 keeps the counts but lists
        no lead."""
        git(scoring_repo, "commit", "-q", "-am", "scoring on")
        scoring = scoring_repo / "rules" / "scoring.yaml"
        text = scoring.read_text(encoding="utf-8")
        scoring.write_text(
            text.replace(
                "in: [software, fintech, healthcare]}\n      points: 20",
                "in: [software, fintech, healthcare]}\n      points: 40",
            ),
            encoding="utf-8",
        )
        code, out = plan(capsys, "--base", "HEAD", "--limit", "0")
        assert code == 0
        assert out[2:] == [
            "~ scoring model (changed): scores from the model at HEAD, from the model in the "
            "working tree; 5 of 6 leads' scores change",
            "    score change: -20 or less: 0, -19 to -10: 0, -9 to -1: 0, +1 to +9: 0, "
            "+10 to +19: 0, +20 or more: 5; largest fall none, largest rise +20",
            "    mql-assignment reads score: 1 newly matching, 0 no longer matching",
            "      + ... and 1 more",
            "    nurture-new-leads reads score: 0 newly matching, 0 no longer matching",
            "",
            "3 rules unchanged. 1 lead and 0 deals would be treated differently.",
        ]

    def test_markdown(self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        code, out = plan(capsys, "--base", "HEAD", "--format", "markdown")
        assert code == 0
        assert out[5:] == [
            "#### Scoring model: enabled",
            "",
            "Scores from the CRM at `HEAD`, from the model after this change: "
            "**5 of 6 leads' scores change.**",
            "",
            "| score change | leads |",
            "| --- | ---: |",
            "| -20 or less | 1 |",
            "| -19 to -10 | 0 |",
            "| -9 to -1 | 1 |",
            "| +1 to +9 | 0 |",
            "| +10 to +19 | 1 |",
            "| +20 or more | 2 |",
            "",
            "Largest fall -60, largest rise +37.",
            "",
            "<details><summary><code>mql-assignment</code> reads <code>score</code>: "
            "1 newly matching, 1 no longer matching</summary>",
            "",
            "- newly matching: lead L1: 30 -> 67 (A2)",
            "- no longer matching: lead L2: 70 -> 10 (C4)",
            "",
            "</details>",
            "",
            "<details><summary><code>nurture-new-leads</code> reads <code>score</code>: "
            "1 newly matching, 1 no longer matching</summary>",
            "",
            "- newly matching: lead L2: 70 -> 10 (C4)",
            "- no longer matching: lead L1: 30 -> 67 (A2)",
            "",
            "</details>",
            "",
            "3 rules unchanged.",
        ]

    def test_nothing_is_written(
        self, scoring_repo: Path, store_url: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        engine = create_store_engine(store_url)

        def state() -> list[object]:
            with engine.connect() as connection:
                return [
                    connection.execute(select(table).order_by(table.c.id)).all()
                    for table in (LEADS, SCORE_CHANGES)
                ]

        before = state()
        assert plan(capsys, "--base", "HEAD")[0] == 0
        assert state() == before
        engine.dispose()


class TestScoringPlanEdges:
    """Turning the model off is the mirror image; the crossings count toward --max-affected."""

    def test_turning_the_model_off(
        self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        git(scoring_repo, "commit", "-q", "-am", "scoring on")
        scoring = scoring_repo / "rules" / "scoring.yaml"
        scoring.write_text(
            scoring.read_text(encoding="utf-8").replace("enabled: true", "enabled: false"),
            encoding="utf-8",
        )
        code, out = plan(capsys, "--base", "HEAD", "--limit", "1")
        assert code == 0
        assert out[2:6] == [
            "~ scoring model (disabled): scores from the model at HEAD, from the CRM in the "
            "working tree; 5 of 6 leads' scores change",
            "    score change: -20 or less: 2, -19 to -10: 1, -9 to -1: 0, +1 to +9: 1, "
            "+10 to +19: 0, +20 or more: 1; largest fall -37, largest rise +60",
            "    mql-assignment reads score: 1 newly matching, 1 no longer matching",
            "      + lead L2: 10 -> 70",
        ]

    def test_a_half_life_of_a_second_values_a_download_a_month_old_at_0(
        self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """L3's download is 2,592,000 half-lives of 1s old: PostgreSQL's power() raised
        "value out of range: underflow" and plan blamed the store (exit 3). It is worth 0, so
        L3 is 28 (fit 20, the webinar now 8), not 32, as on SQLite."""
        scoring = scoring_repo / "rules" / "scoring.yaml"
        text = scoring.read_text(encoding="utf-8")
        assert text.count("points: 8\n      half_life: 30d") == 1
        scoring.write_text(
            text.replace("points: 8\n      half_life: 30d", "points: 8\n      half_life: 1s"),
            encoding="utf-8",
        )
        assert main(["check"]) == 0
        capsys.readouterr()
        code, out = plan(capsys, "--base", "HEAD")
        assert code == 0
        assert out[2:4] == [
            "~ scoring model (enabled): scores from the CRM at HEAD, from the model in the "
            "working tree; 6 of 6 leads' scores change",
            "    score change: -20 or less: 1, -19 to -10: 0, -9 to -1: 2, +1 to +9: 0, "
            "+10 to +19: 1, +20 or more: 2; largest fall -60, largest rise +37",
        ]

    def test_max_affected_counts_the_crossings(
        self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = main(["plan", "--now", NOW, "--base", "HEAD", "--max-affected", "1"])
        captured = capsys.readouterr()
        assert code == 1
        assert captured.out.splitlines()[-1] == (
            "3 rules unchanged. 2 leads and 0 deals would be treated differently."
        )
        assert "error: this change would treat 2 leads and deals differently" in captured.err


class TestPastNow:
    """A plan as of a past ``--now`` reads the store as it is: a lead that entered its stage
    after that instant is in no rule's counts, and an activity dated after it in no score.
    The plan said neither: L2, whose score the model takes from 70 to 10, was silently not
    "no longer matching" the MQL rule. One line now gives both counts."""

    PAST = "2026-02-26T09:00:00Z"
    """Four days before T0: L1 and L2 entered their stage after it (T0 - 3 days), and 15
    activities are dated after it (L1's pricing view, L3's webinar, L4's 7 opens and its
    unsubscribe, L5's 5 views)."""
    LEFT_OUT = (
        "Left out as of 2026-02-26 09:00:00 UTC: 2 leads that entered their stage after it "
        "(imported or moved since: no rule acts on them as of then) and 15 activities dated "
        "after it (no score counts them then)."
    )

    def test_text(self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Without the views, opens and webinar: L1 40 + the form fill 15 = 55, L3 20 + the
        download 26 days old 4 = 24, L4 40, L5 35, L6 40; L2 10."""
        assert main(["plan", "--now", self.PAST, "--base", "HEAD"]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[1:] == [
            self.LEFT_OUT,
            "",
            "~ scoring model (enabled): scores from the CRM at HEAD, from the model in the "
            "working tree; 6 of 6 leads' scores change",
            "    score change: -20 or less: 1, -19 to -10: 1, -9 to -1: 1, +1 to +9: 0, "
            "+10 to +19: 0, +20 or more: 3; largest fall -60, largest rise +30",
            "    mql-assignment reads score: 0 newly matching, 0 no longer matching",
            "    nurture-new-leads reads score: 0 newly matching, 0 no longer matching",
            "",
            "3 rules unchanged. 0 leads and 0 deals would be treated differently.",
        ]

    def test_markdown(self, scoring_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
        args = ["plan", "--now", self.PAST, "--base", "HEAD", "--format", "markdown"]
        assert main(args) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[2].startswith("Store as of 2026-02-26T09:00:00+00:00; ")
        assert out[3:8] == ["", self.LEFT_OUT, "", "", "#### Scoring model: enabled"]
