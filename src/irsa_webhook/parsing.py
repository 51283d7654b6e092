"""Parsers for the string values users write in annotations and flags.

They follow the reference webhook's Go parsers (``strconv.ParseBool``, ``strconv.ParseInt``,
``encoding/csv`` and ``time.ParseDuration``) so that a value accepted there means the same here.
Each raises ``ValueError`` with a message that names the accepted forms.
"""

from __future__ import annotations

import csv
import io
import re

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_INT_RE = re.compile(r"[+-]?[0-9]+")
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_bool(value: str) -> bool:
    """Parse a boolean the way Go's ``strconv.ParseBool`` does."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{value!r} is not a boolean; use true or false")


def parse_int64(value: str) -> int:
    """Parse a base-10 signed 64-bit integer: optional sign, digits only, no spaces or units."""
    if not _INT_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a whole number of seconds (digits only, no units)")
    number = int(value)
    if not INT64_MIN <= number <= INT64_MAX:
        raise ValueError(f"{value!r} is out of the 64-bit integer range")
    return number


def parse_csv_record(value: str) -> list[str]:
    """Parse one CSV record (quoted fields allowed) and trim spaces around each name.

    Go's ``encoding/csv`` (the reference) keeps leading spaces, so ``"a, b"`` skipped ``a`` and
    ``" b"``; we trim, which is what people who write such lists mean (difference 8 in
    the README).
    """
    if not value.strip():
        raise ValueError("the list is empty")
    if "\n" in value.strip("\n"):
        value = value.strip("\n").split("\n", 1)[0]
    stripped = value.strip()
    # A quote inside an unquoted field is an error in Go's reader; Python's csv is lenient.
    for field in _split_unquoted(stripped):
        if '"' in field and not (field.startswith('"') and field.endswith('"') and len(field) > 1):
            raise ValueError(f'bare quote in {field[:24]!r}; quote whole names: "a,b"')
    reader = csv.reader(io.StringIO(stripped), skipinitialspace=True, strict=True)
    try:
        record = next(reader)
    except (csv.Error, StopIteration) as exc:
        raise ValueError(f"not a comma-separated list: {exc}") from exc
    return [name.strip() for name in record]


def _split_unquoted(value: str) -> list[str]:
    """Split on commas outside double quotes, keeping the quotes, for the bare-quote check."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return fields


def parse_duration(value: str) -> float:
    """Parse a Go duration (``1s``, ``250ms``, ``1m30s``, ``0``) into seconds."""
    text = value.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if text[:1] in ("+", "-"):
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ValueError(f"{value!r} is not a duration; use forms like 1s, 250ms or 1m30s")
    position = 0
    total = 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(f"{value!r} is not a duration; use forms like 1s, 250ms or 1m30s")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    return sign * total
