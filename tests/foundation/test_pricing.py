"""Reference price bands from settled leases, and amounts as people read them (ledger.protocol.pricing)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from ledger.protocol.pricing import (
    PaidRate, format_units, nearest_rank, price_per_pflop_hour, reference_price_bands, spec_bf16_tflops,
)

ETH = "0x" + "00" * 20


def rate(lease: int, charged: int, alloc_ms: int, model: str = "H100", region: str = "eu") -> PaidRate:
    return PaidRate(lease, model, region, ETH, charged, alloc_ms)


def test_paid_rate_is_charge_per_allocated_gpu_hour() -> None:
    # 2 GPUs for half an hour = 1 GPU-hour allocated; charged 0.5 ETH -> 0.5 ETH per GPU-hour
    assert rate(1, 5 * 10**17, 2 * 1_800_000).per_gpu_hour == 5 * 10**17


def test_band_is_p10_median_p90_by_model_region_token() -> None:
    rates = [rate(i, 1000 * i, 3_600_000) for i in range(1, 11)]  # one GPU-hour each, paid 1000 × i
    rates.append(rate(99, 7, 0))  # nothing allocated yet: left out
    rates.append(rate(50, 42, 3_600_000, region="us"))
    bands = reference_price_bands(rates)
    eu = bands[("H100", "eu", ETH)]
    assert (eu.leases, eu.low, eu.median, eu.high) == (10, 1000, 5000, 9000)
    assert bands[("H100", "us", ETH)].low == bands[("H100", "us", ETH)].high == 42
    assert eu.position(999) == "below" and eu.position(5000) == "within" and eu.position(9001) == "above"


@given(st.lists(st.integers(0, 10**30), min_size=1, max_size=50), st.integers(0, 100))
def test_nearest_rank_is_a_value_of_the_list_and_monotone(values: list[int], pct: int) -> None:
    values.sort()
    v = nearest_rank(values, pct)
    assert v in values and nearest_rank(values, min(100, pct + 1)) >= v


def test_format_units_never_shows_a_small_amount_as_zero() -> None:
    assert format_units(3_600_000_000_000, 18, "ETH") == "0.0000036 ETH"
    assert format_units(10**18, 18, "ETH") == "1 ETH"
    assert format_units(12_345_678_912_345_678_912, 18, "ETH") == "12.345678 ETH"
    assert format_units(0, 18, "ETH") == "0 ETH"
    assert format_units(1, 18, "ETH") == "0.000000000000000001 ETH"
    assert format_units(1_500_000, 6, "USDC") == "1.5 USDC"


def test_spec_figure_matches_the_drivers_names_most_specific_first() -> None:
    assert spec_bf16_tflops("NVIDIA H100 80GB HBM3") == 989
    assert spec_bf16_tflops("NVIDIA H100 PCIe") == 756
    assert spec_bf16_tflops("NVIDIA GH200 480GB") == 989
    assert spec_bf16_tflops("NVIDIA L40S") == 362 and spec_bf16_tflops("NVIDIA L4") == 121
    assert spec_bf16_tflops("nvidia a100-sxm4-80gb") == 312
    assert spec_bf16_tflops("Some Other GPU") is None
    assert price_per_pflop_hour(3_600_000, 989) == 3_640_040  # floored
