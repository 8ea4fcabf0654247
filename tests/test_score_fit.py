"""``leadflow score fit``: points learned from outcomes, measured on a seeded holdout.

Leads are generated from a known logistic ground truth (industry, size, page views and
webinars with a 30-day half-life); on SQLite and PostgreSQL the command:
- proposes points with the truth's signs and order, in a file that loads (and passes
  ``leadflow check``) in place of the shipped model;
- reports holdout figures that equal the ones recomputed here from the same split and the
  proposed file alone (ROC AUC of the points, top-decile lift), and the baseline's AUC;
- reads outcomes from deals (a won deal, or only lost ones; or one example per deal);
- says what is wrong with its options in one line, and what to install without scikit-learn.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
import yaml
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sqlalchemy import Engine, insert, select

from leadflow.cli import main
from leadflow.config import load_settings
from leadflow.rule_language.loader import load_rule_set
from leadflow.store.tables import ACTIVITIES, DEALS, LEADS

ROOT = Path(__file__).resolve().parents[1]
AS_OF = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HALF_LIFE_DAYS = 30.0
LEADS_MADE = 800
SEED = 7


def ground_truth(seed: int = 11) -> list[dict[str, Any]]:
    """Leads whose conversion follows a known logistic model:
    logit = -1.2 + 1.6 software - 1.2 retail + 0.8 (employees >= 500) + 0.5 x decayed page
    views + 1.4 x decayed webinars."""
    rng = random.Random(seed)
    made = []
    for number in range(1, LEADS_MADE + 1):
        industry = rng.choices(["software", "retail", "logistics"], weights=[3, 3, 4])[0]
        employees = rng.choice([20, 50, 120, 300, 600, 1500, 5000])
        activities = []
        for kind, count in (("page_view", rng.randint(0, 5)), ("webinar", rng.randint(0, 1))):
            activities += [(kind, rng.uniform(0, 90)) for _ in range(count)]
        views = sum(
            0.5 ** (age / HALF_LIFE_DAYS) for kind, age in activities if kind == "page_view"
        )
        webinars = sum(
            0.5 ** (age / HALF_LIFE_DAYS) for kind, age in activities if kind == "webinar"
        )
        logit = (
            -1.2
            + 1.6 * (industry == "software")
            - 1.2 * (industry == "retail")
            + 0.8 * (employees >= 500)
            + 0.5 * views
            + 1.4 * webinars
        )
        converted = rng.random() < 1 / (1 + math.exp(-logit))
        outcome = rng.random() < 0.9  # a tenth has no known outcome yet
        made.append(
            {
                "id": number,
                "attributes": {
                    "industry": industry,
                    "employees": employees,
                    **({"converted": converted} if outcome else {}),
                },
                "activities": activities,
            }
        )
    return made


def store_leads(engine: Engine, made: list[dict[str, Any]]) -> None:
    old = AS_OF - timedelta(days=200)
    with engine.begin() as connection:
        connection.execute(
            insert(LEADS),
            [
                {
                    "id": lead["id"],
                    "external_id": f"L{lead['id']}",
                    "email": f"lead{lead['id']}@example.com",
                    "stage": "lead",
                    "stage_entered_at": old,
                    "attributes": lead["attributes"],
                    "created_at": old,
                    "updated_at": old,
                }
                for lead in made
            ],
        )
        activities = [
            {
                "external_id": f"A{lead['id']}-{index}",
                "lead_id": lead["id"],
                "type": kind,
                "occurred_at": AS_OF - timedelta(days=age),
                "properties": {},
                "created_at": AS_OF,
            }
            for lead in made
            for index, (kind, age) in enumerate(lead["activities"])
        ]
        connection.execute(insert(ACTIVITIES), activities)


CURRENT_MODEL = """\
scoring:
  enabled: false
  fit:
    - id: target-industry
      when: {field: attributes.industry, in: [software]}
      points: 20
    - id: enterprise
      when: {field: attributes.employees, at_least: 1000}
      points: 10
  engagement:
    - id: recent-webinar
      activity: webinar
      points: 5
      window: 60d
"""
"""The current model: its criteria join the candidates; each is one the hand scorer reads."""


@pytest.fixture
def project(tmp_path: Path, store_url: str, engine: Engine) -> Path:
    """A config on the test's store with the shipped rules and a current scoring model."""
    shutil.copytree(ROOT / "rules", tmp_path / "rules")
    (tmp_path / "rules" / "scoring.yaml").write_text(CURRENT_MODEL, encoding="utf-8")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    config = {
        "database": {"url": store_url},
        "paths": {"rules": "rules", "templates": "templates", "state": "state"},
        "attributes": {
            "leads": {
                "region": "string",
                "industry": "string",
                "employees": "integer",
                "converted": "boolean",
            }
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return tmp_path / "config.yaml"


def fit(config: Path, *options: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    folder = config.parent
    capsys.readouterr()
    code = main(
        [
            "-c",
            str(config),
            "score",
            "fit",
            "--as-of",
            AS_OF.isoformat(),
            "--seed",
            str(SEED),
            "--output",
            str(folder / "scoring.proposed.yaml"),
            "--format",
            "json",
            *options,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    return report


def proposed_points(path: Path) -> dict[str, dict[str, Any]]:
    section = yaml.safe_load(path.read_text(encoding="utf-8"))["scoring"]
    return {item["id"]: item for item in [*section["fit"], *section["engagement"]]}


def score_by_hand(lead: dict[str, Any], criteria: dict[str, dict[str, Any]]) -> int:
    """The proposed file's score of a generated lead, computed here from the YAML alone."""
    total = 0
    for item in criteria.values():
        if "when" in item:
            condition = item["when"]
            value = lead["attributes"].get(condition["field"].removeprefix("attributes."))
            if "equals" in condition:
                met = value == condition["equals"]
            elif "in" in condition:
                met = value in condition["in"]
            else:
                met = value is not None and value >= condition["at_least"]
            if "activity" not in item:
                total += item["points"] if met else 0
                continue
        assert "when" not in item, "generated engagement criteria have no condition"
        kinds = item["activity"] if isinstance(item["activity"], list) else [item["activity"]]
        done = [age for kind, age in lead["activities"] if kind in kinds]
        if "window" in item:
            raw = item["points"] * sum(1 for age in done if age < float(item["window"][:-1]))
        elif "half_life" in item:
            text = item["half_life"]
            half_life = float(text[:-1]) / (24 if text.endswith("h") else 1)  # in days
            raw = item["points"] * sum(0.5 ** (age / half_life) for age in done)
        else:
            raw = item["points"] * len(done)
        cap = item.get("cap")
        if cap is not None:
            raw = math.copysign(min(abs(raw), cap), raw)
        total += int(math.copysign(math.floor(abs(raw) + 0.5), raw))
    return total


def test_fit_recovers_the_ground_truth_and_reports_exact_holdout_figures(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proposal gives software, big companies, page views and webinars positive points
    and retail negative, webinars more than page views; its holdout AUC and top-decile lift
    are the ones recomputed from the same seeded split and the proposed file; the baseline's
    and the current model's AUC are reported; the proposal passes ``leadflow check`` in place
    of the shipped model."""
    made = ground_truth()
    store_leads(engine, made)
    report = fit(project, "--outcome", "attributes.converted", capsys=capsys)
    proposal = project.parent / "scoring.proposed.yaml"
    criteria = proposed_points(proposal)

    assert criteria["target-industry"]["points"] > 0 > criteria["industry-retail"]["points"]
    assert report["same_as"] == {
        "industry-software": "target-industry",
        "employees-at-least-1500": "enterprise",  # no lead between 1,000 and 1,500
    }
    assert criteria["webinar"]["points"] > criteria["page_view"]["points"] > 0
    assert "target-industry" in {c["id"] for c in report["criteria"]}  # the current model's
    assert all(item["points"] != 0 for item in criteria.values())

    known = [lead for lead in made if "converted" in lead["attributes"]]
    labels = [int(lead["attributes"]["converted"]) for lead in known]
    assert report["examples"] == len(known)
    assert report["positive"] == sum(labels)
    assert report["unknown_outcome"] == LEADS_MADE - len(known)
    _train, test = train_test_split(
        list(range(len(known))), test_size=0.3, stratify=labels, random_state=SEED
    )
    test = sorted(test)
    assert report["holdout_lead_ids"] == [known[index]["id"] for index in test]
    scores = [score_by_hand(known[index], criteria) for index in test]
    held = [labels[index] for index in test]
    assert report["auc"]["points"] == roc_auc_score(held, scores)
    order = sorted(range(len(test)), key=lambda i: (-scores[i], i))
    size = -(-len(test) // 10)  # numpy's array_split: the first len % 10 deciles get one more
    top = order[: len(test) // 10 + (1 if len(test) % 10 else 0)]
    assert size == len(top)
    assert report["top_decile_lift"] == pytest.approx(
        (sum(held[i] for i in top) / len(top)) / (sum(held) / len(held)), rel=1e-12
    )
    assert [row["examples"] for row in report["deciles"]] == [
        len(test) // 10 + (1 if number < len(test) % 10 else 0) for number in range(10)
    ]
    assert 0.7 < report["auc"]["fitted"] < 1
    assert 0.7 < report["auc"]["baseline"] < 1
    assert report["auc"]["current_model"] is not None
    assert report["auc"]["stored_score"] is None  # every stored score is 0
    assert report["strongest_penalty_chosen"] is False

    rules = project.parent / "rules"
    (rules / "scoring.yaml").unlink()
    shutil.copy(proposal, rules / "scoring.yaml")
    settings = load_settings(project, env={}).settings
    assert load_rule_set(rules, settings).scoring is not None
    assert main(["-c", str(project), "check"]) == 0


def test_a_half_life_of_an_hour_reads_activities_thousands_of_half_lives_old_as_0(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under ``--half-life 1h`` a view 45 days old is 1,080 half-lives old: PostgreSQL's
    power() raised "value out of range: underflow" (a traceback, exit 1); it is worth 0, as on
    SQLite, and the holdout's points AUC is the one the proposed file gives by hand."""
    made = ground_truth()
    store_leads(engine, made)
    assert max(age for lead in made for _kind, age in lead["activities"]) * 24 > 1075
    report = fit(project, "--outcome", "attributes.converted", "--half-life", "1h", capsys=capsys)
    criteria = proposed_points(project.parent / "scoring.proposed.yaml")
    assert {item["half_life"] for item in criteria.values() if "half_life" in item} == {"1h"}
    known = {lead["id"]: lead for lead in made if "converted" in lead["attributes"]}
    held = report["holdout_lead_ids"]
    scores = [score_by_hand(known[lead_id], criteria) for lead_id in held]
    labels = [int(known[lead_id]["attributes"]["converted"]) for lead_id in held]
    assert report["auc"]["points"] == roc_auc_score(labels, scores)


def test_the_shipped_model_rewritten_passes_check(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the shipped model as the current one (``any`` of email endings, a cap per day, a
    list of activity types), every criterion that varies gets points (a large PDO keeps them
    all), caps scale with the points, and the file passes ``leadflow check`` in its place."""
    rules = project.parent / "rules"
    shutil.copy(ROOT / "rules" / "scoring.yaml", rules / "scoring.yaml")
    made = ground_truth()
    store_leads(engine, made)
    with engine.begin() as connection:
        connection.execute(
            LEADS.update()
            .where(LEADS.c.id % 4 == 0)
            .values(email=LEADS.c.external_id + "@gmail.com")
        )
    fit(
        project,
        "--outcome",
        "attributes.converted",
        "--points-to-double-odds",
        "1000",
        capsys=capsys,
    )
    proposal = project.parent / "scoring.proposed.yaml"
    criteria = proposed_points(proposal)
    assert {"free-mail-address", "page-view", "content-download"} <= set(criteria)
    assert (
        criteria["free-mail-address"]["when"]
        == yaml.safe_load((ROOT / "rules" / "scoring.yaml").read_text(encoding="utf-8"))["scoring"][
            "fit"
        ][2]["when"]
    )
    page_view = criteria["page-view"]
    assert page_view["cap"] == {
        "points": max(1, round(6 * abs(page_view["points"]) / 2)),
        "per": "1d",
    }
    (rules / "scoring.yaml").unlink()
    shutil.copy(proposal, rules / "scoring.yaml")
    assert main(["-c", str(project), "check"]) == 0


def test_lift_chart_has_a_bar_per_decile(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--chart`` writes an SVG with ten bars, as tall as the report's lifts (the top
    decile's above the bottom one's)."""
    store_leads(engine, ground_truth())
    chart = tmp_path / "lift.svg"
    report = fit(project, "--outcome", "attributes.converted", "--chart", str(chart), capsys=capsys)
    root = ElementTree.parse(chart).getroot()
    bars = [
        node for node in root.iter("{http://www.w3.org/2000/svg}rect") if node.get("class") == "bar"
    ]
    assert len(bars) == 10
    heights = [float(bar.get("height", "0")) for bar in bars]
    lifts = [row["lift"] for row in report["deciles"]]
    assert [h / heights[0] for h in heights] == pytest.approx(
        [x / lifts[0] for x in lifts], abs=0.01
    )
    assert heights[0] > heights[-1]
    assert report["chart"] == str(chart)


@pytest.mark.slow
def test_the_table_report_names_every_figure(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """For a person: the outcome and counts, the AUC table with the baseline, the deciles and
    where the proposal went."""
    store_leads(engine, ground_truth())
    proposal = tmp_path / "proposal.yaml"
    capsys.readouterr()
    code = main(
        [
            "-c",
            str(project),
            "score",
            "fit",
            "--outcome",
            "attributes.converted",
            "--as-of",
            AS_OF.isoformat(),
            "--output",
            str(proposal),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "718 examples (373 positive), 82 without a known outcome left out" in " ".join(
        out.split()
    )
    for label in (
        "fitted model (probabilities)",
        "proposed points (integer score)",
        "plain logistic regression on the raw columns",
        "current model, recomputed as of --as-of",
        "Calibration and lift by score decile",
    ):
        assert label in out
    assert f"Wrote {proposal}" in " ".join(out.split())
    # The figures are those of the JSON report of the same fit (the split is seeded).
    as_json = tmp_path / "as_json.yaml"
    args = ["-c", str(project), "score", "fit", "--outcome", "attributes.converted"]
    args += ["--as-of", AS_OF.isoformat(), "--output", str(as_json), "--format", "json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for label, key in (
        ("fitted model (probabilities)", "fitted"),
        ("proposed points (integer score)", "points"),
        ("plain logistic regression on the raw columns", "baseline"),
    ):
        (line,) = [line for line in out.splitlines() if label in line]
        assert line.split()[-2:] == [f"{report['auc'][key]:.3f}", "│"], line
    assert proposal.read_text(encoding="utf-8") == as_json.read_text(encoding="utf-8")
    assert proposal.read_text(encoding="utf-8").startswith("# ")


@pytest.mark.slow
def test_outcome_from_deals_per_lead_and_per_deal(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--outcome deals``: a lead with a won deal is positive, one with only lost deals
    negative, one without a closed deal left out; ``--unit deal`` makes each closed deal an
    example, its lead's deals all on one side of the split."""
    made = ground_truth()
    store_leads(engine, made)
    deals = []
    for lead in made[:600]:
        won = lead["attributes"].get("converted", False)
        outcomes = ["won", "lost"] if won else ["lost", "lost"]
        if lead["id"] % 50 == 0:
            outcomes = [None]  # still open: no known outcome
        deals += [
            {
                "external_id": f"D{lead['id']}-{index}",
                "lead_id": lead["id"],
                "stage": outcome or "open",
                "outcome": outcome,
                "attributes": {},
                "created_at": AS_OF,
                "updated_at": AS_OF,
            }
            for index, outcome in enumerate(outcomes)
        ]
    with engine.begin() as connection:
        connection.execute(insert(DEALS), deals)
    open_leads = sum(1 for lead in made[:600] if lead["id"] % 50 == 0)
    positive = sum(
        1 for lead in made[:600] if lead["attributes"].get("converted") and lead["id"] % 50
    )
    per_lead = fit(project, "--outcome", "deals", capsys=capsys)
    assert per_lead["examples"] == 600 - open_leads
    assert per_lead["positive"] == positive
    assert per_lead["unknown_outcome"] == LEADS_MADE - 600 + open_leads

    per_deal = fit(
        project,
        "--outcome",
        "deals",
        "--unit",
        "deal",
        "--exclude",
        "attributes.industry,page_view",
        capsys=capsys,
    )
    assert {item["id"] for item in per_deal["criteria"] if item["origin"] == "from the data"} == {
        "converted",  # the outcome is deals here: the attribute is a criterion like any other
        "employees-at-least-50",
        "employees-at-least-120",
        "employees-at-least-300",
        "webinar",
        "webinar-ever",
    }
    assert per_deal["same_as"] == {"employees-at-least-1500": "enterprise"}
    assert per_deal["examples"] == 2 * (600 - open_leads)
    assert per_deal["positive"] == positive
    assert per_deal["unknown_outcome"] == open_leads
    held = per_deal["holdout_lead_ids"]
    assert all(held.count(lead_id) == 2 for lead_id in held)


def test_outcome_from_stages(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--outcome stage --positive customer --negative disqualified,recycled``: leads in other
    stages are left out, and counted. A current criterion reading the stage, or the days in
    it (a customer since last week has few), is not fitted: it would predict the outcome."""
    (project.parent / "rules" / "scoring.yaml").write_text(
        CURRENT_MODEL.replace(
            "  engagement:\n",
            "    - id: is-customer\n"
            "      when: {field: stage, equals: customer}\n"
            "      points: 30\n"
            "    - id: settled-in\n"
            "      when: {all: [{field: days_in_stage, at_least: 7}, {field: email, is_set: true}]}\n"
            "      points: 2\n"
            "  engagement:\n",
        ),
        encoding="utf-8",
    )
    made = ground_truth()
    store_leads(engine, made)
    stages = {}
    for lead in made:
        converted = lead["attributes"].get("converted")
        stages[lead["id"]] = {True: "customer", False: "disqualified"}.get(converted, "mql")
        if converted is False and lead["id"] % 3 == 0:
            stages[lead["id"]] = "recycled"
    with engine.begin() as connection:
        for stage in ("customer", "disqualified", "recycled"):
            ids = [lead_id for lead_id, value in stages.items() if value == stage]
            connection.execute(LEADS.update().where(LEADS.c.id.in_(ids)).values(stage=stage))
    report = fit(
        project,
        "--outcome",
        "stage",
        "--positive",
        "Customer",
        "--negative",
        "disqualified, recycled",
        capsys=capsys,
    )
    assert report["positive"] == sum(1 for stage in stages.values() if stage == "customer")
    assert report["examples"] == sum(1 for stage in stages.values() if stage != "mql")
    assert report["unknown_outcome"] == sum(1 for stage in stages.values() if stage == "mql")
    assert report["outcome"] == "stage: customer (positive) vs disqualified, recycled (negative)"
    assert report["current_left_out"][:2] == [
        {"id": "is-customer", "current_points": 30, "reason": "reads the outcome stage"},
        {
            "id": "settled-in",
            "current_points": 2,
            "reason": "reads days_in_stage, which gives away the outcome stage",
        },
    ]
    assert {"is-customer", "settled-in"}.isdisjoint(item["id"] for item in report["criteria"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--outcome", "attributes.won"],
            "error: --outcome attributes.won: 'won' is not declared under attributes.leads "
            "(declared: converted, employees, industry, region)",
        ),
        (
            ["--outcome", "stage"],
            "error: --outcome stage: say which stages are which, e.g. --positive customer "
            "--negative disqualified,recycled",
        ),
        (
            ["--outcome", "stage", "--positive", "customer", "--negative", "gone"],
            "error: --outcome stage: unknown stage gone; stages are subscriber, lead, mql, sql, "
            "opportunity, customer, nurture, recycled, disqualified",
        ),
        (
            ["--outcome", "attributes.converted", "--positive", "yes"],
            "error: --outcome attributes.converted: give both --positive and --negative, or "
            "neither (then true/yes/1/won/converted vs false/no/0/lost)",
        ),
        (
            ["--outcome", "deals", "--exclude", "attributes.region,attributes.size"],
            "error: --exclude attributes.size: 'size' is not declared under attributes.leads",
        ),
        (
            ["--outcome", "attributes.converted", "--unit", "deal"],
            "error: --unit deal: only with --outcome deals (one example per closed deal)",
        ),
        (
            ["--outcome", "attributes.converted"],
            "error: --outcome attributes.converted: 0 positive and 0 negative leads "
            "(0 without a known outcome); a fit needs at least 10 of each",
        ),
        (
            ["--outcome", "attributes.converted", "--output", "rules/proposed.yaml"],
            "error: --output rules/proposed.yaml: inside the rules folder rules, where a second "
            "scoring model would make the rule set invalid; write it elsewhere and move it in "
            "place of the old model after review",
        ),
    ],
)
def test_option_mistakes_are_one_line(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    options: list[str],
    message: str,
) -> None:
    """A wrong outcome field, stage, option pair or output place: one line, exit 1."""
    monkeypatch.chdir(project.parent)
    capsys.readouterr()
    code = main(["-c", str(project), "score", "fit", *options])
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [message]


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ("-1", "Input should be greater than or equal to 0"),
        ("99999999999", "Input should be less than or equal to 4294967295"),
    ],
)
def test_a_seed_outside_the_generators_range_is_a_usage_error(
    project: Path, capsys: pytest.CaptureFixture[str], seed: str, reason: str
) -> None:
    """A seed the split's generator refuses was a ``ValueError: Seed must be between 0 and
    2**32 - 1`` traceback; it is refused by the option like ``--holdout``, exit 2."""
    capsys.readouterr()
    options = ["--outcome", "deals", "--unit", "deal", "--seed", seed]
    code = main(["-c", str(project), "score", "fit", *options])
    assert (code, capsys.readouterr().err.splitlines()[-1]) == (
        2,
        f"Error: Invalid value for '--seed': {reason}",
    )


def test_an_as_of_in_year_one_is_one_line(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The model's look-back before 0001-01-01 is before any date: an OverflowError traceback,
    now one line, exit 1."""
    store_leads(engine, ground_truth())
    capsys.readouterr()
    options = ["--outcome", "attributes.converted", "--as-of", "0001-01-01T00:00:00Z"]
    code = main(["-c", str(project), "score", "fit", *options, "-o", str(tmp_path / "p.yaml")])
    assert (code, capsys.readouterr().err.splitlines()) == (
        1,
        [
            "error: --as-of 0001-01-01T00:00:00Z: too close to the calendar's first day: the "
            "scoring model looks back from it (windows, half-lives); give a later time"
        ],
    )


def test_without_scikit_learn_it_says_what_to_install(tmp_path: Path) -> None:
    """With scikit-learn not importable the command prints the extra to install, exit 1."""
    script = (
        "import sys; sys.modules['sklearn'] = None; from leadflow.cli import main; "
        "sys.exit(main(['score', 'fit', '--outcome', 'deals']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "error: leadflow score fit needs scikit-learn: pip install 'leadflow[learn]'"
    ]


def test_help_loads_neither_scikit_learn_nor_numpy(tmp_path: Path) -> None:
    """``score fit --help`` (and every other command) starts without the learn extra."""
    script = (
        "import sys; from leadflow.cli import main; main(['score', 'fit', '--help']); "
        "print(sorted(m for m in ('sklearn', 'numpy', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--outcome" in done.stdout
    assert done.stdout.splitlines()[-1] == "[]"


ROUNDED_CURRENT_MODEL = """\
scoring:
  enabled: false
  fit:
    - id: target-industry
      when: {field: attributes.industry, in: [software]}
      points: 20
  engagement:
    - id: page-views
      activity: page_view
      points: 1
      half_life: 30d
      cap: 3
"""
"""A current engagement criterion worth 1 point with a half-life: its whole points are coarse
(a lead's 1.4 fresh views are 1 point), the proposal's many points per view are not."""


def test_the_reported_holdout_is_what_the_proposal_scores_once_deployed(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proposal, moved into the rules folder and run as of ``--as-of``, stores for each
    holdout lead the score the report measured: the same points AUC and the same decile score
    ranges. A current engagement criterion is weighed by its capped value before rounding
    (the deployed model rounds its new points times that value), not by the old model's whole
    points, which differ from it by up to half the new points per old point."""
    from leadflow.scoring.rescoring import rescore

    rules = project.parent / "rules"
    (rules / "scoring.yaml").write_text(ROUNDED_CURRENT_MODEL, encoding="utf-8")
    store_leads(engine, ground_truth())
    report = fit(
        project, "--outcome", "attributes.converted", "--points-to-double-odds", "40", capsys=capsys
    )
    proposal = project.parent / "scoring.proposed.yaml"
    assert abs(proposed_points(proposal)["page-views"]["points"]) >= 4  # the case at hand
    shutil.copy(proposal, rules / "scoring.yaml")
    settings = load_settings(project, env={}).settings
    model = load_rule_set(rules, settings).scoring
    assert model is not None
    rescore(engine, model, AS_OF)
    with engine.connect() as connection:
        stored = {
            row.id: row.score for row in connection.execute(select(LEADS.c.id, LEADS.c.score))
        }
        converted = {
            row.id: row.attributes.get("converted") for row in connection.execute(LEADS.select())
        }
    held = report["holdout_lead_ids"]
    scores = [stored[lead_id] for lead_id in held]
    labels = [int(converted[lead_id]) for lead_id in held]
    assert report["auc"]["points"] == roc_auc_score(labels, scores)
    order = sorted(range(len(held)), key=lambda i: (-scores[i], i))
    ranges, start = [], 0
    for row in report["deciles"]:
        part = order[start : start + row["examples"]]
        start += row["examples"]
        ranges.append((min(scores[i] for i in part), max(scores[i] for i in part)))
    assert [(row["score_low"], row["score_high"]) for row in report["deciles"]] == ranges


def test_the_current_criteria_a_proposal_drops_are_named_with_the_reason(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """The proposal replaces the current model: a current criterion the data cannot judge (a
    rival's domain no lead has) or that duplicates another is not in it, and the file, the
    table and the JSON say which, with its points and why; it was silently gone (the table
    said "the others' points round to 0")."""
    rules = project.parent / "rules"
    model = CURRENT_MODEL.replace(
        "  engagement:\n",
        "    - id: rival-domain\n"
        "      when: {field: email, ends_with: '@rival.example'}\n"
        "      points: -40\n"
        "    - id: software-again\n"
        "      when: {field: attributes.industry, equals: software}\n"
        "      points: 5\n"
        "  engagement:\n",
    )
    (rules / "scoring.yaml").write_text(model, encoding="utf-8")
    store_leads(engine, ground_truth())
    report = fit(project, "--outcome", "attributes.converted", capsys=capsys)
    assert report["current_left_out"] == [
        {"id": "rival-domain", "current_points": -40, "reason": "matched no example"},
        {
            "id": "software-again",
            "current_points": 5,
            "reason": "matched the same examples as target-industry",
        },
        {"id": "recent-webinar", "current_points": 5, "reason": "its points round to 0"},
    ]
    text = (project.parent / "scoring.proposed.yaml").read_text(encoding="utf-8")
    assert (
        "# Not in this proposal, from the current model (add back by hand what should stay):\n"
        "#   rival-domain (-40 points): matched no example\n"
        "#   software-again (+5 points): matched the same examples as target-industry\n"
        "#   recent-webinar (+5 points): its points round to 0\n"
    ) in text
    code = main(
        ["-c", str(project), "score", "fit", "--outcome", "attributes.converted", "--as-of",
         AS_OF.isoformat(), "--seed", str(SEED), "--output",
         str(project.parent / "scoring.proposed.yaml")]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert (
        "Not in this proposal, from the current model (add back by hand what should stay):\n"
        "  rival-domain (-40 points): matched no example\n"
        "  software-again (+5 points): matched the same examples as target-industry\n"
        "  recent-webinar (+5 points): its points round to 0\n"
    ) in out


def test_an_engagement_criterion_every_example_has_is_kept_not_reported_dropped() -> None:
    """Every example visited (support 4 of 4), but how much varies: the criterion is fitted
    (7 points) and stays in the proposal, so it is not listed as left out "matched every
    example" (found in review: the support check ran before the points check)."""
    from types import SimpleNamespace

    from leadflow.scoring.learning import Learned

    def learned(points: int, kept: list[int]) -> Learned:
        return Learned(
            outcome=None,  # type: ignore[arg-type]  # not read by current_left_out
            as_of=None,  # type: ignore[arg-type]
            examples=SimpleNamespace(labels=[0, 1, 0, 1]),  # type: ignore[arg-type]
            candidates=[SimpleNamespace(id="visits")],  # type: ignore[list-item]
            support=[4],
            fitted=SimpleNamespace(points=[points], kept=kept),  # type: ignore[arg-type]
            options=None,  # type: ignore[arg-type]
            same_as={},
            current_points={"visits": 5},
        )

    assert learned(7, [0]).current_left_out() == []
    assert learned(0, []).current_left_out() == [("visits", 5, "matched every example")]
    # Fitted (it varied) but worth 0 points: that, not its support, is why it is gone
    # (tester's F3: a fading download every example had was "matched every example").
    assert learned(0, [0]).current_left_out() == [("visits", 5, "its points round to 0")]


LEAKING_MODEL = CURRENT_MODEL.replace(
    "  engagement:\n",
    "    - id: already-customer\n"
    "      when:\n"
    "        any:\n"
    "          - {field: email, ends_with: '@rival.example'}\n"
    "          - not: {field: attributes.converted, equals: false}\n"
    "      points: 5\n"
    "  engagement:\n",
)
"""The current model with a criterion that reads the outcome deep in its condition."""


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_current_criterion_reading_the_outcome_is_never_fitted(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """A current criterion reading the outcome (here under any: and not:) predicts it
    perfectly: it was fitted to a holdout AUC of 1.000 and hundreds of points, no word said
    (tester's F8). It is left out of the fit and the proposal, and named with the reason;
    --exclude of the outcome's field changed nothing then, and is the same now."""
    (project.parent / "rules" / "scoring.yaml").write_text(LEAKING_MODEL, encoding="utf-8")
    store_leads(engine, ground_truth())
    for extra in ([], ["--exclude", "attributes.converted"]):
        report = fit(project, "--outcome", "attributes.converted", *extra, capsys=capsys)
        assert {
            "id": "already-customer",
            "current_points": 5,
            "reason": "reads the outcome attributes.converted",
        } in report["current_left_out"]
        assert "already-customer" not in {item["id"] for item in report["criteria"]}
        assert report["auc"]["points"] < 0.8
        # The current model's AUC is its own, leak and all, and says so (tester's F11).
        assert report["current_model_auc_includes"] == ["already-customer"]
        proposal = project.parent / "scoring.proposed.yaml"
        assert "already-customer" not in proposed_points(proposal)
        assert (
            "#   already-customer (+5 points): reads the outcome attributes.converted\n"
            in proposal.read_text(encoding="utf-8")
        )
    capsys.readouterr()
    table_proposal = project.parent / "table.proposed.yaml"
    command = ["-c", str(project), "score", "fit", "--outcome", "attributes.converted"]
    assert main([*command, "--output", str(table_proposal)]) == 0
    table = capsys.readouterr().out
    assert (
        "current model, recomputed as of --as-of, with its 1 left-out criterion (a leak)" in table
    )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_current_criteria_reading_what_exclude_names_are_left_out(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--exclude`` leaves out what is only known after the outcome: the current model's
    criteria reading an excluded attribute or activity type too (tester's F2: the current
    ``form-fill`` criterion stayed in the fit after ``--exclude form_fill``)."""
    store_leads(engine, ground_truth())
    report = fit(
        project,
        "--outcome",
        "attributes.converted",
        "--exclude",
        "webinar,attributes.industry",
        capsys=capsys,
    )
    assert report["current_left_out"][:2] == [
        {
            "id": "target-industry",
            "current_points": 20,
            "reason": "reads attributes.industry, left out by --exclude",
        },
        {
            "id": "recent-webinar",
            "current_points": 5,
            "reason": "counts activity webinar, left out by --exclude",
        },
    ]
    proposal = proposed_points(project.parent / "scoring.proposed.yaml")
    assert not [
        name
        for name, item in proposal.items()
        if item.get("activity") == "webinar" or "industry" in str(item.get("when"))
    ]
    assert {"target-industry", "recent-webinar"}.isdisjoint(
        item["id"] for item in report["criteria"]
    )


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_excluded_activity_type_nobody_knows_is_refused(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--exclude page_veiw`` (a typo) was accepted and left the leaking type in the fit
    (tester's F1), while a misspelt attribute was refused: refused the same way, naming the
    closest type the store holds."""
    store_leads(engine, ground_truth())
    capsys.readouterr()
    code = main(
        ["-c", str(project), "score", "fit", "--outcome", "attributes.converted", "--as-of",
         AS_OF.isoformat(), "--output", str(project.parent / "scoring.proposed.yaml"),
         "--exclude", "webinar,page_veiw"]
    )  # fmt: skip
    assert (code, capsys.readouterr().err.splitlines()) == (
        1,
        [
            "error: --exclude page_veiw: no activity of type 'page_veiw' in the store or the "
            "scoring model, and not an attribute (attributes.NAME); did you mean 'page_view'?"
        ],
    )
    assert not (project.parent / "scoring.proposed.yaml").exists()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_chart_not_named_svg_is_refused_before_the_fit(
    project: Path, engine: Engine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The chart is SVG: ``--chart lift.png`` once wrote SVG text into a .png."""
    chart = tmp_path / "lift.png"
    capsys.readouterr()
    code = main(
        [
            "-c",
            str(project),
            "score",
            "fit",
            "--outcome",
            "attributes.converted",
            "--chart",
            str(chart),
        ]
    )
    assert (code, capsys.readouterr().err.strip()) == (
        1,
        f"error: --chart {chart}: the chart is an SVG drawing; give a file name ending in .svg",
    )
    assert not chart.exists()
    assert not (project.parent / "scoring.proposed.yaml").exists()


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_an_outcome_kept_as_text_reads_whole_decimals_as_numbers(engine: Engine) -> None:
    """An outcome attribute stored as text: ``1.0`` is ``1`` and ``0.0`` is ``0`` (a
    spreadsheet's export), as docs/scoring-fit.md says; ``-1``, ``2`` and ``N/A`` stay unknown.
    A ``--positive 1.0`` reads the same way."""
    from leadflow.scoring.learning_outcome import (
        NEGATIVE_WORDS,
        POSITIVE_WORDS,
        OutcomeSpec,
        _values,
        read_examples,
    )
    from tests.mail_support import add_lead

    stored = ["1.0", "0.0", "1", "0", " 1.00 ", "-1", "2", "N/A", "1.5", "0.0.0"]
    ids = [
        add_lead(engine, AS_OF, external_id=f"L-{n}", attributes={"converted": value})
        for n, value in enumerate(stored)
    ]
    spec = OutcomeSpec("attributes.converted", frozenset(POSITIVE_WORDS), frozenset(NEGATIVE_WORDS))
    with engine.connect() as connection:
        examples = read_examples(connection, spec)
    assert (examples.lead_ids, examples.labels, examples.unknown) == (
        [ids[0], ids[1], ids[2], ids[3], ids[4]],
        [1, 0, 1, 0, 1],
        5,
    )
    assert _values("1.0, Won", "--positive") == frozenset({"1", "won"})
