"""Money in the client: int wei, shown and read as ETH exactly (no float anywhere)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute_ledger_client import eth, format_eth, parse_eth


def test_format_eth_is_exact_and_says_when_an_amount_is_below_its_places() -> None:
    assert format_eth(1_234_500_000_000_000_000) == "1.2345 ETH"
    assert format_eth(10**24) == "1,000,000 ETH"
    assert format_eth(0) == "0 ETH" and format_eth(-(10**18)) == "-1 ETH"
    assert format_eth(1) == "<0.000001 ETH" and format_eth(1, 18) == "0.000000000000000001 ETH"
    assert format_eth(999_999_999_999_999_999) == "1 ETH"  # rounded half up at 6 places
    assert format_eth(2**256 - 1, 18).startswith("115,792,089,237,316,195,423,570,985,008,687,907,853,269,984,665,640")
    assert format_eth(1_500_000, 2, unit="USDC", decimals=6) == "1.5 USDC"
    with pytest.raises(TypeError):
        format_eth(1.5)  # type: ignore[arg-type]


def test_parse_eth_refuses_floats_and_more_precision_than_wei() -> None:
    assert parse_eth("0.25") == eth("0.25") == 250_000_000_000_000_000
    assert parse_eth(Decimal("1e-18")) == 1 and parse_eth(2) == 2 * 10**18 and parse_eth("1,000") == 10**21
    with pytest.raises(TypeError):
        parse_eth(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_eth("0.0000000000000000001")
    with pytest.raises(ValueError):
        parse_eth("a lot")
    for wei in (0, 1, 10**18 + 7, 123_456_789 * 10**9):
        assert parse_eth(format_eth(wei, 18).split()[0]) == wei
