"""The typed, frozen configuration. ``config.py`` fills it from defaults, file, environment."""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from leadflow.durations import parse_duration
from leadflow.mail_settings import MailSettings
from leadflow.setting_types import (
    WEEKDAYS,
    Duration,
    DurationOrZero,
    Section,
    TimeOfDay,
    TimezoneName,
    Weekday,
    WholeNumber,
    clock_reading,
    written_time,
)

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
"""A declared attribute's name: it becomes a literal JSON path in SQL (``store.attributes``)."""


class DatabaseSettings(Section):
    url: str = "sqlite:///state/leadflow.db"
    connect_timeout: Duration = timedelta(seconds=10)
    pool_size: WholeNumber = Field(default=5, ge=1, le=100)
    statement_timeout: Duration = timedelta(seconds=60)
    """PostgreSQL cancels a statement after this (a lock wait included); the client gives up
    on a reply 5 s later, which bounds every call on a server that stopped answering."""
    leadership_timeout: Duration = timedelta(seconds=5)
    """The bound of one leadership check on the lock connection: no answer within it, and the
    replica gives leadership up."""


class PathSettings(Section):
    rules: Path = Path("rules")
    templates: Path = Path("templates")
    state: Path = Path("state")

    @field_validator("rules", "templates", "state", mode="before")
    @classmethod
    def _named(cls, value: object) -> object:
        # An empty value (`LEADFLOW_PATHS__RULES=` left blank) became Path("."): the rules were
        # looked for in the working folder, and its every YAML file reported as a broken rule.
        if isinstance(value, str) and not value.strip():
            msg = "is empty; give a folder (relative to the working folder, or absolute)"
            raise ValueError(msg)
        return value


DEFAULT_CALENDAR = "default"
"""The name rules use for the ``calendar:`` section; ``calendars:`` holds the others."""


def _not_the_default_name(name: str) -> str:
    if name == DEFAULT_CALENDAR:
        msg = (
            f"the name {DEFAULT_CALENDAR!r} belongs to the calendar: section; "
            "rename this calendar or move it to calendar:"
        )
        raise ValueError(msg)
    return name


CalendarName = Annotated[str, AfterValidator(_not_the_default_name)]


END_OF_DAY = time(0, 0)
"""A calendar's ``end: "24:00"``: closing at the midnight that ends the day."""
CALENDAR_TIMES = "a time of day from 00:00 to 24:00 (24:00 only as an end)"


class CalendarSettings(Section):
    """Business hours for SLA timers."""

    timezone: TimezoneName = "UTC"
    weekdays: tuple[Weekday, ...] = WEEKDAYS[:5]
    start: TimeOfDay = time(9, 0)
    end: TimeOfDay = time(17, 0)
    holidays: tuple[date, ...] = ()

    @field_validator("weekdays")
    @classmethod
    def _some_weekday(cls, weekdays: tuple[Weekday, ...]) -> tuple[Weekday, ...]:
        if not weekdays:
            msg = f"list at least one business day of {', '.join(WEEKDAYS)}"
            raise ValueError(msg)
        return weekdays

    @field_validator("start", "end", mode="before")
    @classmethod
    def _business_time(cls, value: object, info: ValidationInfo) -> object:
        if (
            info.field_name == "end"
            and isinstance(value, str)
            and clock_reading(value) == (24, 0, 0)
        ):
            # "24:00" (round-the-clock hours) closes at the next midnight; a time of day
            # cannot say 24:00, so it is kept as 00:00, which no other closing time can be
            # (an end must come after the start). "23:59" left a closed minute each day.
            return END_OF_DAY
        # Said for a calendar: "hour value is outside expected range of 0-23" for "24:30"
        # hid that 24:00 is a calendar's end of day.
        return written_time(value, CALENDAR_TIMES)

    @field_serializer("end")
    def _show_end_of_day(self, end: time) -> time | str:
        return "24:00:00" if end == END_OF_DAY else end  # as `leadflow config` should show it

    @field_validator("end")
    @classmethod
    def _end_after_start(cls, end: time, info: object) -> time:
        data = getattr(info, "data", {})
        start = data.get("start")
        if start is not None and end != END_OF_DAY and end <= start:
            msg = f"end {end} must be after start {start}"
            raise ValueError(msg)
        return end


class CrmSettings(Section):
    record_url: str = "https://crm.example.com/leads/{external_id}"
    deal_url: str = "https://crm.example.com/deals/{external_id}"
    webhook_url: str | None = None
    """Where leadflow posts the changes it makes (stage, owner, closed deals); unset: nowhere."""
    webhook_secret: SecretStr | None = None
    """HMAC key of the webhook signature (a secret: environment only); needed with webhook_url."""
    webhook_timeout: Duration = timedelta(seconds=10)


class StageSettings(Section):
    """The funnel's stages: ``progression`` is ordered, ``side`` stages stand outside it."""

    progression: tuple[str, ...] = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")
    side: tuple[str, ...] = ("nurture", "recycled", "disqualified")
    initial: str = "lead"
    mql: str = "mql"
    deal_open: str | None = "Engaging"
    """The stage a deal imported (or posted) already closed spent from its ``engaged_at`` to its
    close: the file gives only the outcome, and without this entry the report would measure no
    pipeline stay for historical deals. None (``null``): the outcome alone is recorded."""

    @field_validator("progression", "side")
    @classmethod
    def _each_once(cls, stages: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({stage for stage in stages if stages.count(stage) > 1})
        if repeated:
            msg = f"each stage once; repeated: {', '.join(repeated)}"
            raise ValueError(msg)
        return stages

    def all(self) -> tuple[str, ...]:
        return self.progression + self.side


AttributeType = Literal["string", "integer", "number", "boolean", "datetime", "date"]

BUILT_IN_FIELDS: dict[str, tuple[str, ...]] = {
    "leads": (
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
        "last_activity_at",
        "stage_entered_at",
    ),
    "deals": (
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
        "last_activity_at",
    ),
}
"""The fields of a lead and of a deal that an import column or a posted key fills (the import's
``KIND_FIELDS``, which a test keeps equal): an attribute of the same name would never be filled
by its column, which fills the field."""


def _not_a_field(kind: str) -> AfterValidator:
    def check(name: str) -> str:
        if name in BUILT_IN_FIELDS[kind]:
            msg = (
                f"attribute {name!r} is the name of a {kind[:-1]}'s built-in field {name!r}: "
                f"an import column or posted key {name!r} fills the field, never the "
                "attribute; give the attribute another name"
            )
            raise ValueError(msg)
        return name

    return AfterValidator(check)


class AttributeSettings(Section):
    """Declared attribute types; an import column or a rule field must be one of these."""

    leads: dict[Annotated[str, _not_a_field("leads")], AttributeType] = {}
    deals: dict[Annotated[str, _not_a_field("deals")], AttributeType] = {}
    indexed: tuple[str, ...] = ()
    """Lead attributes rules filter on often: each gets an expression index at start-up."""

    @field_validator("leads", "deals")
    @classmethod
    def _names_are_identifiers(cls, declared: dict[str, str]) -> dict[str, str]:
        for name in declared:
            if not ATTRIBUTE_NAME.match(name):
                msg = f"attribute name {name!r}: use letters, digits and underscores, starting with a letter"
                raise ValueError(msg)
        return declared

    @field_validator("indexed")
    @classmethod
    def _indexed_are_declared(
        cls, indexed: tuple[str, ...], info: ValidationInfo
    ) -> tuple[str, ...]:
        # A field validator, not a model one, so that the error points at the indexed: line.
        if "leads" not in info.data:
            return indexed  # leads itself failed; its own error says why
        unknown = [name for name in indexed if name not in info.data["leads"]]
        if unknown:
            msg = f"{', '.join(unknown)} not declared under attributes.leads"
            raise ValueError(msg)
        return indexed


ImportKind = Literal["reps", "leads", "deals", "activities"]


def _check_encoding(name: str) -> str:
    import codecs

    try:
        codecs.lookup(name)
    except LookupError:
        msg = f"unknown encoding {name!r}; use e.g. utf-8, latin-1 or cp1252"
        raise ValueError(msg) from None
    return name


STRPTIME_DIRECTIVES = frozenset("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
"""The directives Python's ``strptime`` reads (``%-d``, ``%e``, ``%Q``... it does not)."""


def _check_date_format(fmt: str) -> str:
    """A strptime format, refused when the config loads: a bad one only showed as every date
    cell of an import rejected."""
    directives = re.findall(r"%(.?)", fmt)
    for directive in directives:
        if not directive:
            msg = f"{fmt!r} ends in a lone %; write %% for a percent sign"
            raise ValueError(msg)
        if directive not in STRPTIME_DIRECTIVES:
            msg = (
                f"{fmt!r}: %{directive} is not a strftime directive; use e.g. %d (day), %m "
                "(month), %Y (year), %H:%M:%S (time), see "
                "https://docs.python.org/3/library/datetime.html#format-codes"
            )
            raise ValueError(msg)
    if not [d for d in directives if d != "%"]:
        msg = f"{fmt!r} has no directive, so it reads no date; write e.g. %d.%m.%Y for 31.12.2017"
        raise ValueError(msg)
    return fmt


DateFormat = Annotated[str, AfterValidator(_check_date_format)]


def _a_list_of_columns(value: object) -> object:
    if isinstance(value, str):
        msg = (
            f"{value!r} is one column; list the columns to join, e.g. [First Name, Last Name] "
            "(a single column is mapped under columns)"
        )
        raise ValueError(msg)  # noqa: TRY004 (pydantic reports a ValueError at its place)
    return value


def _check_combined(columns: tuple[str, ...]) -> tuple[str, ...]:
    if len(columns) < 2:
        msg = (
            "list two or more columns to join, e.g. [First Name, Last Name] (a single column "
            "is mapped under columns)"
        )
        raise ValueError(msg)
    for position, column in enumerate(columns):
        if not column.strip():
            msg = f"column {position + 1} of the list is empty; name a column of the file"
            raise ValueError(msg)
        if column in columns[:position]:
            msg = f"column {column!r} is listed twice"
            raise ValueError(msg)
    return columns


CombinedColumns = Annotated[
    tuple[str, ...], BeforeValidator(_a_list_of_columns), AfterValidator(_check_combined)
]


class ImportMapping(Section):
    """How one CRM export's header names and value formats map onto our fields."""

    columns: dict[str, str | tuple[str, ...]] = {}
    """File header -> our field (``email``, ``attributes.industry``), or a list of fields."""
    combine: dict[str, CombinedColumns] = {}
    """Our field -> the columns whose cells, joined by a space (empty ones left out), fill it:
    ``name: [First Name, Last Name]``."""
    date_formats: tuple[DateFormat, ...] = ()
    """strptime formats tried after ISO 8601 (which is always accepted). None by default: a
    date such as 01-02-2024 is 1 February in Europe and January 2 in the US, and an export
    read the wrong way round is silently wrong; such a date is refused naming this setting."""
    delimiter: Literal[",", ";", "\t", "|"] = ","
    """Between a CSV file's fields: a European Excel saves "CSV" with semicolons."""
    decimal_separator: Literal[".", ","] = "."
    """Of numbers and amounts; formatted amounts (``$1,234.50``, ``1.234,50 EUR``) are read too."""
    encoding: Annotated[str, BeforeValidator(_check_encoding)] = "utf-8"
    email_pattern: str | None = None
    """Reps: email made from the name when there is no email column, e.g. ``{first}.{last}@x.com``;
    also how a manager referenced by name who is not in the file gets an email."""
    timezone: TimezoneName = "UTC"
    true_values: tuple[str, ...] = ("true", "yes", "y", "1", "x")
    false_values: tuple[str, ...] = ("false", "no", "n", "0", "")
    empty_values: tuple[str, ...] = ()
    """Cells that mean "no value" in every column, e.g. ``[Select, N/A]``: a CRM export's
    placeholder of an unanswered picklist (compared ignoring case and surrounding spaces)."""
    rep_reference: Literal["external_id", "name", "email"] = "external_id"
    footer: Literal["none", "after_blank_line"] = "none"
    """A CSV report export's footer: ``after_blank_line`` skips the one-field lines after the
    file's last blank line (Salesforce's copyright and "Generated By" lines), noted once."""
    values: dict[str, dict[str, str]] = {}
    """Per field, CRM value -> our value (e.g. deal stage ``Won`` -> outcome ``won``)."""


class ImportSettings(Section):
    batch_size: WholeNumber = Field(default=20_000, ge=1, le=100_000)
    mappings: dict[ImportKind, ImportMapping] = {}


class HttpSettings(Section):
    enabled: bool = True
    """The daemon serves the API, probes and metrics; false runs it without an HTTP server."""
    host: str = "127.0.0.1"
    port: WholeNumber = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    """Bearer token of the /v1 API (a secret: environment only)."""
    allow_anonymous: bool = False
    """Serve the /v1 API without a token (a trial on a private network); else a token is required."""
    max_body_bytes: WholeNumber = Field(default=5_000_000, ge=1024)
    max_records: WholeNumber = Field(default=1_000, ge=1, le=100_000)
    """The most records one ``POST /v1/...`` body may hold (a list longer is refused, 422,
    before anything is written): a request is one transaction, and other requests wait for a
    long one. A CRM's batch APIs hold 100; large loads belong in ``leadflow import``."""
    header_timeout: Duration = timedelta(seconds=10)
    """A connection not sending a request's whole headers within this (of opening, or of the
    previous answer) is closed: a slow client cannot hold connections open for ever."""
    body_timeout: Duration = timedelta(seconds=30)
    """A request whose whole body has not arrived this long after its headers is answered 408
    and its connection closed: a deadline on the whole body, so trickling it byte by byte
    does not hold a connection and a request for ever."""
    lock_timeout: Duration = timedelta(seconds=5)
    """How long one request waits, in all, for locks other sessions or processes hold (a
    ``LOCK TABLE``, a migration, a write-locked SQLite file) before answering 503: not the
    60 s of ``database.statement_timeout``."""


DashboardRole = Literal["viewer", "operator"]
"""``viewer`` reads every page; ``operator`` may also retry a failed message."""


def _check_password_hash(value: object) -> object:
    if isinstance(value, str) and not value.startswith("$argon2"):
        msg = (
            "expected an argon2 hash such as $argon2id$v=19$..., never a plain password; "
            "make one with: leadflow dashboard hash-password"
        )
        raise ValueError(msg)
    return value


class DashboardUser(Section):
    password_hash: Annotated[str, BeforeValidator(_check_password_hash)] | None = None
    """argon2 hash of the user's password (``leadflow dashboard hash-password``); None: the user
    signs in only through the trusted reverse-proxy header."""
    role: DashboardRole = "viewer"


class DashboardSettings(Section):
    """The web dashboard under ``/ui/``: off unless enabled, and never without a login."""

    enabled: bool = False
    users: dict[str, DashboardUser] = {}
    """User name -> password hash and role."""
    trusted_header: str | None = None
    """A reverse proxy's header naming the signed-in user (e.g. ``X-Forwarded-User``), honoured
    only on requests from ``trusted_proxies``."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses of the reverse proxies whose ``trusted_header`` is believed."""
    proxy_role: DashboardRole = "viewer"
    """Role of a proxy-named user absent from ``users`` (a listed user keeps their own role)."""
    session_lifetime: Duration = timedelta(hours=8)
    secure_cookie: bool = False
    """Mark the session cookie Secure: set it when the dashboard is reached over https."""
    session_secret: SecretStr | None = None
    """Key signing the session cookies (a secret: environment only); unset, a key generated once
    and kept in the store is used, shared by every replica."""
    login_attempts: WholeNumber = Field(default=5, ge=1, le=1000)
    """Failed logins per user name and address before the login is refused for ``lockout``."""
    lockout: Duration = timedelta(minutes=15)
    funnel_refresh: Duration = timedelta(minutes=5)
    """The Funnel page serves its period's report as computed (and says when) until it is older
    than this; an older one is still served while one computation in the background renews it."""
    funnel_wait: DurationOrZero = timedelta(milliseconds=200)
    """How long a request for a period with no report computed yet waits for it before the page
    shows the stage counts alone and reloads itself (``0``: it never waits)."""


FOREVER = "forever"


def _keep_or_forever(value: object) -> object:
    if isinstance(value, str) and value.strip().lower() == FOREVER:
        return FOREVER
    if isinstance(value, str | int | float | timedelta) and not isinstance(value, bool):
        return parse_duration(value)
    msg = f"{value!r} is not a duration nor forever; write e.g. 365d or forever"
    raise ValueError(msg)


class RulesSettings(Section):
    """What the rule set may be."""

    allow_empty: bool = False
    """Run with no rules at all (a new project, a replica that only sends): otherwise a rules
    folder without a rule is refused at ``check``, at start-up and on reload, as losing every
    rule (a folder emptied by a bad deploy) would silently stop MQL assignment."""


class AuditSettings(Section):
    """How long the audit is kept in the store, and where rows go before they are deleted."""

    keep: Annotated[timedelta | Literal["forever"], BeforeValidator(_keep_or_forever)] = timedelta(
        days=365
    )
    """Audit rows older than this are archived, then deleted; ``forever`` keeps every row."""
    keep_score_changes: Annotated[
        timedelta | Literal["forever"], BeforeValidator(_keep_or_forever)
    ] = timedelta(days=365)
    """``score_changes`` rows (why a lead's score moved) older than this are deleted, not
    archived: a rescoring pass writes one per changed lead, decay alone thousands an hour;
    ``forever`` keeps every row."""
    archive: Path | None = Path("state/audit-archive")
    """Folder of the gzip'd JSON Lines files deleted audit rows are written to first (one file
    per batch, named by its id range); null deletes without an archive."""


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class SchedulerSettings(Section):
    misfire_grace: Duration = timedelta(minutes=5)
    """A tick later than this (the process was busy or suspended) is skipped, not run late."""
    evaluation_batch: WholeNumber = Field(default=1000, ge=1, le=100_000)
    shutdown_grace: Duration = timedelta(seconds=8)
    """How long SIGTERM waits for the evaluation in flight before the daemon exits anyway."""
    funnel_tick: Duration = timedelta(minutes=1)
    """How often the daemon escalates due SLAs and sends due nurture steps."""
    retention_every: Duration = timedelta(hours=1)
    """How often the leader deletes what ``mail.keep_sent`` and ``audit.keep`` let go."""
    retention_batch: WholeNumber = Field(default=10_000, ge=100, le=100_000)
    """Rows deleted per transaction by the retention job (and ``leadflow prune``)."""
    scoring_every: Duration = timedelta(minutes=15)
    """How often the daemon's funnel tick rescores every lead with an enabled scoring model
    (records posted to the API are rescored at once). A pass reads every activity: a million
    leads take tens of seconds, so decay is brought up to date this often, not every tick."""


class Settings(Section):
    """The whole effective configuration. Paths are relative to ``root``."""

    root: Path = Path()
    database: DatabaseSettings = DatabaseSettings()
    paths: PathSettings = PathSettings()
    rules: RulesSettings = RulesSettings()
    mail: MailSettings = MailSettings()
    calendar: CalendarSettings = CalendarSettings()
    calendars: dict[CalendarName, CalendarSettings] = {}
    """Named calendars besides the default one, for rules whose reps work other hours."""
    crm: CrmSettings = CrmSettings()
    stages: StageSettings = StageSettings()
    attributes: AttributeSettings = AttributeSettings()
    imports: ImportSettings = Field(default=ImportSettings(), alias="import")
    http: HttpSettings = HttpSettings()
    audit: AuditSettings = AuditSettings()
    log: LogSettings = LogSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    dashboard: DashboardSettings = DashboardSettings()

    def path(self, relative: Path) -> Path:
        """``relative`` resolved against the configuration's root folder."""
        return relative if relative.is_absolute() else self.root / relative


SECRET_KEYS = frozenset(
    {
        "mail.smtp.password",
        "mail.unsubscribe_secret",
        "http.token",
        "crm.webhook_secret",
        "dashboard.session_secret",
    }
)
"""Keys read only from the environment (``LEADFLOW_...`` or ``LEADFLOW_..._FILE``)."""
