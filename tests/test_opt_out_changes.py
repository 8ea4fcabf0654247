"""Every change of a lead's opt-out is in the audit, and one that changes nothing is unchanged.

On SQLite and PostgreSQL, through the real import and the real ASGI app (the shipped rules: lead
L-1 enrolled in the welcome stream, as :class:`~tests.test_unsubscribe.Nurtured` sets it up):

- an import row or a posted record saying ``unsubscribed: true`` of a lead stored subscribed
  writes an ``unsubscribed`` audit row naming the file and line (``via: import``) or the API
  (``via: api``); a lead already unsubscribed, or created unsubscribed, gets none;
- ``POST /v1/leads/{id}/resubscribe`` with a reason re-subscribes as ``leadflow resubscribe``
  does (a ``resubscribed`` audit row with the reason, source ``api``), answers what it did,
  404 for an unknown lead, and 422 naming the field for a bad body;
- a row that differs from the stored one only in the ``unsubscribed`` of a lead that stays
  unsubscribed changes nothing, and is counted ``unchanged``, posted or imported.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.ingest.runner import import_file
from leadflow.ingest.writers import Counts
from leadflow.store.tables import AUDIT, LEADS
from tests.conftest import T0
from tests.test_unsubscribe import KEPT_BY_ONE_CLICK, Nurtured, audit_actions, one_click

HOUR = timedelta(hours=1)


@pytest.fixture
def nurtured(engine: Engine, make_settings: Any, clock: SettableClock) -> Nurtured:
    return Nurtured(engine, make_settings, clock)


def opt_outs(nurtured: Nurtured) -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """The ``unsubscribed`` audit rows: when, by what, which lead, with what."""
    with nurtured.engine.connect() as connection:
        found = connection.execute(
            select(AUDIT.c.at, AUDIT.c.source, LEADS.c.external_id, AUDIT.c.params)
            .join(LEADS, LEADS.c.id == AUDIT.c.lead_id)
            .where(AUDIT.c.action == "unsubscribed")
            .order_by(AUDIT.c.id)
        )
        return [tuple(row) for row in found]  # type: ignore[misc]


def flags(nurtured: Nurtured) -> dict[str, bool]:
    with nurtured.engine.connect() as connection:
        found = connection.execute(select(LEADS.c.external_id, LEADS.c.unsubscribed))
        return {key: flag for key, flag in found}


def kept_note(key: str, how: str) -> str:
    return (
        f"false ignored: lead {key!r} {how} and stays unsubscribed (an opt-out sticks); mark it "
        "unsubscribed in the CRM, or if the person asked to be mailed again run "
        f"`leadflow resubscribe {key}`"
    )


def counts(response: Any) -> tuple[int, int, int]:
    found = response.json()
    return found["inserted"], found["updated"], found["unchanged"]


class TestAnOptOutFromTheCrmIsAudited:
    """The CRM's ``unsubscribed: true`` changing a stored lead's flag is a consent change: it
    has its audit row, before the ``nurture_exited`` rows of the streams the lead leaves."""

    @pytest.mark.parametrize("bulk", [False, True], ids=["batches", "second process"])
    @pytest.mark.slow
    def test_an_import_audits_each_lead_it_opts_out_at_its_line(
        self,
        nurtured: Nurtured,
        tmp_path: Path,
        bulk: bool,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        if bulk:  # a large leads file is read and hashed by a process of its own
            monkeypatch.setattr("leadflow.ingest.runner.FED_MIN_ROWS", 0)
        settings = nurtured.runtime.settings

        def imported(path: Path, text: str) -> Any:
            path.write_text(text, encoding="utf-8")
            return import_file(nurtured.engine, settings, "leads", path, clock=nurtured.clock)

        first = imported(tmp_path / "first.csv", "external_id,name,unsubscribed\nL-2,Al,false\n")
        assert first.summary == "inserted 1, updated 0, unchanged 0, rejected 0"
        nurtured.clock.set(T0 + HOUR)
        crm = tmp_path / "crm.csv"
        # L-3 and L-4 are created (L-3 unsubscribed: its flag never changed, so no row).
        rows = "L-3,Bo,true\nL-1,Jo Doe,yes\nL-4,Cy,false\nL-2,Al,true\n"
        report = imported(crm, f"external_id,name,unsubscribed\n{rows}")
        assert report.summary == "inserted 2, updated 2, unchanged 0, rejected 0"
        audited = [
            (T0 + HOUR, "import", "L-1", {"via": "import", "file": str(crm), "line": 3}),
            (T0 + HOUR, "import", "L-2", {"via": "import", "file": str(crm), "line": 5}),
        ]
        assert opt_outs(nurtured) == audited
        assert flags(nurtured) == {"L-1": True, "L-2": True, "L-3": True, "L-4": False}
        # L-1 left its stream after its opt-out, in the same transaction.
        with nurtured.engine.connect() as connection:
            actions = connection.execute(
                select(AUDIT.c.action).where(AUDIT.c.lead_id == nurtured.lead_id)
            ).scalars()
            assert [a for a in actions if a != "nurture_step"][-2:] == [
                "unsubscribed",
                "nurture_exited",
            ]
        # The same file again changes nothing and says nothing more.
        nurtured.clock.set(T0 + 2 * HOUR)
        again = imported(crm, f"external_id,name,unsubscribed\n{rows}")
        assert again.summary == "inserted 0, updated 0, unchanged 4, rejected 0"
        assert opt_outs(nurtured) == audited
        # A CRM's stale false later names the import that opted the lead out.
        stale = tmp_path / "stale.csv"
        kept = imported(stale, "external_id,unsubscribed\nL-1,false\n")
        assert [str(note) for note in kept.notes] == [
            f"{stale}:2: unsubscribed: "
            + kept_note("L-1", f"was unsubscribed by an import ({crm}:3 at 2026-03-02T10:00:00Z)")
        ]

    def test_a_post_audits_each_lead_it_opts_out(self, nurtured: Nurtured) -> None:
        created = nurtured.api.post("/v1/leads", {"external_id": "L-2", "unsubscribed": True})
        assert counts(created) == (1, 0, 0)
        nurtured.clock.set(T0 + HOUR)
        body = [
            {"external_id": "L-2", "unsubscribed": True},
            {"external_id": "L-1", "unsubscribed": "yes"},
        ]
        response = nurtured.api.post("/v1/leads", body)
        assert counts(response) == (0, 1, 1)
        audited = [(T0 + HOUR, "api", "L-1", {"via": "api"})]
        assert opt_outs(nurtured) == audited
        assert nurtured.state()["audit"] == [
            ("unsubscribed", {"via": "api"}),
            ("nurture_exited", {"stream": "welcome", "reason": "unsubscribed"}),
        ]
        assert counts(nurtured.api.post("/v1/leads", body)) == (0, 0, 2)
        assert opt_outs(nurtured) == audited
        stale = nurtured.api.post("/v1/leads", {"external_id": "L-1", "unsubscribed": False})
        assert stale.json()["warnings"] == [
            {
                "loc": ["body", "unsubscribed"],
                "field": "unsubscribed",
                "msg": kept_note(
                    "L-1", "was unsubscribed by a post to /v1/leads at 2026-03-02T10:00:00Z"
                ),
            }
        ]

    def test_a_crm_catching_up_with_an_opt_out_adds_nothing(self, nurtured: Nurtured) -> None:
        """The CRM says ``true`` of a lead leadflow already unsubscribed: no second row, and
        the record, otherwise as before, is unchanged."""
        record = {"external_id": "L-1", "name": "Jo Doe", "unsubscribed": False}
        assert counts(nurtured.api.post("/v1/leads", record)) == (0, 1, 0)
        one_click(nurtured, 2 * HOUR)
        caught_up = nurtured.api.post("/v1/leads", {**record, "unsubscribed": True})
        assert counts(caught_up) == (0, 0, 1)
        assert [row[1:3] for row in opt_outs(nurtured)] == [("unsubscribe", "L-1")]


class TestResubscribeOverHttp:
    """``POST /v1/leads/{id}/resubscribe``: ``leadflow resubscribe`` for a CRM or a form."""

    def test_resubscribes_with_the_reason_in_the_audit(self, nurtured: Nurtured) -> None:
        one_click(nurtured, 2 * HOUR)
        nurtured.clock.set(T0 + 3 * HOUR)
        reason = "asked again by phone on 2026-03-03"
        response = nurtured.api.post("/v1/leads/L-1/resubscribe", {"reason": f"  {reason}\n"})
        assert (response.status_code, response.json()) == (
            200,
            {
                "external_id": "L-1",
                "resubscribed": True,
                "message": "lead 'L-1' re-subscribed: marketing email may be sent to it again",
            },
        )
        assert flags(nurtured) == {"L-1": False}
        expected = [
            ("unsubscribe", "unsubscribed", {"via": "one_click", "cancelled_emails": 1}),
            ("api", "resubscribed", {"reason": reason}),
        ]
        assert audit_actions(nurtured) == expected
        with nurtured.engine.connect() as connection:
            at = connection.execute(
                select(AUDIT.c.at).where(AUDIT.c.action == "resubscribed")
            ).scalar_one()
        assert at == T0 + 3 * HOUR
        # As the command: a lead not unsubscribed is left as it is, and the answer says so.
        again = nurtured.api.post("/v1/leads/L-1/resubscribe", {"reason": reason})
        assert (again.status_code, again.json()) == (
            200,
            {
                "external_id": "L-1",
                "resubscribed": False,
                "message": "lead 'L-1' is not unsubscribed: nothing to do",
            },
        )
        assert audit_actions(nurtured) == expected
        unknown = nurtured.api.post("/v1/leads/L-9/resubscribe", {"reason": reason})
        assert (unknown.status_code, unknown.json()) == (
            404,
            {"detail": "no lead with external id 'L-9'"},
        )

    def test_an_external_id_with_a_slash(self, nurtured: Nurtured) -> None:
        posted = nurtured.api.post("/v1/leads", {"external_id": "EU/7", "unsubscribed": True})
        assert posted.status_code == 200, posted.text
        for path in ("/v1/leads/EU/7/resubscribe", "/v1/leads/EU%2F7/resubscribe"):
            response = nurtured.api.post(path, {"reason": "form"})
            assert (response.status_code, response.json()["external_id"]) == (200, "EU/7")
        assert flags(nurtured)["EU/7"] is False

    @pytest.mark.parametrize(
        ("body", "detail"),
        [
            (
                {},
                [
                    {
                        "loc": ["body", "reason"],
                        "msg": "missing; say why the lead may be mailed again (its consent)",
                        "type": "missing",
                    }
                ],
            ),
            (
                {"reason": " \t"},
                [
                    {
                        "loc": ["body", "reason"],
                        "msg": "empty; say why the lead may be mailed again (its consent)",
                        "type": "string_too_short",
                    }
                ],
            ),
            (
                {"reason": 5, "by": "me"},
                [
                    {
                        "loc": ["body", "reason"],
                        "msg": "expected string, got integer",
                        "type": "type_error",
                    },
                    {
                        "loc": ["body", "by"],
                        "msg": "unknown field; the body has one: reason",
                        "type": "extra_forbidden",
                    },
                ],
            ),
            (
                {"reason": "a\u0000b"},
                [
                    {
                        "loc": ["body", "reason"],
                        "msg": "text may not contain NUL characters (\\u0000)",
                        "type": "string_type",
                    }
                ],
            ),
            (
                ["consent"],
                [{"loc": ["body"], "msg": "expected a JSON object", "type": "dict_type"}],
            ),
        ],
        ids=["missing", "blank", "wrong-type-and-unknown", "nul", "not-an-object"],
    )
    def test_a_bad_body_is_422_naming_the_field(
        self, nurtured: Nurtured, body: Any, detail: list[dict[str, Any]]
    ) -> None:
        one_click(nurtured, 2 * HOUR)
        response = nurtured.api.post("/v1/leads/L-1/resubscribe", body)
        assert (response.status_code, response.json()) == (422, {"detail": detail})
        assert flags(nurtured) == {"L-1": True}

    def test_refused_without_the_token_or_json(self, nurtured: Nurtured) -> None:
        one_click(nurtured, 2 * HOUR)
        path = "/v1/leads/L-1/resubscribe"
        anonymous = nurtured.api.post(path, {"reason": "form"}, auth=False)
        assert (anonymous.status_code, anonymous.json()) == (
            401,
            {"detail": "missing bearer token"},
        )
        plain = nurtured.api.post(
            path, content=b'{"reason": "form"}', headers={"Content-Type": "text/plain"}
        )
        assert (plain.status_code, plain.json()) == (
            415,
            {"detail": "Content-Type must be application/json, got 'text/plain'"},
        )
        broken = nurtured.api.post(
            path, content=b'{"reason": ', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 422
        assert broken.json()["detail"][0]["type"] == "json_invalid"
        assert flags(nurtured) == {"L-1": True}
        assert [row[1] for row in audit_actions(nurtured)] == ["unsubscribed"]

    def test_documented_in_openapi(self, nurtured: Nurtured) -> None:
        document = nurtured.api.get("/openapi.json").json()
        operation = document["paths"]["/v1/leads/{external_id}/resubscribe"]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == ["reason"]
        assert schema["additionalProperties"] is False
        assert operation["security"] == [{"HTTPBearer": []}]
        assert set(operation["responses"]) >= {"200", "401", "404", "415", "422"}


class TestAKeptFalseChangesNothing:
    """A row differing from the stored one only in the ``unsubscribed: false`` of a lead that
    stays unsubscribed writes nothing: it counts as unchanged, as a row re-sent as it was."""

    def test_a_post(self, nurtured: Nurtured) -> None:
        record = {"external_id": "L-1", "name": "Jo Doe", "unsubscribed": True}
        assert counts(nurtured.api.post("/v1/leads", record)) == (0, 1, 0)
        nurtured.clock.set(T0 + HOUR)
        stale = nurtured.api.post("/v1/leads", {**record, "unsubscribed": False})
        assert stale.status_code == 200, stale.text
        assert counts(stale) == (0, 0, 1)
        assert [w["field"] for w in stale.json()["warnings"]] == ["unsubscribed"]
        with nurtured.engine.connect() as connection:
            updated_at = connection.execute(select(LEADS.c.updated_at)).scalar_one()
        assert updated_at == T0  # not written
        # A real change beside it is written, and the flag still kept.
        renamed = nurtured.api.post(
            "/v1/leads", {**record, "name": "Jo Smith", "unsubscribed": False}
        )
        assert counts(renamed) == (0, 1, 0)
        assert flags(nurtured) == {"L-1": True}

    @pytest.mark.parametrize("bulk", [False, True], ids=["batches", "second process"])
    def test_an_import(
        self, nurtured: Nurtured, tmp_path: Path, bulk: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        if bulk:
            monkeypatch.setattr("leadflow.ingest.runner.FED_MIN_ROWS", 0)
        settings = nurtured.runtime.settings
        header = "external_id,name,last_activity_at,attributes.region,unsubscribed\n"

        def imported(name: str, rows: str) -> Any:
            path = tmp_path / name
            path.write_text(header + rows, encoding="utf-8")
            return import_file(nurtured.engine, settings, "leads", path, clock=nurtured.clock)

        jo = "L-1,Jo Doe,2026-03-01T10:00:00Z,EMEA"
        assert imported("opt-out.csv", f"{jo},true\n").summary == (
            "inserted 0, updated 1, unchanged 0, rejected 0"
        )
        stale = imported("stale.csv", f"{jo},false\nL-5,Eve,,,false\n")
        assert stale.summary == "inserted 1, updated 0, unchanged 1, rejected 0"
        assert stale.counts == Counts(inserted=1, updated=0, unchanged=1)
        assert [note.message for note in stale.notes] == [
            "unsubscribed: "
            + kept_note(
                "L-1",
                f"was unsubscribed by an import ({tmp_path / 'opt-out.csv'}:2 "
                "at 2026-03-02T09:00:00Z)",
            )
        ]
        assert flags(nurtured) == {"L-1": True, "L-5": False}
        moved = imported("moved.csv", "L-1,Jo Doe,2026-03-01T10:00:00Z,APAC,false\n")
        assert moved.summary == "inserted 0, updated 1, unchanged 0, rejected 0"
        assert flags(nurtured) == {"L-1": True, "L-5": False}


def test_the_kept_note_of_a_one_click_is_unchanged(nurtured: Nurtured) -> None:
    """The note of an opt-out through leadflow's page still names it (the rows an import
    writes are told apart by their ``via``)."""
    one_click(nurtured, 2 * HOUR)
    stale = nurtured.api.post("/v1/leads", {"external_id": "L-1", "unsubscribed": False})
    assert stale.json()["warnings"][0]["msg"] == KEPT_BY_ONE_CLICK
