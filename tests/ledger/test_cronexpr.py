"""Cron expressions with seconds: parsing, errors, and the next fire time as properties."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colonymesh.node.ledger import cronexpr
from colonymesh.node.ledger.cronexpr import CronSyntaxError, next_after, parse


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def iso(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0/5 * * * * *", "2026-11-25 02:38:56", "2026-11-25 02:39:00"),
        ("0/5 * * * * *", "2026-11-25 02:39:00", "2026-11-25 02:39:05"),
        ("*/1 * * * * *", "2026-11-25 02:39:00.999", "2026-11-25 02:39:01"),
        ("30 15 9 * * MON-FRI", "2026-11-27 10:00:00", "2026-11-30 09:15:30"),  # Fri -> Mon
        ("0 0 0 29 FEB *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),
        ("0 0 0 1 jan,jul ?", "2026-07-01 00:00:00", "2027-01-01 00:00:00"),
        ("59 59 23 31 12 *", "2026-12-31 23:59:59", "2027-12-31 23:59:59"),
        ("0 0 12 13 * FRI", "2026-11-25 00:00:00", "2026-11-27 12:00:00"),  # either day field
        ("0 0 0 * * 7", "2026-11-25 00:00:00", "2026-11-29 00:00:00"),  # 7 is Sunday
        ("10-20/5 * * * * *", "2026-11-25 00:00:20", "2026-11-25 00:01:10"),
        ("@hourly", "2026-11-25 02:38:56", "2026-11-25 03:00:00"),
        ("@weekly", "2026-11-25 02:38:56", "2026-11-29 00:00:00"),
        ("0 0 5 31 * *", "2026-11-01 00:00:00", "2026-12-31 05:00:00"),  # November has no 31st
    ],
)
def test_next_fire_times(expression: str, after: str, expected: str) -> None:
    assert iso(next_after(parse(expression), ms(after))) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * *", "expected 6 fields"),
        ("60 * * * * *", "second field: 60 is outside 0-59"),
        ("* 60 * * * *", "minute field"),
        ("* * 24 * * *", "hour field"),
        ("* * * 0 * *", "day of month field: 0 is outside 1-31"),
        ("* * * * 13 *", "month field"),
        ("* * * * * 8", "day of week field"),
        ("5-1 * * * * *", "runs backwards"),
        ("*/0 * * * * *", "step '0' must be a positive number"),
        ("*/x * * * * *", "step 'x'"),
        ("? * * * * *", "'?' is only allowed in the day fields"),
        ("a * * * * *", "second field: 'a' is not a number"),
        ("* * * * FOO *", "month field: 'FOO' is not a number or a name (JAN-DEC)"),
        ("1,,2 * * * * *", "empty item"),
        ("0 0 0 30 2 *", "never fires"),
        ("0 0 0 31 4,6 *", "never fires"),
    ],
)
def test_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(CronSyntaxError) as raised:
        parse(expression)
    assert message in str(raised.value)


def _brute_force_next(expression: cronexpr.CronExpression, after: int) -> int:
    """The first matching second after ``after``, found day by day (an independent oracle)."""
    start = after // 1000 + 1
    day = datetime.fromtimestamp(start, UTC).replace(hour=0, minute=0, second=0)
    for _ in range(30 * 366):
        if day.month in expression.months and expression.day_matches(day.year, day.month, day.day):
            base = int(day.timestamp())
            for hour in expression.hours:
                for minute in expression.minutes:
                    for second in expression.seconds:
                        moment = base + hour * 3600 + minute * 60 + second
                        if moment >= start:
                            return moment * 1000
        day = datetime.fromtimestamp(int(day.timestamp()) + 86400, UTC)
    raise AssertionError("no fire time within 30 years")


def _field(low: int, high: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    if names:
        single = single | st.sampled_from(names)
    ranged = st.tuples(value, value).map(lambda p: f"{min(p)}-{max(p)}")
    stepped = st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, high - low + 1)).map(
        lambda p: f"{p[0]}/{p[1]}"
    )
    item = st.one_of(st.just("*"), single, ranged, stepped)
    return st.lists(item, min_size=1, max_size=3).map(
        lambda items: "*" if "*" in items else ",".join(items)
    )


EXPRESSIONS = st.tuples(
    _field(0, 59),
    _field(0, 59),
    _field(0, 23),
    _field(1, 31),
    _field(1, 12, cronexpr._MONTHS),
    _field(0, 7, cronexpr._DAYS),
).map(" ".join)
INSTANTS = st.integers(ms("1995-01-01 00:00:00"), ms("2090-01-01 00:00:00"))


def _parse_or_none(text: str) -> cronexpr.CronExpression | None:
    try:
        return parse(text)
    except CronSyntaxError as error:
        assert "never fires" in str(error)
        return None


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, INSTANTS)
def test_next_is_later_matches_and_is_the_first(text: str, after: int) -> None:
    expression = _parse_or_none(text)
    if expression is None:
        return
    found = next_after(expression, after)
    assert found > after and found % 1000 == 0
    assert expression.matches(found)
    assert found == _brute_force_next(expression, after)


@settings(max_examples=200, deadline=None)
@given(EXPRESSIONS, INSTANTS)
def test_successive_fire_times_skip_nothing(text: str, after: int) -> None:
    """From any instant between two successive fire times, the next one is the later."""
    expression = _parse_or_none(text)
    if expression is None:
        return
    first = next_after(expression, after)
    second = next_after(expression, first)
    assert second > first and expression.matches(second)
    assert next_after(expression, first - 1) == first
    assert next_after(expression, (first + second) // 2) == second


def test_day_fields_alone_and_together() -> None:
    only_day = parse("0 0 0 13 * *")
    only_weekday = parse("0 0 0 * * FRI")
    either = parse("0 0 0 13 * FRI")
    for day in range(1, calendar.monthrange(2026, 11)[1] + 1):
        friday = calendar.weekday(2026, 11, day) == calendar.FRIDAY
        assert only_day.day_matches(2026, 11, day) == (day == 13)
        assert only_weekday.day_matches(2026, 11, day) == friday
        assert either.day_matches(2026, 11, day) == (day == 13 or friday)


def test_overlong_and_non_text_expressions_are_refused() -> None:
    with pytest.raises(CronSyntaxError, match="longer than"):
        parse("0 " * 200)
    with pytest.raises(CronSyntaxError, match="text"):
        parse(5)  # type: ignore[arg-type]


def test_beyond_the_calendar_nothing_fires_and_nothing_raises() -> None:
    every_second = parse("* * * * * *")
    assert next_after(every_second, cronexpr.LATEST_MS - 1) == cronexpr.LATEST_MS
    for instant in (cronexpr.LATEST_MS, 2**63 - 1, -1, -(2**63)):
        assert next_after(every_second, instant) == cronexpr.NEVER_MS
