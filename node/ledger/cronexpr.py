"""Cron expressions with seconds: parsing and the next fire time, as pure functions.

Owns the schedule arithmetic of the ledger's crons (``crons.py``). An
expression has six fields, as ColonyOS writes them::

    ┌──────── second        0-59
    │ ┌────── minute        0-59
    │ │ ┌──── hour          0-23
    │ │ │ ┌── day of month  1-31
    │ │ │ │ ┌ month         1-12 or JAN-DEC
    │ │ │ │ │ ┌ day of week 0-6 or SUN-SAT (7 is Sunday too)
    0/5 * * * * *

Each field is a comma-separated list of items: ``*`` (or ``?`` in the day
fields), a value, a range ``a-b``, and any of those with a step (``*/s``,
``a/s`` meaning ``a-max/s`` as in Quartz and ColonyOS, ``a-b/s``). Names of
months and days are case-insensitive. The macros ``@yearly`` (``@annually``),
``@monthly``, ``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` stand
for their usual six-field forms. As in Vixie cron, when both day fields are
restricted a day matches if *either* does; otherwise both must.

Times are integer milliseconds since the Unix epoch, read in UTC (a ledger
replicated across machines cannot depend on anyone's local zone). Nothing
here reads a clock: :func:`next_after` is a function of the expression and
the instant given.

Invariants (property-tested): ``next_after(e, t) > t``, it matches ``e``,
and no whole second strictly between ``t`` and it matches ``e``. An
expression that can never fire (``0 0 0 30 2 *``) is refused at parse time,
so :func:`next_after` always has an answer.
"""

from __future__ import annotations

import bisect
import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

EXPRESSION_CHARS_MAX = 256
# Search horizon: a leap day on a given weekday recurs within 28 years.
_SEARCH_YEARS_MAX = 30
# Past this instant (the year 9000) nothing fires again: calendars end at 9999
# and ledger time is whatever the servers tick, so it is bounded here.
LATEST_MS = 221_845_392_000_000
NEVER_MS = 2**62


class CronSyntaxError(ValueError):
    """The expression is malformed; the message names the field and what is wrong."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 7, _DAYS),  # 7 is folded onto 0 (Sunday)
)
_MACROS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed expression: the allowed values of every field, sorted."""

    text: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, year: int, month: int, day: int) -> bool:
        weekday = (calendar.weekday(year, month, day) + 1) % 7  # Monday=0 -> Sunday=0
        by_day = day in self.days
        by_weekday = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday

    def matches(self, ms: int) -> bool:
        """Whether the whole second holding ``ms`` is a fire time."""
        moment = datetime.fromtimestamp(ms // 1000, UTC)
        return (
            moment.second in self.seconds
            and moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self.day_matches(moment.year, moment.month, moment.day)
        )


def parse(text: str) -> CronExpression:
    """Parse a six-field expression (or a macro); a defect is a :class:`CronSyntaxError`."""
    if not isinstance(text, str):
        raise CronSyntaxError("a cron expression is text")
    if len(text) > EXPRESSION_CHARS_MAX:
        raise CronSyntaxError(f"longer than {EXPRESSION_CHARS_MAX} characters")
    source = _MACROS.get(text.strip().lower(), text)
    parts = source.split()
    if len(parts) != len(_FIELDS):
        raise CronSyntaxError(
            f"expected 6 fields (second minute hour day-of-month month day-of-week), "
            f"got {len(parts)}: {text!r}"
        )
    values = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = tuple(sorted({0 if v == 7 else v for v in values[5]}))
    expression = CronExpression(
        text=text,
        seconds=values[0],
        minutes=values[1],
        hours=values[2],
        days=values[3],
        months=values[4],
        weekdays=weekdays,
        days_restricted=not _unrestricted(parts[3]),
        weekdays_restricted=not _unrestricted(parts[5]),
    )
    _check_feasible(expression)
    return expression


def _unrestricted(part: str) -> bool:
    return part in ("*", "?")


def _parse_field(part: str, spec: _Field) -> tuple[int, ...]:
    chosen: set[int] = set()
    for item in part.split(","):
        chosen.update(_parse_item(item, spec))
    return tuple(sorted(chosen))


def _parse_item(item: str, spec: _Field) -> range:
    where = f"{spec.name} field"
    if not item:
        raise CronSyntaxError(f"{where}: empty item in {item!r}")
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronSyntaxError(f"{where}: step {step_text!r} must be a positive number")
        step = int(step_text)
        if step > spec.high - spec.low + 1:
            raise CronSyntaxError(f"{where}: step {step} is larger than the field's range")
    if base in ("*", "?"):
        if base == "?" and spec.name not in ("day of month", "day of week"):
            raise CronSyntaxError(f"{where}: '?' is only allowed in the day fields")
        return range(spec.low, spec.high + 1, step)
    first_text, dash, last_text = base.partition("-")
    first = _value(first_text, spec)
    if dash:
        last = _value(last_text, spec)
        if last < first:
            raise CronSyntaxError(f"{where}: range {base!r} runs backwards")
    else:
        last = spec.high if slash else first  # "a/s" is "a-max/s"
    return range(first, last + 1, step)


def _value(text: str, spec: _Field) -> int:
    where = f"{spec.name} field"
    upper = text.upper()
    if spec.names and upper in spec.names:
        return spec.low + spec.names.index(upper)
    if not text.isdigit():
        names = f" or a name ({'-'.join((spec.names[0], spec.names[-1]))})" if spec.names else ""
        raise CronSyntaxError(f"{where}: {text!r} is not a number{names}")
    value = int(text)
    if not spec.low <= value <= spec.high:
        raise CronSyntaxError(f"{where}: {value} is outside {spec.low}-{spec.high}")
    return value


def _check_feasible(expression: CronExpression) -> None:
    if expression.days_restricted and expression.weekdays_restricted:
        return  # either day field suffices, and every weekday recurs
    longest = max(calendar.monthrange(2000, month)[1] for month in expression.months)
    if expression.days[0] > longest:
        months = ",".join(str(m) for m in expression.months)
        raise CronSyntaxError(
            f"day of month field: no month in {months} has day {expression.days[0]}: never fires"
        )


def next_after(expression: CronExpression, after_ms: int) -> int:
    """The first fire time (whole second, in ms) strictly after ``after_ms``.

    :data:`NEVER_MS` after :data:`LATEST_MS`, or before the Unix epoch is
    not a question the ledger asks (its clock starts at the colony's birth).
    """
    if not 0 <= after_ms < LATEST_MS:
        return NEVER_MS
    start = after_ms // 1000 + 1
    moment = datetime.fromtimestamp(start, UTC)
    year, month, day = moment.year, moment.month, moment.day
    hour, minute, second = moment.hour, moment.minute, moment.second
    horizon = year + _SEARCH_YEARS_MAX
    while year <= horizon:
        if month not in expression.months:
            year, month = _next_month(expression, year, month)
            day, hour, minute, second = 1, 0, 0, 0
            continue
        if day > calendar.monthrange(year, month)[1]:
            year, month = _next_month(expression, year, month)
            day, hour, minute, second = 1, 0, 0, 0
            continue
        if not expression.day_matches(year, month, day):
            day, hour, minute, second = day + 1, 0, 0, 0
            continue
        found = _time_of_day(expression, hour, minute, second)
        if found is None:
            day, hour, minute, second = day + 1, 0, 0, 0
            continue
        hour, minute, second = found
        return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * 1000
    raise CronSyntaxError(f"{expression.text!r} does not fire within {_SEARCH_YEARS_MAX} years")


def _next_month(expression: CronExpression, year: int, month: int) -> tuple[int, int]:
    position = bisect.bisect_right(expression.months, month)
    if position < len(expression.months):
        return year, expression.months[position]
    return year + 1, expression.months[0]


def _time_of_day(
    expression: CronExpression, hour: int, minute: int, second: int
) -> tuple[int, int, int] | None:
    """The first allowed (hour, minute, second) at or after the one given, on the same day."""
    while hour < 24:
        h = _at_or_after(expression.hours, hour)
        if h is None:
            return None
        if h > hour:
            hour, minute, second = h, 0, 0
        m = _at_or_after(expression.minutes, minute)
        if m is None:  # no allowed minute left in this hour
            hour, minute, second = hour + 1, 0, 0
            continue
        if m > minute:
            minute, second = m, 0
        s = _at_or_after(expression.seconds, second)
        if s is not None:
            return hour, minute, s
        hour, minute, second = (hour, minute + 1, 0) if minute < 59 else (hour + 1, 0, 0)
    return None


def _at_or_after(allowed: tuple[int, ...], value: int) -> int | None:
    position = bisect.bisect_left(allowed, value)
    return allowed[position] if position < len(allowed) else None
