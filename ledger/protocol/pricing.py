"""Reference prices: what settled leases actually paid per GPU-hour, as a band per GPU model, region and token.

A lease's *paid rate* is its settled charges divided by the GPU time it had allocated at its last settled
checkpoint: ``charged × 3,600,000 / cumAllocatedMs`` (token base units per GPU-hour, floored). For a
``reserved`` lease that is its offer's price; for ``metered`` and ``sm_active`` leases it is lower when the
GPUs idled, which is exactly what a buyer comparing offers wants to know: what the GPU-hour cost in the end.

The band of a (GPU model, region, token) group is the 10th percentile, the median and the 90th percentile of
its leases' paid rates (nearest rank: every figure is a rate some lease paid), one observation per lease.
Pure integers; no chain, no store: the bridge (``api.services.market``) and the economics engineer's tools
feed it the settlements they read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class PaidRate:
    """One lease's settlements so far: what it was charged and the GPU-ms allocated up to its last checkpoint."""

    lease_id: int
    gpu_model: str
    region: str
    token: str
    charged: int
    allocated_gpu_ms: int

    @property
    def per_gpu_hour(self) -> int:
        """Token base units paid per allocated GPU-hour (floored)."""
        return self.charged * MS_PER_HOUR // self.allocated_gpu_ms


@dataclass(frozen=True, slots=True)
class PriceBand:
    """The paid rates of one (GPU model, region, token) group, in token base units per GPU-hour."""

    gpu_model: str
    region: str
    token: str
    leases: int
    low: int  # 10th percentile
    median: int
    high: int  # 90th percentile

    def position(self, price_per_gpu_hour: int) -> str:
        """Where an asking price sits: "below", "within" or "above" the band."""
        if price_per_gpu_hour < self.low:
            return "below"
        return "above" if price_per_gpu_hour > self.high else "within"


BandKey = tuple[str, str, str]


def nearest_rank(sorted_values: list[int], pct: int) -> int:
    """The ``pct``-th percentile of ascending ``sorted_values`` by nearest rank (a value of the list)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, -(-pct * len(sorted_values) // 100))  # ceil(pct/100 × n), at least 1
    return sorted_values[rank - 1]


def reference_price_bands(rates: Iterable[PaidRate]) -> dict[BandKey, PriceBand]:
    """Bands keyed by (GPU model, region, token); leases with no allocated GPU time settled are left out."""
    groups: dict[BandKey, list[int]] = defaultdict(list)
    for r in rates:
        if r.allocated_gpu_ms > 0:
            groups[(r.gpu_model, r.region, r.token)].append(r.per_gpu_hour)
    out: dict[BandKey, PriceBand] = {}
    for key, values in groups.items():
        values.sort()
        out[key] = PriceBand(
            key[0], key[1], key[2], len(values),
            nearest_rank(values, 10), nearest_rank(values, 50), nearest_rank(values, 90),
        )  # fmt: skip
    return out


# Peak dense BF16 tensor throughput per GPU from the vendors' datasheets (TFLOPS, without sparsity): the one
# performance figure an offer's GPU model has before anyone benchmarks it. A peak, not a measurement: memory-bound
# work sees less, and the offer book says "spec". Matched case-insensitively on the name the driver reports
# (nvmlDeviceGetName), first pattern that occurs wins, so the more specific names come first.
SPEC_BF16_TFLOPS: tuple[tuple[str, int], ...] = (
    ("B200", 2250),
    ("GH200", 989),
    ("H200", 989),
    ("H100 PCIE", 756),
    ("H100 NVL", 835),
    ("H100", 989),
    ("A100", 312),
    ("L40S", 362),
    ("L40", 181),
    ("RTX 4090", 165),
    ("L4", 121),
)


def spec_bf16_tflops(gpu_model: str) -> int | None:
    """The datasheet's dense BF16 TFLOPS of ``gpu_model`` (:data:`SPEC_BF16_TFLOPS`), or None when unknown."""
    name = gpu_model.upper()
    return next((tflops for pattern, tflops in SPEC_BF16_TFLOPS if pattern in name), None)


def price_per_pflop_hour(price_per_gpu_hour: int, tflops: int) -> int:
    """Token base units per hour of one PFLOPS of peak BF16 (1,000 TFLOPS) at this price per GPU-hour (floored)."""
    return price_per_gpu_hour * 1000 // tflops


def format_units(amount: int, decimals: int, symbol: str, *, places: int = 6, significant: int = 4) -> str:
    """``amount`` base units as a person reads it: ``1.25 ETH``, ``0.0000036 ETH`` (at most ``places`` decimals
    for amounts of one unit or more; below one unit, ``significant`` significant digits, so a small price never
    shows as a misleading 0; trailing zeros cut; digits are cut, never rounded up)."""
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    whole, frac = divmod(amount, 10**decimals)
    digits = str(frac).rjust(decimals, "0") if decimals else ""
    if whole == 0 and frac:
        first = len(digits) - len(digits.lstrip("0"))
        shown = digits[: max(places, first + significant)].rstrip("0")
    else:
        shown = digits[:places].rstrip("0")
    text = f"{whole:,}" + (f".{shown}" if shown else "")
    return f"{sign}{text} {symbol}".rstrip()
