"""Kubernetes-style resource quantities: ``"500m"``, ``"2"``, ``"1Gi"``, ``"10G"``.

ColonyOS writes ``conditions.cpu``, ``mem``, ``storage`` and ``gpu.mem`` as
Kubernetes quantities, so colonymesh parses them with Kubernetes' grammar::

    quantity ::= [+|-] number suffix
    number   ::= digits | digits "." digits | digits "." | "." digits
    suffix   ::= binarySI (Ki Mi Gi Ti Pi Ei)
               | decimalSI (n u m "" k M G T P E)
               | ("e" | "E") [+|-] digits

Arithmetic is exact (``fractions.Fraction``); nothing goes through floats.
CPU becomes whole millicores, rounded up (Kubernetes rounds sub-milli CPU up
too); bytes become whole bytes, rounded up. Two refusals go beyond
Kubernetes, because they are almost always mistakes: a negative quantity, and
a milli/micro/nano suffix on a byte count (``"500m"`` of memory is half a
byte in Kubernetes; the user meant ``"500M"`` or ``"500Mi"``).

Pure functions; errors are ``QuantityError`` (a ``ValueError``) with a reason
phrased to follow a field name.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = [
    "CPU_MILLICORES_MAX",
    "BYTES_MAX",
    "QuantityError",
    "format_bytes",
    "format_millicores",
    "parse_bytes",
    "parse_millicores",
]

QUANTITY_CHARS_MAX = 64
# A million cores and an exbibyte-ish ceiling: far past any machine, small
# enough that every consumer can hold the value in a signed 64-bit integer.
CPU_MILLICORES_MAX = 10**9
BYTES_MAX = 2**62
_EXPONENT_ABS_MAX = 30

_QUANTITY = re.compile(
    r"(?P<sign>[+-]?)(?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+|)\Z"
)

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
_SUB_UNIT = ("n", "u", "m")
_WHOLE = {**_BINARY, **{k: int(v) for k, v in _DECIMAL.items() if v.denominator == 1}}


class QuantityError(ValueError):
    """A quantity string that is not a valid, sensible Kubernetes quantity."""


def _parse(text: object, example: str) -> tuple[Fraction, str]:
    if not isinstance(text, str):
        raise QuantityError(f'must be a quantity string such as "{example}"')
    if len(text) > QUANTITY_CHARS_MAX:
        raise QuantityError(f"is longer than {QUANTITY_CHARS_MAX} characters")
    match = _QUANTITY.match(text)
    if match is None:
        raise QuantityError(f'{text!r} is not a Kubernetes quantity (e.g. "{example}")')
    if match["sign"] == "-" and Fraction(match["number"]) != 0:
        raise QuantityError(f"{text!r} is negative")
    suffix = match["suffix"]
    digits = match["number"]
    if digits.isdigit() and suffix in _WHOLE:  # the common case, without Fraction
        return Fraction(int(digits) * _WHOLE[suffix]), suffix
    number = Fraction(digits)
    if suffix in _BINARY:
        return number * _BINARY[suffix], suffix
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix], suffix
    exponent = int(suffix[1:])
    if abs(exponent) > _EXPONENT_ABS_MAX:
        raise QuantityError(f"{text!r} has an exponent beyond ±{_EXPONENT_ABS_MAX}")
    return number * Fraction(10) ** exponent, suffix


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def parse_millicores(text: object) -> int:
    """``"500m"`` -> 500, ``"2"`` -> 2000, ``"0.1"`` -> 100; rounds up."""
    value, _ = _parse(text, "500m")
    millicores = _ceil(value * 1000)
    if millicores > CPU_MILLICORES_MAX:
        raise QuantityError(f"{text!r} is more than {CPU_MILLICORES_MAX // 1000} cores")
    return millicores


def parse_bytes(text: object) -> int:
    """``"1Gi"`` -> 1073741824, ``"10G"`` -> 10**10, ``"1.5Ki"`` -> 1536; rounds up."""
    value, suffix = _parse(text, "512Mi")
    if suffix in _SUB_UNIT and value != 0:
        hint = ""
        if suffix == "m" and isinstance(text, str):
            stem = text[:-1]
            hint = f'; did you mean "{stem}M" or "{stem}Mi"?'
        raise QuantityError(f"{text!r} counts {suffix!r}-fractions of a byte{hint}")
    count = _ceil(value)
    if count > BYTES_MAX:
        raise QuantityError(f"{text!r} is more than 2**62 bytes")
    return count


def format_millicores(millicores: int) -> str:
    """The canonical Kubernetes spelling: whole cores as ``"2"``, else ``"1500m"``."""
    if millicores % 1000 == 0:
        return str(millicores // 1000)
    return f"{millicores}m"


def format_bytes(count: int) -> str:
    """The canonical Kubernetes spelling: an exact binary suffix, else an exact decimal one."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if count >= unit and count % unit == 0:
            return f"{count // unit}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        unit = int(_DECIMAL[suffix])
        if count >= unit and count % unit == 0:
            return f"{count // unit}{suffix}"
    return str(count)
