"""Write the bundled sample exports in ``leadflow/samples/`` (deterministic: same seed, same files).

    .venv/bin/python bench/make_samples.py

The sample uses leadflow's own field names, so it imports with the default configuration:
``leadflow import sample`` (reps with managers, 200 leads, deals, activities).
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "leadflow" / "samples"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FIRST = (
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Tim",
    "Radia",
    "John",
    "Hedy",
    "Dennis",
    "Sophie",
    "Niklaus",
    "Karen",
    "Leslie",
)
LAST = (
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Berners-Lee",
    "Perlman",
    "Backus",
    "Lamarr",
    "Ritchie",
    "Wilson",
    "Wirth",
)
COMPANIES = (
    "Acme Corporation",
    "Betatech",
    "Bioholding",
    "Cancity",
    "Codehow",
    "Dalttechnology",
    "Finhigh",
    "Gekko & Co",
    "Globex",
    "Hottechi",
    "Initech",
    "Isdom",
    "Konex",
    "Lexiqvolax",
)
STAGES = (
    ("subscriber", 30),
    ("lead", 90),
    ("mql", 25),
    ("sql", 15),
    ("opportunity", 20),
    ("customer", 10),
    ("nurture", 8),
    ("disqualified", 2),
)
TIMEZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago")
PRODUCTS = ("GTX Basic", "GTX Pro", "MG Special", "MG Advanced", "GTX Plus Pro")


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(name: str, header: list[str], rows: list[list[object]]) -> None:
    with (OUT / name).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def reps() -> list[str]:
    managers = [
        [
            "R001",
            "Dustin Brinkmann",
            "dustin.brinkmann@example.com",
            "",
            "central",
            "",
            "yes",
            "Europe/Berlin",
        ],
        ["R002", "Cara Losch", "cara.losch@example.com", "", "east", "", "yes", "America/New_York"],
    ]
    agents = []
    for n in range(8):
        rep_id = f"R{n + 3:03d}"
        first, last = FIRST[n], LAST[n]
        manager, pool, zone = (
            ("R001", "central", "Europe/Berlin") if n < 4 else ("R002", "east", "America/New_York")
        )
        active = "no" if n == 7 else "yes"
        agents.append(
            [
                rep_id,
                f"{first} {last}",
                f"{first}.{last}@example.com".lower(),
                manager,
                pool,
                25,
                active,
                zone,
            ]
        )
    header = ["external_id", "name", "email", "manager", "pools", "capacity", "active", "timezone"]
    _write("reps.csv", header, managers + agents)
    return [row[0] for row in agents if row[6] == "yes"]


def leads(pick: random.Random, owners: list[str]) -> list[tuple[str, str, str | None]]:
    stages = [stage for stage, count in STAGES for _ in range(count)]
    pick.shuffle(stages)
    rows, made = [], []
    for n, stage in enumerate(stages):
        first, last = pick.choice(FIRST), pick.choice(LAST)
        lead_id = f"L{n + 1:04d}"
        owner = pick.choice(owners) if stage in {"mql", "sql", "opportunity", "customer"} else ""
        score = {"subscriber": 5, "lead": 30, "nurture": 20, "disqualified": 0}.get(stage, 70)
        if stage == "lead" and n % 6 == 0:
            score = 60  # scored over the MQL threshold in the CRM, waiting for leadflow to assign
        rows.append(
            [
                lead_id,
                f"{first}.{last}{n}@{pick.choice(COMPANIES).split()[0].lower()}.example".lower(),
                f"{first} {last}",
                pick.choice(COMPANIES),
                score + pick.randrange(0, 20),
                stage,
                owner,
                pick.choice(TIMEZONES),
                "yes" if n % 37 == 0 else "no",
                "yes" if n % 53 == 0 else "no",
            ]
        )
        made.append((lead_id, stage, owner or None))
    header = [
        "external_id",
        "email",
        "name",
        "company",
        "score",
        "stage",
        "owner",
        "timezone",
        "unsubscribed",
        "do_not_email",
    ]
    _write("leads.csv", header, rows)
    return made


def deals(
    pick: random.Random, made: list[tuple[str, str, str | None]]
) -> list[tuple[str, str, str]]:
    rows, open_deals = [], []
    candidates = [m for m in made if m[1] in {"sql", "opportunity", "customer"}]
    for n, (lead_id, stage, owner) in enumerate(candidates):
        deal_id = f"D{n + 1:04d}"
        engaged = NOW - timedelta(days=pick.randrange(5, 400))
        if stage == "customer" or (stage == "opportunity" and n % 4 == 0):
            outcome, deal_stage = (
                ("won", "Won") if stage == "customer" or n % 8 else ("lost", "Lost")
            )
            closed = min(engaged + timedelta(days=pick.randrange(20, 120)), NOW - timedelta(days=1))
            amount: object = pick.randrange(500, 30_000)
            rows.append(
                [
                    deal_id,
                    lead_id,
                    "",
                    pick.choice(PRODUCTS),
                    owner,
                    deal_stage,
                    outcome,
                    amount,
                    _stamp(engaged),
                    _stamp(closed),
                ]
            )
        else:
            deal_stage = "Engaging" if stage == "opportunity" else "Prospecting"
            rows.append(
                [
                    deal_id,
                    lead_id,
                    "",
                    pick.choice(PRODUCTS),
                    owner,
                    deal_stage,
                    "",
                    "",
                    _stamp(engaged),
                    "",
                ]
            )
            open_deals.append((deal_id, lead_id, owner or ""))
    header = [
        "external_id",
        "lead",
        "account",
        "product",
        "owner",
        "stage",
        "outcome",
        "amount",
        "engaged_at",
        "closed_at",
    ]
    _write("deals.csv", header, rows)
    return open_deals


def activities(
    pick: random.Random,
    made: list[tuple[str, str, str | None]],
    open_deals: list[tuple[str, str, str]],
) -> None:
    rows = []
    for n in range(400):
        lead_id, _stage, owner = pick.choice(made)
        when = NOW - timedelta(minutes=pick.randrange(60, 60 * 24 * 90))
        kind = pick.choice(("page_view", "page_view", "email_open", "download", "webinar"))
        rows.append([f"A{n + 1:05d}", lead_id, "", kind, "", _stamp(when)])
        if owner and n % 5 == 0:
            rows.append(
                [f"A{n + 1:05d}c", lead_id, "", "call", owner, _stamp(when + timedelta(hours=2))]
            )
    for deal_id, lead_id, owner in open_deals[::2]:
        when = NOW - timedelta(days=pick.randrange(1, 60))
        rows.append([f"A-{deal_id}", lead_id, deal_id, "meeting", owner, _stamp(when)])
    header = ["external_id", "lead", "deal", "type", "actor", "occurred_at"]
    _write("activities.csv", header, rows)


def main() -> None:
    pick = random.Random(20260302)
    owners = reps()
    made = leads(pick, owners)
    open_deals = deals(pick, made)
    activities(pick, made, open_deals)
    print(f"wrote the sample into {OUT}")


if __name__ == "__main__":
    main()
