"""Kubernetes quantities: exact parsing, rounding, refusals, canonical spelling."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from colonymesh.node.spec.quantity import (
    BYTES_MAX,
    QuantityError,
    format_bytes,
    format_millicores,
    parse_bytes,
    parse_millicores,
)


@pytest.mark.parametrize(
    ("text", "millicores"),
    [
        ("500m", 500),
        ("2", 2000),
        ("0.5", 500),
        (".25", 250),
        ("1.", 1000),
        ("+3", 3000),
        ("0.0001", 1),  # rounds up, as Kubernetes does for sub-milli CPU
        ("1500m", 1500),
        ("1e3", 1_000_000),
        ("2k", 2_000_000),
        ("250000u", 250),
        ("0", 0),
        ("-0", 0),
    ],
)
def test_cpu_quantities(text: str, millicores: int) -> None:
    assert parse_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("1Gi", 2**30),
        ("512Mi", 512 * 2**20),
        ("10G", 10 * 10**9),
        ("1.5Ki", 1536),
        ("100", 100),
        ("1e3", 1000),
        ("1E6", 10**6),
        ("0.5", 1),  # whole bytes, rounded up
        ("1Ti", 2**40),
        ("2Ei", 2**61),
    ],
)
def test_byte_quantities(text: str, count: int) -> None:
    assert parse_bytes(text) == count


@pytest.mark.parametrize(
    "text",
    [
        "",
        "lots",
        "1GB",
        "1 Gi",
        "Gi",
        "1gi",
        "--1",
        "1.2.3",
        "1e",
        "1e+",
        "0x10",
        "\u0661",
        "1Gi ",
        "\u00bd",
    ],
)
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_bytes(text)
    with pytest.raises(QuantityError):
        parse_millicores(text)


def test_negative_quantities_are_refused() -> None:
    with pytest.raises(QuantityError, match="negative"):
        parse_millicores("-500m")
    with pytest.raises(QuantityError, match="negative"):
        parse_bytes("-1Gi")


def test_milli_bytes_are_refused_with_a_hint() -> None:
    with pytest.raises(QuantityError, match='did you mean "500M" or "500Mi"'):
        parse_bytes("500m")


def test_non_strings_and_huge_values_are_refused() -> None:
    for value in (2, 2.0, None, ["1Gi"], b"1Gi"):
        with pytest.raises(QuantityError, match="quantity string"):
            parse_bytes(value)
    with pytest.raises(QuantityError, match="exponent"):
        parse_bytes("1e99999")
    with pytest.raises(QuantityError):
        parse_bytes("8Ei")
    with pytest.raises(QuantityError, match="cores"):
        parse_millicores("2000000")
    with pytest.raises(QuantityError, match="longer"):
        parse_bytes("1" * 65)


def test_canonical_spelling() -> None:
    assert format_millicores(2000) == "2"
    assert format_millicores(1500) == "1500m"
    assert format_bytes(2**30) == "1Gi"
    assert format_bytes(3 * 2**20) == "3Mi"
    assert format_bytes(1000) == "1k"
    assert format_bytes(5 * 10**9) == "5G"
    assert format_bytes(1001) == "1001"
    assert format_bytes(0) == "0"


@given(st.integers(min_value=0, max_value=BYTES_MAX))
def test_format_bytes_round_trips(count: int) -> None:
    assert parse_bytes(format_bytes(count)) == count


@given(st.integers(min_value=0, max_value=10**9))
def test_format_millicores_round_trips(millicores: int) -> None:
    assert parse_millicores(format_millicores(millicores)) == millicores


@given(st.text(max_size=20))
def test_junk_raises_only_quantity_error(text: str) -> None:
    for parse in (parse_bytes, parse_millicores):
        with contextlib.suppress(QuantityError):
            assert parse(text) >= 0
