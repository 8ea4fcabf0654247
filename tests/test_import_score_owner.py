"""While the rules folder's scoring model is enabled, leadflow owns ``score``: an import's
``score`` column and a posted lead's ``score`` do not set it.

An outside tester imported ``external_id,score`` / ``T00043,95`` with the model on: the score
was 95 until the next pass put the model's -63 back, and the MQL rule fired in between (owner,
email, SLA). Now the column is left out and the import says so once (stderr, before the
summary); the HTTP API answers 200 with a warning naming the field. A rules folder that cannot
be read does not stop the import: the score is written as before, and the note says it could
not be checked. On real SQLite and PostgreSQL.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.cli import main
from leadflow.clock import SettableClock
from leadflow.ingest import import_file
from leadflow.scoring.ownership import import_score_column
from tests.http_support import REPO, Api, build_app, http_settings, runtime_for

FIRST = "external_id,score,stage\nT00043,10,lead\n"
SCORED = "external_id,score\nT00043,95\nT00044,80\n"
REGION = {"region": "string"}


def _rules(folder: Path, *, enabled: bool) -> Path:
    """The shipped rules, their scoring model on or off."""
    rules = folder / "rules"
    shutil.copytree(REPO / "rules", rules)
    scoring = rules / "scoring.yaml"
    text = scoring.read_text(encoding="utf-8")
    scoring.write_text(text.replace("enabled: false", f"enabled: {str(enabled).lower()}"))
    return rules


def _scores(engine: Engine) -> list[tuple[str, int]]:
    return rows(engine, "leads", "external_id", "score")  # type: ignore[return-value]


def _import_twice(
    engine: Engine, settings: Any, folder: Path, clock: SettableClock
) -> tuple[str, list[str]]:
    """The first file with the model off (the CRM's score 10), then SCORED with ``settings``."""
    off = settings.model_copy(
        update={"paths": settings.paths.model_copy(update={"rules": folder / "absent"})}
    )
    import_file(engine, off, "leads", write(folder, "first.csv", FIRST), clock=clock)
    path = write(folder, "o.csv", SCORED)
    report = import_file(
        engine, settings, "leads", path, clock=clock, leads_plan=import_score_column(settings)
    )
    return report.summary, [str(note) for note in report.notes]


def test_an_enabled_model_leaves_the_score_column_out(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    rules = _rules(tmp_path, enabled=True)
    settings = make_settings(**{"paths.rules": str(rules), "attributes.leads": REGION})
    summary, notes = _import_twice(engine, settings, tmp_path, clock)
    assert summary == "inserted 1, updated 1, unchanged 0, rejected 0"
    assert notes == [
        f"{tmp_path / 'o.csv'}:1: column 'score' ignored: the scoring model "
        f"({rules / 'scoring.yaml'}) is "
        "enabled, so leadflow computes every lead's score; keep the CRM's score as a declared "
        "attribute (map it to attributes.NAME), or set enabled: false to take it "
        "(docs/scoring.md)"
    ]
    # The stored score stays what it was (the next pass computes the model's), a new lead's
    # is the default.
    assert _scores(engine) == [("T00043", 10), ("T00044", 0)]


def test_a_mapped_score_column_is_named_as_the_file_has_it(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    settings = make_settings(
        **{
            "paths.rules": str(_rules(tmp_path, enabled=True)),
            "attributes.leads": REGION,
            "import.mappings.leads.columns": {"Lead Score": "score"},
        }
    )
    path = write(tmp_path, "crm.csv", "external_id,Lead Score\nT00043,95\n")
    report = import_file(
        engine, settings, "leads", path, clock=clock, leads_plan=import_score_column(settings)
    )
    assert [note.message.split(":")[0] for note in report.notes] == [
        "column 'Lead Score' (score) ignored"
    ]
    assert _scores(engine) == [("T00043", 0)]


def test_a_disabled_model_takes_the_score(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    rules = _rules(tmp_path, enabled=False)
    settings = make_settings(**{"paths.rules": str(rules), "attributes.leads": REGION})
    summary, notes = _import_twice(engine, settings, tmp_path, clock)
    assert (summary, notes) == ("inserted 1, updated 1, unchanged 0, rejected 0", [])
    assert _scores(engine) == [("T00043", 95), ("T00044", 80)]


def test_a_rules_folder_that_does_not_load_keeps_the_score_and_says_so(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    rules = _rules(tmp_path, enabled=True)
    (rules / "broken.yaml").write_text("rules:\n  - id: [unclosed\n", encoding="utf-8")
    settings = make_settings(**{"paths.rules": str(rules), "attributes.leads": REGION})
    summary, notes = _import_twice(engine, settings, tmp_path, clock)
    assert summary == "inserted 1, updated 1, unchanged 0, rejected 0"
    assert len(notes) == 1
    assert notes[0].startswith(
        f"{tmp_path / 'o.csv'}:1: column 'score' not checked against the scoring model: the "
        f"rules folder has a problem ({rules / 'broken.yaml'}:"
    )
    assert notes[0].endswith(
        "); the scores were written as given, and an enabled model puts its own back at its "
        "next pass"
    )
    assert _scores(engine) == [("T00043", 95), ("T00044", 80)]


def test_a_rule_test_given_file_keeps_its_scores(
    engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
) -> None:
    """A rule test's given leads (import_file without the check) are taken as written."""
    rules = _rules(tmp_path, enabled=True)
    settings = make_settings(**{"paths.rules": str(rules), "attributes.leads": REGION})
    report = import_file(engine, settings, "leads", write(tmp_path, "o.csv", SCORED), clock=clock)
    assert report.notes == []
    assert _scores(engine) == [("T00043", 95), ("T00044", 80)]


def test_the_command_says_it_once_before_the_summary(
    tmp_path: Path, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tester's command: `leadflow import leads o.csv` with the model on."""
    rules = _rules(tmp_path, enabled=True)
    config = write(
        tmp_path,
        "config.yaml",
        f"database:\n  url: {store_url}\npaths:\n  rules: {rules}\n"
        "attributes:\n  leads:\n    region: string\n",
    )
    path = write(tmp_path, "o.csv", "external_id,score\nT00043,95\nT00044,96\n")
    assert main(["-c", str(config), "import", "leads", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == (
        f"leads {path}: inserted 2, updated 0, unchanged 0, rejected 0\n"
        f"leads {path}: scored by the model, 2 score(s) changed\n"
    )
    assert err.count("\n") == 1
    assert err.startswith(f"{path}:1: column 'score' ignored: the scoring model ({rules}/")


class TestHttpApi:
    def _api(self, engine: Engine, make_settings: Any, clock: SettableClock, rules: Path) -> Api:
        runtime = runtime_for(
            engine, http_settings(make_settings, **{"paths.rules": str(rules)}), clock
        )
        app, _holder = build_app(runtime)
        return Api(app)

    def test_an_enabled_model_ignores_a_posted_score_with_a_warning(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        api = self._api(engine, make_settings, clock, _rules(tmp_path, enabled=True))
        body = {"external_id": "T00043", "score": 95, "region": "North", "email": "a@gmail.com"}
        response = api.post("/v1/leads", body)
        assert (response.status_code, response.json()) == (
            200,
            {
                "kind": "leads",
                "received": 1,
                "inserted": 1,
                "updated": 0,
                "unchanged": 0,
                "warnings": [
                    {
                        "field": "score",
                        "msg": "field 'score' ignored: the scoring model (scoring.yaml) is "
                        "enabled, so leadflow computes every lead's score; keep the CRM's "
                        "score as a declared attribute (map it to attributes.NAME), or set "
                        "enabled: false to take it (docs/scoring.md)",
                    }
                ],
            },
        )
        # The model's own score, computed at once for a posted lead: a free mail address.
        assert _scores(engine) == [("T00043", -15)]

    def test_a_disabled_model_takes_a_posted_score(
        self, engine: Engine, make_settings: Any, tmp_path: Path, clock: SettableClock
    ) -> None:
        api = self._api(engine, make_settings, clock, _rules(tmp_path, enabled=False))
        response = api.post("/v1/leads", {"external_id": "T00043", "score": 95})
        assert "warnings" not in response.json()
        assert _scores(engine) == [("T00043", 95)]
