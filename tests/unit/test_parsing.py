"""The annotation and flag value parsers mean what the reference's Go parsers mean."""

from __future__ import annotations

import pytest

from irsa_webhook.parsing import parse_bool, parse_csv_record, parse_duration, parse_int64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("t", True),
        ("T", True),
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("0", False),
        ("f", False),
        ("F", False),
        ("FALSE", False),
        ("false", False),
        ("False", False),
    ],
)
def test_parse_bool_accepts_every_go_parsebool_form(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


@pytest.mark.parametrize("text", ["", "yes", "no", "on", "TrUe", " true", "true ", "2", "enabled"])
def test_parse_bool_rejects_what_go_parsebool_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("600", 600),
        ("+3600", 3600),
        ("-5", -5),
        ("007", 7),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_parse_int64_accepts_signed_decimal_numbers(text: str, expected: int) -> None:
    assert parse_int64(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "+",
        "-",
        " 600",
        "600 ",
        "1h",
        "3600s",
        "1e3",
        "1.5",
        "0x10",
        "1_000",
        "1,000",
        "+-1",
        "\u0661\u0662",  # Arabic-Indic digits: int() takes them, Go does not
    ],
)
def test_parse_int64_rejects_spaces_units_and_other_forms(text: str) -> None:
    with pytest.raises(ValueError, match="not a whole number"):
        parse_int64(text)


@pytest.mark.parametrize("text", ["9223372036854775808", "-9223372036854775809", "1" * 30])
def test_parse_int64_rejects_values_outside_64_bits(text: str) -> None:
    with pytest.raises(ValueError, match="64-bit"):
        parse_int64(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sidecar", ["sidecar"]),
        ("a,b", ["a", "b"]),
        ("a, b", ["a", "b"]),
        ("  a ,  b  ", ["a", "b"]),
        ('"a","b"', ["a", "b"]),
        ('"a,b",c', ["a,b", "c"]),
        ('a, "b"', ["a", "b"]),
        ('"a""b"', ['a"b']),
        ("a,,b", ["a", "", "b"]),
        ("a,", ["a", ""]),
        ("a,b\nc,d", ["a", "b"]),
        ("\na,b", ["a", "b"]),
    ],
)
def test_parse_csv_record_reads_one_trimmed_record(text: str, expected: list[str]) -> None:
    assert parse_csv_record(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        'a"b',
        'a,b"c',
        '"a',
        'a,"b',
        '"a"b',
    ],
)
def test_parse_csv_record_rejects_bare_and_unbalanced_quotes(text: str) -> None:
    with pytest.raises(ValueError, match="quote"):
        parse_csv_record(text)


@pytest.mark.parametrize("text", ["", "\n"])
def test_parse_csv_record_rejects_an_empty_list(text: str) -> None:
    with pytest.raises(ValueError, match=r"empty|not a comma-separated list"):
        parse_csv_record(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("-0", 0.0),
        ("0s", 0.0),
        ("1s", 1.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("100us", 1e-4),
        ("100\u00b5s", 1e-4),
        ("100\u03bcs", 1e-4),
        ("1500ns", 1.5e-6),
        ("2h45m10s500ms", 9910.5),
        ("+1s", 1.0),
        ("-1.5s", -1.5),
    ],
)
def test_parse_duration_reads_go_durations_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "1", "10", "s", "1d", "1 s", "1s2", "-", "+", "1.s.", "one second"]
)
def test_parse_duration_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
