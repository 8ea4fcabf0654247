"""How much one request may hold: records per body, characters per attribute text.

Pins (an outside tester's find): one ``POST /v1/leads`` of 190,000 records (4.8 MB, under
``http.max_body_bytes``) ran 16-28 s in one transaction while other requests waited; now a list
longer than ``http.max_records`` is refused, 422 naming the limit and the count, before anything
is read or written, on every batch endpoint. A ``string`` attribute of a million characters was
stored; now one over 2,000 characters is refused at its field, by the API and by an import
alike (one limit, the import's parser).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from import_support import rows, write
from sqlalchemy import Engine

from leadflow.cli import main
from leadflow.clock import SettableClock
from tests.http_support import Api, build_app, http_settings, runtime_for

BODIES: dict[str, list[dict[str, Any]]] = {
    "leads": [{"external_id": f"L{i}"} for i in range(4)],
    "deals": [{"external_id": f"D{i}", "lead": "L0"} for i in range(4)],
    "activities": [{"event_id": f"E{i}", "lead": "L0", "type": "email_opened"} for i in range(4)],
    "reps": [
        {"external_id": f"r{i}", "name": f"Rep {i}", "email": f"r{i}@example.com"} for i in range(4)
    ],
}
TABLES = {"leads": "leads", "deals": "deals", "activities": "activities", "reps": "reps"}


@pytest.fixture
def api(engine: Engine, make_settings: Any, clock: SettableClock) -> Api:
    limits = {"http.max_records": 3, "http.max_body_bytes": 2_000_000}
    runtime = runtime_for(engine, http_settings(make_settings, **limits), clock)
    app, _holder = build_app(runtime)
    return Api(app)


class TestRecordsPerRequest:
    """A list longer than ``http.max_records`` is refused whole; one of that many is written."""

    @pytest.mark.parametrize("kind", list(BODIES))
    def test_one_record_too_many_is_422_and_nothing_lands(
        self, api: Api, engine: Engine, kind: str
    ) -> None:
        response = api.post(f"/v1/{kind}", BODIES[kind])
        assert response.status_code == 422
        assert response.json() == {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": "4 records in one request, more than http.max_records (3); send "
                    "them in requests of at most that many, or load a file with leadflow import",
                    "type": "too_long",
                }
            ]
        }
        assert rows(engine, TABLES[kind], "id") == []

    def test_as_many_as_the_limit_are_written(self, api: Api, engine: Engine) -> None:
        response = api.post("/v1/leads", BODIES["leads"][:3])
        assert response.status_code == 200
        assert response.json() == {
            "kind": "leads",
            "received": 3,
            "inserted": 3,
            "updated": 0,
            "unchanged": 0,
        }
        assert rows(engine, "leads", "external_id") == [("L0",), ("L1",), ("L2",)]

    def test_the_default_is_1000_and_documented(
        self, engine: Engine, make_settings: Any, clock: SettableClock
    ) -> None:
        settings = http_settings(make_settings)
        assert settings.http.max_records == 1_000
        app, _holder = build_app(runtime_for(engine, settings, clock))
        document = Api(app).get("/openapi.json", auth=False).json()
        body = document["paths"]["/v1/leads"]["post"]["requestBody"]["content"]
        listed = body["application/json"]["schema"]["anyOf"][1]
        assert (listed["minItems"], listed["maxItems"]) == (1, 1_000)


class TestAttributeText:
    """A ``string`` attribute holds at most 2,000 characters, posted or imported."""

    def test_a_posted_attribute_over_the_limit_is_422_at_its_field(
        self, api: Api, engine: Engine
    ) -> None:
        response = api.post(
            "/v1/leads",
            [
                {"external_id": "AT1", "region": "R" * 1_000_000},
                {"external_id": "AT2", "region": "R" * 2_000},
            ],
        )
        assert response.status_code == 422
        assert response.json() == {
            "detail": [
                {
                    "loc": ["body", 0, "region"],
                    "msg": "longer than 2000 characters (1000000); shorten it",
                    "type": "value_error",
                }
            ]
        }
        assert rows(engine, "leads", "external_id") == []

    def test_a_posted_attribute_of_the_limit_is_stored(self, api: Api, engine: Engine) -> None:
        response = api.post("/v1/leads", {"external_id": "AT2", "region": "R" * 2_000})
        assert response.status_code == 200
        assert rows(engine, "leads", "external_id", "attributes") == [
            ("AT2", {"region": "R" * 2_000})
        ]

    def test_an_imported_attribute_over_the_limit_rejects_its_line(
        self, tmp_path: Path, store_url: str, engine: Engine, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = write(
            tmp_path,
            "config.yaml",
            f"database:\n  url: {store_url}\nattributes:\n  leads:\n    region: string\n",
        )
        path = write(
            tmp_path,
            "leads.csv",
            f"external_id,region\nL1,north\nL2,{'R' * 2_001}\nL3,{'S' * 2_000}\n",
        )
        code = main(["-c", str(config), "import", "leads", str(path)])
        out, err = capsys.readouterr()
        assert code == 1
        assert out == f"leads {path}: inserted 2, updated 0, unchanged 0, rejected 1\n"
        assert (
            err == f"{path}:3: attributes.region: longer than 2000 characters (2001); shorten it\n"
        )
        assert rows(engine, "leads", "external_id", "attributes") == [
            ("L1", {"region": "north"}),
            ("L3", {"region": "S" * 2_000}),
        ]
