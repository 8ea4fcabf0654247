"""A realistic CRM export (shaped like the Maven data): foreign headers, reps and managers by name,
day-first dates in a timezone, Won/Lost stages read as outcomes, a product renamed by value."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from import_support import FIXTURES, all_columns, rows, write
from sqlalchemy import Engine

from leadflow.clock import SettableClock
from leadflow.config import load_settings
from leadflow.errors import UserInputError
from leadflow.ingest import import_file
from leadflow.settings import ImportKind, Settings

EXPORT = FIXTURES / "maven_like"


@pytest.fixture
def settings(store_url: str) -> Settings:
    return load_settings(
        EXPORT / "config.yaml", env={}, overrides={"database.url": store_url}
    ).settings


def mapped(tmp_path: Path, store_url: str, *config: str) -> Settings:
    """The settings of a config.yaml holding ``config`` (an import mapping), on the test store."""
    path = write(tmp_path, "config.yaml", "".join(config))
    return load_settings(path, env={}, overrides={"database.url": store_url}).settings


def import_all(engine: Engine, settings: Settings, clock: SettableClock) -> list[str]:
    summaries = []
    steps: list[tuple[ImportKind, str]] = [
        ("reps", "sales_teams"),
        ("leads", "accounts"),
        ("deals", "sales_pipeline"),
    ]
    for kind, name in steps:
        report = import_file(engine, settings, kind, EXPORT / f"{name}.csv", clock=clock)
        assert report.problems == []
        summaries.append(f"{kind}: {report.summary}")
    return summaries


class TestMavenShapedExport:
    """Every row lands with the right types and links; the second import changes nothing."""

    def test_reps_and_managers_by_name(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """Managers who are not agents become reps, ids and emails made from their names."""
        import_all(engine, settings, clock)
        reps = rows(engine, "reps", "id", "external_id", "name", "email", "manager_id", "pools")
        ids = {external_id: rep_id for rep_id, external_id, *_ in reps}
        assert [row[1:] for row in reps] == [
            (
                "anna-snelling",
                "Anna Snelling",
                "anna.snelling@maventech.example",
                ids["dustin-brinkmann"],
                ["Central"],
            ),
            ("cara-losch", "Cara Losch", "cara.losch@maventech.example", None, []),
            (
                "dustin-brinkmann",
                "Dustin Brinkmann",
                "dustin.brinkmann@maventech.example",
                None,
                [],
            ),
            (
                "moses-frase",
                "Moses Frase",
                "moses.frase@maventech.example",
                ids["dustin-brinkmann"],
                ["Central"],
            ),
            (
                "violet-mclelland",
                "Violet Mclelland",
                "violet.mclelland@maventech.example",
                ids["cara-losch"],
                ["East"],
            ),
        ]

    def test_accounts_become_leads_with_typed_attributes(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """One column fills two fields; the BOM is ignored; empty attributes are left out."""
        import_all(engine, settings, clock)
        assert rows(engine, "leads", "external_id", "company", "attributes") == [
            (
                "Acme Corporation",
                "Acme Corporation",
                {
                    "employees": 2822,
                    "office_location": "United States",
                    "revenue": 1100.04,
                    "sector": "technolgy",
                    "year_established": 1996,
                },
            ),
            (
                "Betatech",
                "Betatech",
                {
                    "employees": 1185,
                    "office_location": "Kenya",
                    "revenue": 647.18,
                    "sector": "medical",
                    "subsidiary_of": "Acme Corporation",
                    "year_established": 1986,
                },
            ),
        ]

    def test_deals_with_outcomes_dates_and_owners(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """Won/Lost close the deal, other stages stay open; naive dates are Berlin time."""
        import_all(engine, settings, clock)
        leads = {
            external_id: lead_id
            for lead_id, external_id in rows(engine, "leads", "id", "external_id")
        }
        reps = {name: rep_id for rep_id, name in rows(engine, "reps", "id", "name")}
        assert rows(
            engine,
            "deals",
            "external_id",
            "lead_id",
            "account",
            "product",
            "owner_id",
            "stage",
            "outcome",
            "amount",
            "engaged_at",
            "closed_at",
        ) == [
            (
                "1C1I7A6R",
                leads["Acme Corporation"],
                "Acme Corporation",
                "GTX Plus Basic",
                reps["Moses Frase"],
                "Won",
                "won",
                1054.0,
                datetime(2016, 10, 19, 22, tzinfo=UTC),
                datetime(2017, 2, 28, 23, tzinfo=UTC),
            ),
            (
                "6CWZFOHJ",
                leads["Betatech"],
                "Betatech",
                "GTX Basic",
                reps["Anna Snelling"],
                "Prospecting",
                None,
                None,
                None,
                None,
            ),
            (
                "HAXMC4IX",
                None,
                None,
                "MG Advanced",
                reps["Violet Mclelland"],
                "Engaging",
                None,
                None,
                datetime(2016, 11, 3, 8, tzinfo=UTC),
                None,
            ),
            (
                "Z063OYW0",
                leads["Betatech"],
                "Betatech",
                "GTX Pro",
                reps["Anna Snelling"],
                "Lost",
                "lost",
                0.0,
                datetime(2016, 10, 24, 22, tzinfo=UTC),
                datetime(2017, 2, 26, 18, 58, tzinfo=UTC),
            ),
        ]

    def test_importing_the_export_twice_changes_nothing(
        self, engine: Engine, settings: Settings, clock: SettableClock
    ) -> None:
        """Second run: every row unchanged, every table identical (managers not created again)."""
        assert import_all(engine, settings, clock) == [
            "reps: inserted 5, updated 0, unchanged 0, rejected 0",
            "leads: inserted 2, updated 0, unchanged 0, rejected 0",
            "deals: inserted 4, updated 0, unchanged 0, rejected 0",
        ]
        before = [all_columns(engine, t) for t in ("reps", "leads", "deals")]
        assert import_all(engine, settings, clock) == [
            "reps: inserted 0, updated 0, unchanged 3, rejected 0",
            "leads: inserted 0, updated 0, unchanged 2, rejected 0",
            "deals: inserted 0, updated 0, unchanged 4, rejected 0",
        ]
        assert [all_columns(engine, t) for t in ("reps", "leads", "deals")] == before


class TestReferences:
    """A rep, lead or manager that does not exist rejects the row with a reason and a way out."""

    def test_unknown_owner_and_lead(
        self, engine: Engine, settings: Settings, clock: SettableClock, tmp_path: Path
    ) -> None:
        import_all(engine, settings, clock)
        text = (
            "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
            "N1,Nobody Here,GTX Basic,,Won,2017-01-01,2017-02-01,1\n"
            "N2,Anna Snelling,GTX Basic,Initech,Engaging,2017-01-01,,\n"
            "N3,Anna Snelling,GTX Basic,,,2017-01-01,,\n"
        )
        path = write(tmp_path, "pipeline.csv", text)
        report = import_file(engine, settings, "deals", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            # The file's columns, the fields they fill in parentheses.
            f"{path}:2: sales_agent (owner): no rep with name 'Nobody Here'; import the reps first",
            f"{path}:3: account (lead): no lead with external id 'Initech'; import the leads first",
            f"{path}:4: deal_stage (stage): missing",
        ]

    def test_a_deal_closed_before_its_engagement_is_rejected(
        self, engine: Engine, settings: Settings, clock: SettableClock, tmp_path: Path
    ) -> None:
        """A close date before the engage date (a typo in the CRM) was stored: its negative
        cycle entered the report's average won cycle and the recycling rule's average. The row
        is rejected, naming both dates; the deal closed the day it was engaged lands."""
        import_all(engine, settings, clock)
        text = (
            "opportunity_id,sales_agent,product,account,deal_stage,engage_date,close_date,close_value\n"
            "N1,Anna Snelling,GTX Basic,,Won,2017-05-01,2017-04-01,100\n"
            "N2,Anna Snelling,GTX Basic,,Lost,2017-05-01,2017-05-01,\n"
        )
        path = write(tmp_path, "pipeline.csv", text)
        report = import_file(engine, settings, "deals", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            # the fixture's mapping reads dates in Europe/Berlin: midnight there, 22:00 UTC
            f"{path}:2: close_date (closed_at): 2017-03-31T22:00:00+00:00 is before engaged_at "
            "2017-04-30T22:00:00+00:00; a deal cannot close before it was engaged",
        ]
        landed = [
            r for r in rows(engine, "deals", "external_id", "outcome") if r[0] in {"N1", "N2"}
        ]
        assert landed == [("N2", "lost")]

    def test_manager_by_name_without_an_email_pattern(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Without import.mappings.reps.email_pattern an unknown manager is a rejected row."""
        config = write(
            tmp_path, "config.yaml", "import: {mappings: {reps: {rep_reference: name}}}\n"
        )
        settings = load_settings(config, env={}, overrides={"database.url": store_url}).settings
        path = write(
            tmp_path,
            "reps.csv",
            "name,email,manager\nAda,ada@x.org,Grace\nGrace,g@x.org,\nAlan,a@x.org,Edsger\n",
        )
        report = import_file(engine, settings, "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:4: manager: no rep with name 'Edsger'; to create managers known only by "
            "name, set import.mappings.reps.email_pattern"
        ]
        assert [
            (name, manager) for name, manager in rows(engine, "reps", "name", "manager_id")
        ] == [
            ("Ada", 2),
            ("Grace", None),
        ]

    def test_a_reps_row_names_every_bad_field(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A missing email or an overlong name did not hide an unknown manager (nor the
        manager the name): the first problem found was the only one named."""
        long_name = "N" * 400
        path = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email,manager,timezone\n"
            "R1,Ada,ada@x.org,,UTC\n"
            "R2,Bob,,NOPE,UTC\n"
            f"R3,{long_name},c@x.org,NOPE,UTC\n",
        )
        plain = mapped(tmp_path, store_url)
        report = import_file(engine, plain, "reps", path, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{path}:3: email: missing; add it, or set import.mappings.reps.email_pattern",
            f"{path}:3: manager: no rep with external id 'NOPE'",
            f"{path}:4: name: longer than 300 characters (400); shorten it",
            f"{path}:4: manager: no rep with external id 'NOPE'",
        ]
        assert report.rejected == 2
        assert rows(engine, "reps", "external_id") == [("R1",)]


class TestFormattedAmounts:
    """A Pipedrive deals export writes values as money: ``$1,234.50`` or ``1.234,50 EUR``."""

    def test_amounts_with_currency_and_grouping_under_either_decimal_separator(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        text = (
            "Deal - ID,Deal - Stage,Deal - Value\n"
            'P1,Qualified,"$1,234.50"\n'
            'P2,Qualified,"1.234,50 EUR"\n'
            "P3,Qualified,EUR 99\n"
            "P4,Qualified,\n"
            "P5,Qualified,12 apples\n"
        )
        path = write(tmp_path, "deals.csv", text)
        landed: dict[str, list[tuple[str, float | None]]] = {}
        problems: dict[str, list[str]] = {}
        for separator in (".", ","):
            config = write(
                tmp_path,
                f"config{separator}.yaml",
                "import: {mappings: {deals: {decimal_separator: '" + separator + "', columns: "
                "{Deal - ID: external_id, Deal - Stage: stage, Deal - Value: amount}}}}\n",
            )
            settings = load_settings(config, env={}, overrides={"database.url": store_url}).settings
            report = import_file(engine, settings, "deals", path, clock=clock)
            problems[separator] = [str(p) for p in report.problems]
            landed[separator] = rows(engine, "deals", "external_id", "amount")
        assert problems == {
            ".": [
                f"{path}:3: Deal - Value (amount): expected a number, got '1.234,50 EUR'; the "
                "file writes ',' as its decimal separator: set decimal_separator: ',' in this "
                "kind's import mapping",
                f"{path}:6: Deal - Value (amount): expected a number, got '12 apples'",
            ],
            ",": [
                f"{path}:2: Deal - Value (amount): expected a number, got '$1,234.50'; the file "
                "writes '.' as its decimal separator: set decimal_separator: '.' in this kind's "
                "import mapping",
                f"{path}:6: Deal - Value (amount): expected a number, got '12 apples'",
            ],
        }
        assert landed == {
            ".": [("P1", 1234.5), ("P3", 99.0), ("P4", None)],
            # P1 kept from the first import (its row was rejected this time), P2 now landed
            ",": [("P1", 1234.5), ("P2", 1234.5), ("P3", 99.0), ("P4", None)],
        }

    def test_won_time_and_lost_time_both_mapped_to_closed_at_says_how_to_fix(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """Pipedrive exports a won time and a lost time; both mapped to closed_at refuse the file
        naming the mapping that fixes it (its "Deal closed on" column holds either)."""
        settings = mapped(
            tmp_path,
            store_url,
            "import: {mappings: {deals: {columns: {Deal - ID: external_id, Deal - Stage: stage, "
            "Deal - Won time: closed_at, Deal - Lost time: closed_at}}}}\n",
        )
        path = write(
            tmp_path,
            "deals.csv",
            "Deal - ID,Deal - Stage,Deal - Won time,Deal - Lost time\nP1,Won,2025-01-02,\n",
        )
        with pytest.raises(UserInputError) as caught:
            import_file(engine, settings, "deals", path, clock=clock)
        assert str(caught.value) == (
            f"{path}:1: columns 'Deal - Won time' and 'Deal - Lost time' both set closed_at; "
            "map one of them to skip under import.mappings.deals.columns (a field takes one "
            "column)"
        )
        assert rows(engine, "deals", "external_id") == []


class TestOwnersByNameOrEmail:
    def test_an_owner_column_by_name_also_takes_a_reps_email(
        self, engine: Engine, store_url: str, tmp_path: Path, clock: SettableClock
    ) -> None:
        """A HubSpot "Contact owner" column mixes names and emails: with rep_reference: name
        an email is looked up as an email (every such row was rejected as "no rep with name")."""
        settings = mapped(
            tmp_path,
            store_url,
            "import: {mappings: {leads: {rep_reference: name, columns: "
            "{Record ID: external_id, Contact owner: owner}}}}\n",
        )
        reps = write(
            tmp_path,
            "reps.csv",
            "external_id,name,email\nR1,Ada Lovelace,ada@x.example\nR2,Alan Turing,alan@x.example\n",
        )
        assert import_file(engine, settings, "reps", reps, clock=clock).problems == []
        leads = write(
            tmp_path,
            "contacts.csv",
            "Record ID,Contact owner\n1,ada lovelace\n2,Alan@X.example\n3,nobody@x.example\n4,\n",
        )
        report = import_file(engine, settings, "leads", leads, clock=clock)
        assert [str(p) for p in report.problems] == [
            f"{leads}:4: Contact owner (owner): no rep with name 'nobody@x.example'; import "
            "the reps first"
        ]
        ids = {
            external_id: rep_id for rep_id, external_id in rows(engine, "reps", "id", "external_id")
        }
        assert rows(engine, "leads", "external_id", "owner_id") == [
            ("1", ids["R1"]),
            ("2", ids["R2"]),
            ("4", None),
        ]
