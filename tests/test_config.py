"""Configuration: precedence, validation messages that point at the key, secrets."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest

from leadflow.config import describe, load_settings
from leadflow.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class TestPrecedence:
    """Argument beats environment beats config.yaml beats default, and each value says so."""

    def test_each_layer_overrides_the_one_below(self, tmp_path: Path) -> None:
        path = write(tmp_path, "mail:\n  smtp:\n    port: 2525\n    host: relay.local\n")
        loaded = load_settings(
            path,
            env={"LEADFLOW_MAIL__SMTP__PORT": "587", "LEADFLOW_MAIL__SMTP__TIMEOUT": "90s"},
            overrides={"mail.smtp.timeout": "2m"},
        )
        smtp = loaded.settings.mail.smtp
        assert (smtp.host, smtp.port, smtp.timeout) == ("relay.local", 587, timedelta(minutes=2))
        shown = {key: (value, source) for key, value, source in describe(loaded)}
        assert shown["mail.smtp.host"] == ("relay.local", f"{path}:4:5")
        assert shown["mail.smtp.port"] == ("587", "environment LEADFLOW_MAIL__SMTP__PORT")
        assert shown["mail.smtp.timeout"] == ("2m", "argument")
        assert shown["mail.smtp.security"] == ("none", "default")

    def test_relative_paths_are_rooted_at_the_config_folder(self, tmp_path: Path) -> None:
        loaded = load_settings(write(tmp_path, "paths:\n  rules: my-rules\n"), env={})
        settings = loaded.settings
        assert settings.path(settings.paths.rules) == tmp_path / "my-rules"

    def test_durations_are_parsed_once(self, tmp_path: Path) -> None:
        path = write(tmp_path, "mail:\n  retry:\n    first_delay: 90m\n    max_delay: 1d 12h\n")
        retry = load_settings(path, env={}).settings.mail.retry
        assert (retry.first_delay, retry.max_delay) == (timedelta(minutes=90), timedelta(hours=36))


class TestValidation:
    """Every problem is reported at once, with file:line and what to write instead."""

    def test_unknown_keys_bad_values_and_secrets_all_reported(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "mail:\n  smtp:\n    prot: 25\n    password: hunter2\n"
            "calendar:\n  timezone: Europe/Berln\n  start: '09:00'\n"
            "scheduler:\n  misfire_grace: soon\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:4:5: mail.smtp.password is a secret and is read only from the environment; "
            "set LEADFLOW_MAIL__SMTP__PASSWORD or LEADFLOW_MAIL__SMTP__PASSWORD_FILE instead",
            f"{path}:3:5: unknown key 'mail.smtp.prot'; did you mean 'port'?",
            f"{path}:6:3: calendar.timezone: unknown timezone 'Europe/Berln'; "
            "did you mean Europe/Berlin, Europe/Belfast, Europe/Helsinki?",
            f"{path}:9:3: scheduler.misfire_grace: 'soon' is not a duration; "
            "write a number and a unit (s, m, h, d, w), e.g. 90m",
        ]
        assert "hunter2" not in str(caught.value)

    def test_an_unknown_section_is_located_at_its_own_key(self, tmp_path: Path) -> None:
        """``databse:`` holding ``url:`` was reported at the ``url`` below it (2:3)."""
        path = write(tmp_path, "databse:\n  url: sqlite:///x.db\nmail:\n  smtpp:\n    host: x\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:4:3: unknown key 'mail.smtpp'; did you mean 'smtp'?",
            f"{path}:1:1: unknown key 'databse'; did you mean 'database'?",
        ]

    def test_a_stage_listed_twice_is_refused(self, tmp_path: Path) -> None:
        path = write(tmp_path, "stages:\n  progression: [lead, mql, lead]\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:2:3: stages.progression: each stage once; repeated: lead"
        ]

    def test_unknown_environment_key_names_the_variable(self, tmp_path: Path) -> None:
        with pytest.raises(
            ConfigError,
            match=r"^LEADFLOW_DATABASE__URLL='sqlite://': unknown key "
            r"'database.urll'; did you mean 'url'\?",
        ):
            load_settings(write(tmp_path, ""), env={"LEADFLOW_DATABASE__URLL": "sqlite://"})

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            # beyond timedelta itself: was an OverflowError traceback
            (
                {"LEADFLOW_SCHEDULER__FUNNEL_TICK": "99999999999d"},
                "LEADFLOW_SCHEDULER__FUNNEL_TICK='99999999999d': "
                "'99999999999d' is too long; at most 36525d (100 years)",
            ),
            # a timedelta, but `now - keep_sent` overflowed the date in prune: a traceback too
            (
                {"LEADFLOW_MAIL__KEEP_SENT": "999999999d"},
                "LEADFLOW_MAIL__KEEP_SENT='999999999d': "
                "'999999999d' is too long; at most 36525d (100 years)",
            ),
            (
                {"LEADFLOW_AUDIT__KEEP": "99999999999999d"},
                "LEADFLOW_AUDIT__KEEP='99999999999999d': "
                "'99999999999999d' is too long; at most 36525d (100 years)",
            ),
        ],
    )
    def test_a_duration_beyond_a_hundred_years_is_one_line(
        self, tmp_path: Path, env: dict[str, str], message: str
    ) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(write(tmp_path, ""), env=env)
        assert str(caught.value).splitlines() == [message]

    def test_an_empty_folder_path_is_one_line(self, tmp_path: Path) -> None:
        """``LEADFLOW_PATHS__RULES=`` left blank read the rules from the working folder (its
        every YAML file a broken rule, 37 problems in the repository's root)."""
        with pytest.raises(ConfigError) as caught:
            load_settings(write(tmp_path, ""), env={"LEADFLOW_PATHS__RULES": ""})
        assert str(caught.value).splitlines() == [
            "LEADFLOW_PATHS__RULES='': is empty; give a folder "
            "(relative to the working folder, or absolute)"
        ]

    def test_a_repeated_section_or_key_is_refused(self, tmp_path: Path) -> None:
        """A second `database:` appended to the file replaced the first whole: its url went
        back to the default without a word, while `leadflow config` still named the first
        section's line as the url's source. Repeats are errors now, at any depth."""
        path = write(
            tmp_path,
            "database:\n  url: sqlite:///a.db\nmail:\n  smtp:\n    host: a\n    host: b\n"
            "database:\n  pool_size: 3\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:6:5: duplicate key 'host' (first at line 5); each key may appear once: "
            "merge the two",
            f"{path}:7:1: duplicate key 'database' (first at line 1); each key may appear once: "
            "merge the two",
        ]

    @pytest.mark.parametrize(
        ("kind", "message"),
        [
            ("list", "1:16: too many values: more than 100000 once aliases (*name) are expanded"),
            (
                "mapping",
                "1:21: too many values: more than 100000 once aliases (*name) are expanded",
            ),
            ("deep", "nested too deeply: at most 60 levels of mappings and lists"),
            ("deeper", "1:71: nested too deeply: at most 60 levels of mappings and lists"),
            ("cycle", "1:11: an alias (*name) refers to a value that contains it"),
            ("written out", "1:300006: too many values: more than 100000"),  # no alias
        ],
    )
    @pytest.mark.slow
    def test_hostile_yaml_is_one_line_at_once(
        self, tmp_path: Path, kind: str, message: str
    ) -> None:
        """Nine levels of nine aliases (a "billion laughs") hung `leadflow config` for minutes
        as a mapping (and, with the duplicate-key check, as a list too); 5,000 nested lists
        were a RecursionError traceback."""
        laughs = {
            "list": ('["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', "[{}]"),
            "mapping": (
                "{k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1}",
                "{{{}}}",
            ),
        }
        if kind in laughs:
            first, shape = laughs[kind]
            lines = [f"a0: &a0 {first}"]
            for i in range(1, 10):
                items = [
                    f"k{j}: *a{i - 1}" if kind == "mapping" else f"*a{i - 1}" for j in range(9)
                ]
                lines.append(f"a{i}: &a{i} " + shape.format(", ".join(items)))
            text = "\n".join(lines) + "\ndatabase: *a9\n"
        elif kind == "cycle":
            text = "database: &a [*a]\n"
        elif kind == "written out":
            text = "database: [" + ", ".join(["1"] * 100_001) + "]\n"
        else:
            depth = 5000 if kind == "deep" else 100
            text = "database: " + "[" * depth + "]" * depth + "\n"
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        separator = ": " if kind == "deep" else ":"
        assert str(caught.value) == f"{path}{separator}{message}"

    def test_broken_yaml_names_line_and_column(self, tmp_path: Path) -> None:
        path = write(tmp_path, "database:\n  url: [unclosed\n")
        with pytest.raises(ConfigError, match=rf"^{path}:3:1: invalid YAML: "):
            load_settings(path, env={})

    def test_sender_and_reply_to_are_one_address(self, tmp_path: Path) -> None:
        """mail.from became the envelope sender through parseaddr: "not an address" made it
        "not" and every message said From: not an address; a list sent from its first one."""
        path = write(
            tmp_path, 'mail:\n  from: "not an address"\n  reply_to: "a@x.test, b@x.test"\n'
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:2:3: mail.from: 'not an address' is not one email address (expected exactly "
            "one address such as leadflow@example.com); write e.g. "
            "'Leadflow <leadflow@example.com>'",
            f"{path}:3:3: mail.reply_to: 'a@x.test, b@x.test' is not one email address (expected "
            "exactly one address); write e.g. 'Leadflow <leadflow@example.com>'",
        ]

    @pytest.mark.parametrize(
        "sender", ["leadflow <leadflow@localhost>", "ops@example.com", "Ops Team <ops@x.test>"]
    )
    def test_a_sender_address_with_or_without_a_name_is_taken(
        self, tmp_path: Path, sender: str
    ) -> None:
        loaded = load_settings(write(tmp_path, f'mail:\n  from: "{sender}"\n'), env={})
        assert loaded.settings.mail.sender == sender


class TestTimesOfDay:
    """``end: 17:00`` unquoted is base 60 in YAML 1.1 (the number 1020): it was taken for 00:17
    UTC, or a traceback comparing it with a quoted start. Times are read as written, in the
    file and the environment; ``24:00`` is the midnight that ends the day."""

    def test_unquoted_times_in_the_file_are_the_times_written(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "calendar:\n  start: 10:00\n  end: 17:30\n"
            "mail:\n  send_window:\n    start: 8:00\n    end: 20:00\n",
        )
        settings = load_settings(path, env={}).settings
        assert (settings.calendar.start, settings.calendar.end) == (time(10), time(17, 30))
        window = settings.mail.send_window
        assert (window.start, window.end) == (time(8), time(20))

    def test_times_from_the_environment_are_the_times_written(self, tmp_path: Path) -> None:
        env = {"LEADFLOW_CALENDAR__START": "10:00", "LEADFLOW_CALENDAR__END": "23:00"}
        settings = load_settings(write(tmp_path, ""), env=env).settings
        assert (settings.calendar.start, settings.calendar.end) == (time(10), time(23))

    def test_24_00_ends_the_day_and_is_shown_so(self, tmp_path: Path) -> None:
        path = write(tmp_path, 'calendar:\n  start: "00:00"\n  end: 24:00\n')
        loaded = load_settings(path, env={})
        assert loaded.settings.calendar.end == time(0)
        shown = {key: value for key, value, _source in describe(loaded)}
        assert (shown["calendar.start"], shown["calendar.end"]) == ("00:00:00", "24:00:00")


class TestTimesOffTheClock:
    """``end: "25:00"`` was refused as pydantic says it ("hour value is outside expected range
    of 0-23", for "24:30" too, though a calendar takes 24:00): now the file, the key, the value
    as written and the range, 24:00 only as a calendar's end."""

    CALENDAR = "expected a time of day from 00:00 to 24:00 (24:00 only as an end)"

    @pytest.mark.parametrize(
        ("key", "written", "shown"),
        [
            ("end", '"25:00"', "'25:00'"),
            ("end", "24:30", "'24:30'"),
            ("end", '"12:60"', "'12:60'"),
            ("end", "17:00:60", "'17:00:60'"),
            ("end", "noon", "'noon'"),
            ("start", '"24:00"', "'24:00'"),
        ],
    )
    def test_a_calendar_time(self, tmp_path: Path, key: str, written: str, shown: str) -> None:
        other = "end: 24:00" if key == "start" else "start: 09:00"
        path = write(tmp_path, f"calendar:\n  {other}\n  {key}: {written}\n")
        with pytest.raises(ConfigError) as refused:
            load_settings(path, env={})
        assert str(refused.value) == f"{path}:3:3: calendar.{key}: {self.CALENDAR}, got {shown}"

    def test_a_named_calendar_and_the_environment(self, tmp_path: Path) -> None:
        path = write(tmp_path, "calendars:\n  night:\n    end: 24:15\n")
        with pytest.raises(ConfigError) as refused:
            load_settings(path, env={"LEADFLOW_CALENDAR__START": "9:75"})
        assert str(refused.value).splitlines() == [
            f"LEADFLOW_CALENDAR__START='9:75': {self.CALENDAR}",
            f"{path}:3:5: calendars.night.end: {self.CALENDAR}, got '24:15'",
        ]

    def test_the_send_window_takes_no_24_00(self, tmp_path: Path) -> None:
        path = write(tmp_path, "mail:\n  send_window:\n    end: 24:00\n")
        with pytest.raises(ConfigError) as refused:
            load_settings(path, env={})
        assert str(refused.value) == (
            f"{path}:3:5: mail.send_window.end: expected a time of day from 00:00 to 23:59, "
            "got '24:00'"
        )


class TestMailLease:
    """The lease must outlast a delivery's longest time (2 x smtp.timeout + data_done_timeout):
    checked only when mail.lease was written, so a longer data_done_timeout from the environment
    left the default 15m lease shorter than a delivery, and a slow relay's message could be
    claimed and sent again while its reply was still owed."""

    def test_the_default_lease_is_checked_and_the_message_says_it_is_the_default(
        self, tmp_path: Path
    ) -> None:
        env = {"LEADFLOW_MAIL__TRANSPORT": "smtp", "LEADFLOW_MAIL__SMTP__DATA_DONE_TIMEOUT": "20m"}
        with pytest.raises(ConfigError) as refused:
            load_settings(write(tmp_path, ""), env=env)
        assert str(refused.value) == (
            "mail.lease: must be longer than a delivery's longest time, twice smtp.timeout and"
            " smtp.data_done_timeout (2 x 30s + 20m = 21m); got 15m (the default; set"
            " mail.lease in the config file, or LEADFLOW_MAIL__LEASE)"
        )

    def test_mail_written_to_a_maildir_is_not_held_to_smtp_times(self, tmp_path: Path) -> None:
        """``leadflow config`` itself refused to run over SMTP timeouts a maildir never waits
        for."""
        env = {"LEADFLOW_MAIL__SMTP__DATA_DONE_TIMEOUT": "20m"}
        settings = load_settings(write(tmp_path, ""), env=env).settings
        assert (settings.mail.transport, settings.mail.lease) == ("maildir", timedelta(minutes=15))

    def test_a_longer_lease_beside_it_is_taken(self, tmp_path: Path) -> None:
        env = {"LEADFLOW_MAIL__SMTP__DATA_DONE_TIMEOUT": "20m", "LEADFLOW_MAIL__LEASE": "25m"}
        assert load_settings(write(tmp_path, ""), env=env).settings.mail.lease == timedelta(
            minutes=25
        )


class TestSecrets:
    """Secrets come from the environment or a file, and are never shown."""

    def test_secret_from_file_is_read_and_masked(self, tmp_path: Path) -> None:
        secret = tmp_path / "token"
        secret.write_text("s3cret\n", encoding="utf-8")
        loaded = load_settings(write(tmp_path, ""), env={"LEADFLOW_HTTP__TOKEN_FILE": str(secret)})
        token = loaded.settings.http.token
        assert token is not None
        assert token.get_secret_value() == "s3cret"
        shown = {key: (value, source) for key, value, source in describe(loaded)}
        assert shown["http.token"] == ("********", "environment LEADFLOW_HTTP__TOKEN_FILE")

    def test_missing_secret_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="LEADFLOW_HTTP__TOKEN_FILE: cannot read the secret"):
            load_settings(write(tmp_path, ""), env={"LEADFLOW_HTTP__TOKEN_FILE": "/nonexistent"})


class TestShownValues:
    """What ``leadflow config`` shows never includes a password, wherever it is written."""

    def test_an_empty_secret_is_refused(self, tmp_path: Path) -> None:
        """An empty token file (or `LEADFLOW_HTTP__TOKEN=` from an unset shell variable) was
        taken as the token "": the daemon started and refused every request, though without
        a token it refuses to start. Both are now errors naming the variable."""
        empty = tmp_path / "token"
        empty.write_text("\n", encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(
                write(tmp_path, ""),
                env={"LEADFLOW_HTTP__TOKEN_FILE": str(empty), "LEADFLOW_MAIL__SMTP__PASSWORD": " "},
            )
        assert str(caught.value).splitlines() == [
            f"LEADFLOW_HTTP__TOKEN_FILE: the secret file '{empty}' is empty",
            "LEADFLOW_MAIL__SMTP__PASSWORD is empty: give the secret, or unset the variable",
        ]

    def test_password_in_a_database_url_is_masked(self, tmp_path: Path) -> None:
        """The user name stays readable, the password is replaced, the source is kept."""
        loaded = load_settings(
            write(tmp_path, ""),
            env={"LEADFLOW_DATABASE__URL": "postgresql://app:pa55word@db.internal:5432/crm"},
        )
        shown = {key: (value, source) for key, value, source in describe(loaded)}
        assert shown["database.url"] == (
            "postgresql://app:********@db.internal:5432/crm",
            "environment LEADFLOW_DATABASE__URL",
        )
        assert all("pa55word" not in value for value, _source in shown.values())

    def test_url_without_a_password_is_shown_as_is(self, tmp_path: Path) -> None:
        path = write(tmp_path, "crm:\n  webhook_url: https://hooks.example.com/lf?x=1\n")
        shown = {key: value for key, value, _source in describe(load_settings(path, env={}))}
        assert shown["crm.webhook_url"] == "https://hooks.example.com/lf?x=1"


class TestUnrelatedEnvironment:
    """Variables that only share the prefix are ignored; likely typos of real keys still fail."""

    def test_unrelated_variable_is_ignored(self, tmp_path: Path) -> None:
        loaded = load_settings(
            write(tmp_path, ""),
            env={
                "LEADFLOW_VENV": "/opt/venv",
                "LEADFLOW_HOME": "/srv/lf",
                "LEADFLOW_LOG__LEVEL": "debug",
            },
        )
        assert loaded.settings.log.level == "debug"

    def test_misspelt_section_is_still_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(write(tmp_path, ""), env={"LEADFLOW_DATABSE__URL": "sqlite:///x.db"})
        assert "LEADFLOW_DATABSE__URL='sqlite:///x.db': unknown key 'databse'" in str(caught.value)
        assert "did you mean 'database'?" in str(caught.value)


class TestAttributeDeclarations:
    """Attribute problems point at the line that declares them."""

    def test_bad_name_and_undeclared_index_name_their_lines(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "attributes:\n  leads:\n    region: string\n  deals:\n    'bad name': string\n"
            "  indexed: [regoin]\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:5:5: attributes.deals: attribute name 'bad name': use letters, digits and "
            "underscores, starting with a letter",
            f"{path}:6:3: attributes.indexed: regoin not declared under attributes.leads",
        ]

    def test_an_attribute_named_as_a_field_is_refused(self, tmp_path: Path) -> None:
        """An attribute named ``score``, ``email`` or ``stage`` (a lead's fields) or ``amount``
        (a deal's) is refused at its own line: its import column would fill the field, and
        the attribute would stay empty and a rule on it never match."""
        path = write(
            tmp_path,
            "attributes:\n  leads:\n    region: string\n    score: integer\n"
            "    email: string\n    stage: string\n  deals:\n    amount: number\n"
            "    lead_source: string\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        field = "an import column or posted key {0!r} fills the field, never the attribute"
        assert str(caught.value).splitlines() == [
            f"{path}:{line}:5: attributes.{kind}s.{name}: attribute {name!r} is the name of a "
            f"{kind}'s built-in field {name!r}: {field.format(name)}; give the attribute "
            "another name"
            for line, kind, name in [
                (4, "lead", "score"),
                (5, "lead", "email"),
                (6, "lead", "stage"),
                (8, "deal", "amount"),
            ]
        ]

    def test_the_refused_names_are_the_imports_fields(self) -> None:
        """The names refused are exactly the fields an import column fills, per kind."""
        from leadflow.ingest.mapping import KIND_FIELDS
        from leadflow.settings import BUILT_IN_FIELDS

        assert {kind: set(BUILT_IN_FIELDS[kind]) for kind in ("leads", "deals")} == {
            kind: set(KIND_FIELDS[kind]) for kind in ("leads", "deals")
        }


class TestWholeNumbers:
    """An integer setting's error says a whole number is wanted and its range, whatever the
    value: pydantic's "unable to parse string as an integer" hid that ``1e9`` is not one."""

    def test_port_written_as_an_exponent(self, tmp_path: Path) -> None:
        path = write(tmp_path, "http:\n  port: 1e9\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value) == (
            f"{path}:2:3: http.port: must be a whole number from 1 to 65535, or 0 to listen on "
            "any free port, got '1e9'"
        )

    def test_other_integer_settings_out_of_range_or_not_whole(self, tmp_path: Path) -> None:
        path = write(tmp_path, "mail:\n  smtp:\n    port: 70000\nimport:\n  batch_size: 1e4\n")
        env = {"LEADFLOW_DATABASE__POOL_SIZE": "2.5", "LEADFLOW_HTTP__MAX_BODY_BYTES": "ten"}
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env=env)
        assert sorted(str(caught.value).splitlines()) == [
            f"{path}:3:5: mail.smtp.port: must be a whole number from 1 to 65535, got 70000",
            f"{path}:5:3: import.batch_size: must be a whole number from 1 to 100000, got '1e4'",
            "LEADFLOW_DATABASE__POOL_SIZE='2.5': must be a whole number from 1 to 100",
            "LEADFLOW_HTTP__MAX_BODY_BYTES='ten': must be a whole number of at least 1024",
        ]

    def test_a_truth_value_is_not_a_number(self, tmp_path: Path) -> None:
        """YAML reads ``true`` as a boolean, which pydantic alone would take as port 1."""
        path = write(tmp_path, "http:\n  port: true\nmail:\n  smtp:\n    rate_per_second: false\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert sorted(str(caught.value).splitlines()) == [
            f"{path}:2:3: http.port: must be a whole number from 1 to 65535, or 0 to listen on "
            "any free port, got true",
            f"{path}:5:5: mail.smtp.rate_per_second: expected a number, got false",
        ]

    def test_a_yes_or_no_is_quoted_as_written(self, tmp_path: Path) -> None:
        """YAML 1.1 also reads yes, no, on, off as booleans: the message quotes the word the
        file (or the environment) wrote, not the boolean it became."""
        path = write(
            tmp_path,
            "http:\n  port: yes\nmail:\n  smtp:\n    rate_per_second: Off\n"
            "calendar:\n  timezone: no\n",
        )
        env = {"LEADFLOW_DATABASE__POOL_SIZE": "on"}
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env=env)
        assert sorted(str(caught.value).splitlines()) == [
            f"{path}:2:3: http.port: must be a whole number from 1 to 65535, or 0 to listen on "
            "any free port, got yes",
            f"{path}:5:5: mail.smtp.rate_per_second: expected a number, got Off",
            f"{path}:7:3: calendar.timezone: expected an IANA timezone name such as "
            "Europe/Berlin, got no",
            "LEADFLOW_DATABASE__POOL_SIZE='on': must be a whole number from 1 to 100",
        ]


class TestDateFormats:
    """A date format strptime cannot read is refused when the config loads, not found out as
    every date cell of an import rejected."""

    def test_unknown_directive_lone_percent_and_no_directive(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "import:\n  mappings:\n    leads:\n      date_formats: ['%d.%m.%Y', '%Q']\n"
            "    deals:\n      date_formats:\n        - '%d/%m/%Y %'\n        - dd-mm-yyyy\n",
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:4:34: import.mappings.leads.date_formats.1: '%Q': %Q is not a strftime "
            "directive; use e.g. %d (day), %m (month), %Y (year), %H:%M:%S (time), see "
            "https://docs.python.org/3/library/datetime.html#format-codes",
            f"{path}:7:11: import.mappings.deals.date_formats.0: '%d/%m/%Y %' ends in a lone %; "
            "write %% for a percent sign",
            f"{path}:8:11: import.mappings.deals.date_formats.1: 'dd-mm-yyyy' has no directive, "
            "so it reads no date; write e.g. %d.%m.%Y for 31.12.2017",
        ]

    def test_every_python_directive_is_taken(self, tmp_path: Path) -> None:
        path = write(
            tmp_path,
            "import:\n  mappings:\n    leads:\n"
            "      date_formats: ['%a %d %b %Y %I:%M:%S.%f %p %z', '%G-W%V-%u', '100%% %j']\n",
        )
        mapping = load_settings(path, env={}).settings.imports.mappings["leads"]
        assert mapping.date_formats == ("%a %d %b %Y %I:%M:%S.%f %p %z", "%G-W%V-%u", "100%% %j")


class TestLocatedMistakes:
    """Found by an operator's edits: a byte that is not UTF-8 was reported as ``position 18``
    of the whole file, and a section written as a list or a word as pydantic's "Input should be
    a valid dictionary or instance of MailSettings"."""

    def test_a_byte_that_is_not_utf8(self, tmp_path: Path) -> None:
        path = tmp_path / "config.yaml"
        path.write_bytes(b'mail:\n  from: "caf\xe9 <ops@example.com>"\n')
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value) == f"{path}:2:13: not UTF-8 text: save the file as UTF-8"

    def test_a_section_that_is_not_a_mapping(self, tmp_path: Path) -> None:
        path = write(tmp_path, "mail: [smtp]\nscheduler:\n  funnel_tick: 1m\nhttp: 8080\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:1:1: mail: expected a mapping of keys (key: value), got ['smtp']",
            f"{path}:4:1: http: expected a mapping of keys (key: value), got 8080",
        ]

    def test_a_capital_m_is_refused_not_read_as_minutes(self, tmp_path: Path) -> None:
        # audit.keep: 12M (twelve months, as ISO 8601 writes it) was twelve minutes: the
        # hourly retention would archive and delete all but the last twelve minutes of audit.
        path = write(tmp_path, "audit:\n  keep: 12M\n  keep_score_changes: 1.5M\n")
        with pytest.raises(ConfigError) as caught:
            load_settings(path, env={})
        assert str(caught.value).splitlines() == [
            f"{path}:2:3: audit.keep: '12M': M is minutes here, not months; write 12m for "
            "minutes, or days for months (e.g. 360d)",
            f"{path}:3:3: audit.keep_score_changes: '1.5M': M is minutes here, not months; "
            "write 1.5m for minutes, or days for months (e.g. 45d)",
        ]
        settings = load_settings(write(tmp_path, "audit:\n  keep: 12m\n"), env={}).settings
        assert settings.audit.keep == timedelta(minutes=12)


class TestEnvironmentValues:
    """A variable of a text setting is taken verbatim (YAML cut ``#...`` off as a comment, made
    ``Acme: Sales`` a mapping and ``0123`` a number); other settings are read as YAML, a list
    of plain values also comma-separated; an error names the variable and quotes its text."""

    @pytest.mark.parametrize(
        ("name", "text"),
        [
            ("LEADFLOW_MAIL__FROM", "Acme Sales #1 <sales@acme.example>"),
            ("LEADFLOW_MAIL__FROM", "Acme: Sales <sales@acme.example>"),
            ("LEADFLOW_CRM__RECORD_URL", "https://crm.example.com/leads/{external_id} #x"),
            ("LEADFLOW_MAIL__SMTP__USERNAME", "0123"),
            ("LEADFLOW_DATABASE__URL", "::::"),
            ("LEADFLOW_HTTP__HOST", "[::1]"),
            ("LEADFLOW_CALENDARS__NIGHT__TIMEZONE", "Europe/Berlin"),
        ],
    )
    def test_text_is_taken_as_written(self, tmp_path: Path, name: str, text: str) -> None:
        loaded = load_settings(write(tmp_path, ""), env={name: text})
        key = name.removeprefix("LEADFLOW_").lower().replace("__", ".")
        assert {k: (v, s) for k, v, s in describe(loaded)}[key] == (text, f"environment {name}")

    def test_an_optional_text_is_unset_by_null_or_nothing(self, tmp_path: Path) -> None:
        loaded = load_settings(
            write(tmp_path, "stages:\n  deal_open: Engaging\nmail:\n  reply_to: a@b.example\n"),
            env={"LEADFLOW_STAGES__DEAL_OPEN": "null", "LEADFLOW_MAIL__REPLY_TO": ""},
        )
        assert (loaded.settings.stages.deal_open, loaded.settings.mail.reply_to) == (None, None)

    @pytest.mark.parametrize(
        ("text", "weekdays"),
        [
            ("mon,tue", ("mon", "tue")),
            (" sat , sun ", ("sat", "sun")),
            ("wed", ("wed",)),
            ("[mon, tue, fri]", ("mon", "tue", "fri")),
        ],
    )
    def test_a_list_of_words_comma_separated_or_as_yaml(
        self, tmp_path: Path, text: str, weekdays: tuple[str, ...]
    ) -> None:
        loaded = load_settings(write(tmp_path, ""), env={"LEADFLOW_CALENDAR__WEEKDAYS": text})
        assert loaded.settings.calendar.weekdays == weekdays

    def test_numbers_booleans_and_dates_are_still_yaml(self, tmp_path: Path) -> None:
        loaded = load_settings(
            write(tmp_path, ""),
            env={
                "LEADFLOW_HTTP__ALLOW_ANONYMOUS": "yes",
                "LEADFLOW_HTTP__PORT": "9090",
                "LEADFLOW_CALENDAR__HOLIDAYS": "2026-12-25,2026-12-26",
                "LEADFLOW_ATTRIBUTES__LEADS": "{region: string}",
            },
        )
        settings = loaded.settings
        assert (settings.http.allow_anonymous, settings.http.port) == (True, 9090)
        assert [str(day) for day in settings.calendar.holidays] == ["2026-12-25", "2026-12-26"]
        assert settings.attributes.leads == {"region": "string"}

    def test_an_error_names_the_variable_quotes_its_text_and_says_what_was_expected(
        self, tmp_path: Path
    ) -> None:
        env = {
            "LEADFLOW_HTTP__ALLOW_ANONYMOUS": "maybe",
            "LEADFLOW_CALENDAR__WEEKDAYS": "mon,tuesday",
            "LEADFLOW_LOG__LEVEL": "loud",
            "LEADFLOW_MAIL__FROM": "Acme Sales #1",
            "LEADFLOW_MAIL__SMTP__RATE_PER_SECOND": "fast",
            "LEADFLOW_CALENDARS": "night",
        }
        with pytest.raises(ConfigError) as caught:
            load_settings(write(tmp_path, ""), env=env)
        assert str(caught.value).splitlines() == [
            "LEADFLOW_MAIL__FROM='Acme Sales #1': 'Acme Sales #1' is not one email address "
            "(expected exactly one address such as leadflow@example.com); write e.g. "
            "'Leadflow <leadflow@example.com>'",
            "LEADFLOW_MAIL__SMTP__RATE_PER_SECOND='fast': expected a number",
            "LEADFLOW_CALENDAR__WEEKDAYS='mon,tuesday': item 2 ('tuesday'): expected 'mon', "
            "'tue', 'wed', 'thu', 'fri', 'sat' or 'sun'",
            "LEADFLOW_CALENDARS='night': expected a mapping, written {key: value, ...}",
            "LEADFLOW_HTTP__ALLOW_ANONYMOUS='maybe': expected true or false",
            "LEADFLOW_LOG__LEVEL='loud': expected 'debug', 'info', 'warning' or 'error'",
        ]

    def test_a_secrets_text_is_never_quoted(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as caught:
            load_settings(
                write(tmp_path, ""), env={"LEADFLOW_HTTP__TOKEN__X": "s3cret-token-value"}
            )
        assert str(caught.value) == "LEADFLOW_HTTP__TOKEN__X (a secret, not shown): expected text"
