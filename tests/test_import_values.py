"""Cell parsing: the date formats CRMs write, Yes/No booleans, numbers, and the exact reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from leadflow.ingest import date_cells, number_cells, values

DAY_FIRST = ("%d-%m-%Y", "%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S")
"""The day-first formats that were the default before none was (a European CRM's export)."""


class TestDates:
    """ISO 8601 always; the mapping's strptime formats after; naive times in the mapping's zone."""

    @pytest.mark.parametrize(
        ("cell", "expected"),
        [
            ("2017-03-01", datetime(2017, 3, 1, tzinfo=UTC)),
            ("20-10-2017", datetime(2017, 10, 20, tzinfo=UTC)),
            ("26-02-2018 19:58", datetime(2018, 2, 26, 19, 58, tzinfo=UTC)),
            ("2017-03-01T10:00:00+02:00", datetime(2017, 3, 1, 8, 0, tzinfo=UTC)),
            ("2017-03-01T10:00:00Z", datetime(2017, 3, 1, 10, 0, tzinfo=UTC)),
            ("  2017-03-01 ", datetime(2017, 3, 1, tzinfo=UTC)),
            ("", None),
            (None, None),
        ],
    )
    def test_formats_read_as_utc(self, cell: str | None, expected: datetime | None) -> None:
        """Each format a CRM export uses is read to the same aware UTC instant."""
        assert date_cells.datetime_parser(DAY_FIRST, "UTC")(cell) == expected

    def test_naive_times_are_in_the_mapping_timezone(self) -> None:
        """Berlin is UTC+1 in February, UTC+2 in July; an explicit offset ignores the zone."""
        parse = date_cells.datetime_parser(DAY_FIRST, "Europe/Berlin")
        assert parse("26-02-2018 19:58") == datetime(2018, 2, 26, 18, 58, tzinfo=UTC)
        assert parse("2018-07-01") == datetime(2018, 6, 30, 22, 0, tzinfo=UTC)
        assert parse("2018-07-01T00:00:00+00:00") == datetime(2018, 7, 1, tzinfo=UTC)

    @pytest.mark.parametrize(
        ("cell", "advice"),
        [
            (
                "01-02-2024",
                "; day or month first? none is guessed: set import.mappings.leads.date_formats: "
                "['%d-%m-%Y'] (day first) or ['%m-%d-%Y'] (month first)",
            ),
            (
                "12/25/2024 10:30",
                "; the month comes first: set import.mappings.leads.date_formats: "
                "['%m/%d/%Y %H:%M']",
            ),
            (
                "25.12.2024 10:30:00",
                "; the day comes first: set import.mappings.leads.date_formats: "
                "['%d.%m.%Y %H:%M:%S']",
            ),
            ("13-13-2024", ""),  # no date either way
            ("yesterday", ""),
        ],
    )
    def test_no_day_or_month_first_date_is_read_without_formats(
        self, cell: str, advice: str
    ) -> None:
        """01-02-2024 was read day-first by default (1 February), a US export's January 2
        silently wrong. No format is configured by default now: such a date is refused, saying
        which setting reads it (both orders when either could be meant)."""
        parse = date_cells.datetime_parser((), "UTC", "import.mappings.leads.date_formats")
        with pytest.raises(ValueError, match=r"^expected a date as ISO 8601") as caught:
            parse(cell)
        assert str(caught.value) == (
            f"expected a date as ISO 8601 (2017-03-01, 2017-03-01T10:00:00+02:00), got {cell!r}"
            + advice
        )
        assert parse("2024-02-01") == datetime(2024, 2, 1, tzinfo=UTC)

    def test_unreadable_date_names_the_formats(self) -> None:
        """The reason says what was expected and what was found."""
        with pytest.raises(ValueError, match=r"^expected a date as ISO 8601") as caught:
            date_cells.datetime_parser(("%d-%m-%Y",), "UTC")("31/12/2017")
        assert str(caught.value) == (
            "expected a date as ISO 8601 (2017-03-01, 2017-03-01T10:00:00+02:00) "
            "or %d-%m-%Y, got '31/12/2017'"
        )

    @pytest.mark.parametrize(
        "cell",
        [
            "26-02-2018 19:58",  # the fixed-width reading
            "29-02-2020",
            "02-01-0001 00:00",
            "31-12-9999 23:59:59",
            "6-2-2018 9:05",  # not zero-padded: the general reading
            " 6-02-2018",
            "06-02-2018  19:58",
            "29-02-2019",  # no such day, refused by both
            "31-04-2018 10:00",
            "00-01-2018",
            "01-13-2018",
            "01-01-0000",
            "06-02-2018 24:00",
            "06-02-2018 19:60",
            "\u0660\u0666-02-2018",  # Arabic-Indic digits: strptime's \\d reads them
        ],
    )
    def test_every_format_reads_a_text_as_strptime_does(self, cell: str) -> None:
        """Whichever way a text is read (zero-padded at full width, or the general pattern),
        the time is strptime's with the first format that reads it, or the same refusal."""
        parse = date_cells.datetime_parser(DAY_FIRST, "Europe/Berlin")
        expected: datetime | None = None
        for fmt in DAY_FIRST:
            try:
                naive = datetime.strptime(cell.strip(), fmt)  # noqa: DTZ007
            except ValueError:
                continue
            expected = naive.replace(tzinfo=ZoneInfo("Europe/Berlin")).astimezone(UTC)
            break
        if expected is None:
            with pytest.raises(ValueError, match=r"^expected a date as ISO 8601"):
                parse(cell)
        else:
            assert parse(cell) == expected

    def test_the_first_format_that_reads_a_text_wins(self) -> None:
        """03-04-2018 is 3 April with day-first formats listed first, 4 March after month-first."""
        day_first = date_cells.datetime_parser(("%d-%m-%Y", "%m-%d-%Y"), "UTC")
        month_first = date_cells.datetime_parser(("%m-%d-%Y", "%d-%m-%Y"), "UTC")
        assert day_first("03-04-2018") == datetime(2018, 4, 3, tzinfo=UTC)
        assert month_first("03-04-2018") == datetime(2018, 3, 4, tzinfo=UTC)
        assert month_first("13-04-2018") == datetime(2018, 4, 13, tzinfo=UTC)

    def test_a_date_attribute_is_a_calendar_date(self) -> None:
        """Dates have no zone: 20-10-2017 is 20 October wherever it is read."""
        assert date_cells.date_parser(DAY_FIRST)("20-10-2017") == date(2017, 10, 20)


class TestBooleansAndNumbers:
    """Yes/No by the mapping's spellings; numbers finite; whole numbers whole."""

    def test_yes_no_by_the_mapping(self) -> None:
        """Case does not matter; an empty cell is a false value by default."""
        parse = values.boolean_parser(("yes", "y"), ("no", "n", ""))
        assert [parse(c) for c in ("Yes", "YES", "y", "No", "n", "", True)] == [
            True,
            True,
            True,
            False,
            False,
            False,
            True,
        ]

    def test_unknown_boolean_lists_the_spellings(self) -> None:
        """The reason lists every accepted spelling."""
        parse = values.boolean_parser(("Ja",), ("Nein",))
        with pytest.raises(ValueError, match=r"^expected yes or no \(ja, nein\), got 'maybe'$"):
            parse("maybe")

    def test_numbers(self) -> None:
        """Integers accept 42.0 but not 4.5; numbers refuse nan and text."""
        assert number_cells.parse_integer("42") == 42
        assert number_cells.parse_integer("42.0") == 42
        assert number_cells.parse_integer("") is None
        assert number_cells.parse_number("1100.04") == 1100.04
        with pytest.raises(ValueError, match=r"^expected a whole number, got '4.5'$"):
            number_cells.parse_integer("4.5")
        with pytest.raises(ValueError, match=r"^expected a finite number, got 'nan'$"):
            number_cells.parse_number("nan")
        with pytest.raises(ValueError, match=r"^expected a number, got 'many'$"):
            number_cells.parse_number("many")

    @pytest.mark.parametrize(
        ("raw", "note"),
        [
            ("1_000", " (a _ is no thousands separator: write 1000)"),
            ("-1_000.5", " (a _ is no thousands separator: write -1000.5)"),
            ("\u0663", " (only the digits 0-9 are read)"),
            ("\u0661,\u0662\u0663\u0664", " (only the digits 0-9 are read)"),
            ("\uff15", " (only the digits 0-9 are read)"),
            ("1e3", " (an exponent is not read: write the number out in digits)"),
            ("-1.5E-3", " (an exponent is not read: write the number out in digits)"),
            ("1.01235E+11", " (an exponent is not read: write the number out in digits)"),
            ("0x10", ""),
            ("1__0e", ""),
        ],
    )
    def test_only_the_spellings_an_export_writes(self, raw: str, note: str) -> None:
        """Python's int() and float() read ``1_000``, ``1e3`` and any script's digits; a cell
        is read only with the digits 0-9, whatever the decimal separator, with a note on why."""
        for parse in (number_cells.parse_number, *map(number_cells.number_parser, ".,")):
            with pytest.raises(ValueError, match="expected a number") as refused:
                parse(raw)
            assert str(refused.value) == f"expected a number, got {raw!r}{note}"
        for parse in (number_cells.parse_integer, *map(number_cells.integer_parser, ".,")):
            with pytest.raises(ValueError, match="expected a whole number") as refused:
                parse(raw)
            assert str(refused.value) == f"expected a whole number, got {raw!r}{note}"

    def test_json_numbers_and_plain_text_still_read(self) -> None:
        """A JSON number with an exponent or a .0 is a number already; plain text forms read."""
        assert number_cells.parse_integer(1000.0) == 1000
        assert number_cells.integer_parser(".")(1e3) == 1000
        assert number_cells.number_parser(".")(1.5e-3) == 0.0015
        assert [number_cells.parse_number(raw) for raw in ("+5", "-.5", "5.", " 42 ")] == [
            5.0,
            -0.5,
            5.0,
            42.0,
        ]
        assert [number_cells.integer_parser(".")(raw) for raw in ("+5", "-7", "007", "1,000")] == [
            5,
            -7,
            7,
            1000,
        ]
        with pytest.raises(ValueError, match=r"^expected a finite number, got '-inf'$"):
            number_cells.number_parser(".")("-inf")

    def test_lists_and_timezones(self) -> None:
        """Pools are ; or , separated; timezones must be IANA names."""
        assert values.text_list("Central; East") == ["Central", "East"]
        assert values.timezone_name("Europe/Berlin") == "Europe/Berlin"
        with pytest.raises(ValueError, match=r"^unknown timezone 'CET-ish'"):
            values.timezone_name("CET-ish")


class TestFormattedAmounts:
    """A CRM's formatted money is read with the mapping's decimal separator; a group of
    thousands never starts with 0, so ``0,125`` is a decimal written the other way (refused
    with the setting that reads it), not 125."""

    @pytest.mark.parametrize(
        ("separator", "raw", "value"),
        [
            (".", "1,234", 1234.0),
            (".", "$1,234.50", 1234.5),
            (".", "USD 10", 10.0),
            (",", "1.234,50 EUR", 1234.5),
            (",", "1,5", 1.5),
            (".", "-€5", -5.0),
            (".", "- $1,234.50", -1234.5),
            (".", "€-5", -5.0),
            (".", "+$5", 5.0),
            (".", "(100)", -100.0),
            (".", "(0)", 0.0),
            (".", "-0", 0.0),
            (".", "($1,234.50)", -1234.5),
            (",", "(1.234,50 EUR)", -1234.5),
        ],
    )
    def test_read(self, separator: str, raw: str, value: float) -> None:
        read = number_cells.number_parser(separator)(raw)
        assert (read, str(read)) == (value, str(value))  # str tells 0.0 from -0.0

    @pytest.mark.parametrize("raw", ["-€-5", "(-5)", "(+5)", "()", "(5", "-", "--5"])
    def test_one_sign_only(self, raw: str) -> None:
        """A sign before the currency, or an accountant's parentheses, make an amount negative;
        two signs make no amount."""
        with pytest.raises(ValueError, match="expected a number") as refused:
            number_cells.number_parser(".")(raw)
        assert str(refused.value) == f"expected a number, got {raw!r}"

    @pytest.mark.parametrize(
        ("separator", "raw", "other"),
        [(".", "0,125", ","), (".", "-0,750", ","), (".", "00,100", ","), (",", "0.125", ".")],
    )
    def test_a_leading_zero_group_is_the_other_decimal_separator(
        self, separator: str, raw: str, other: str
    ) -> None:
        with pytest.raises(ValueError, match="expected a number") as refused:
            number_cells.number_parser(separator)(raw)
        assert str(refused.value) == (
            f"expected a number, got {raw!r}; the file writes {other!r} as its decimal "
            f"separator: set decimal_separator: {other!r} in this kind's import mapping"
        )

    @pytest.mark.parametrize(
        ("separator", "raw", "value"),
        [
            (",", "1.000", 1000),
            (",", "1.234,0", 1234),
            (",", "42", 42),
            (".", "1,000", 1000),
            (".", "42.0", 42),
            (".", "", None),
        ],
    )
    def test_whole_numbers_read_with_the_same_separator(
        self, separator: str, raw: str, value: int | None
    ) -> None:
        """With a decimal comma, ``1.000`` seats are a thousand (they were stored as 1)."""
        assert number_cells.integer_parser(separator)(raw) == value

    @pytest.mark.parametrize(("separator", "raw"), [(",", "4,5"), (".", "4.5")])
    def test_a_fraction_is_not_a_whole_number(self, separator: str, raw: str) -> None:
        with pytest.raises(ValueError, match="expected a whole number") as refused:
            number_cells.integer_parser(separator)(raw)
        assert str(refused.value) == f"expected a whole number, got {raw!r}"


class TestJsonValuesNamedAsWritten:
    """A JSON value of the wrong type is named as the sender wrote it: ``true``, ``["east"]``,
    ``{"a": "b"}``, not Python's ``True``, ``['east']``, ``{'a': 'b'}``."""

    @pytest.mark.parametrize(
        ("parse", "raw", "message"),
        [
            (values.parse_text, {"a": "b"}, 'expected text, got an object ({"a": "b"})'),
            (
                values.parse_text,
                ["east", "Zürich"],
                'expected text, got a list (["east", "Zürich"])',
            ),
            (values.parse_text, True, "expected text, got true"),
            (number_cells.parse_integer, False, "expected a whole number, got false"),
            (number_cells.parse_number, True, "expected a number, got true"),
        ],
    )
    def test_refused(self, parse: object, raw: object, message: str) -> None:
        with pytest.raises(ValueError, match=r"^expected") as refused:
            parse(raw)  # type: ignore[operator]
        assert str(refused.value) == message
