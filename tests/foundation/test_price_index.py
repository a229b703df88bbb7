"""The price index's method on hand-made events: volume weighting, the outlier rule, the minimum volume and
lease count, days from the settlement's own timestamp, the band, CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from ledger.protocol.economics import ETH, BillingMode
from ledger.protocol.price_index import MS_PER_HOUR, IndexEvent, band, latest, price_index, to_csv
from ledger.protocol.settlement import Checkpoint

DAY1 = 1_800_000_000  # 2027-01-15 08:00 UTC
H100 = b"NVIDIA H100".ljust(32, b"\0")


class Chain:
    """Builds the events a run of leases leaves on chain."""

    def __init__(self) -> None:
        self.events: list[IndexEvent] = []
        self.n = 0
        self.cum: dict[int, int] = {}

    def add(self, name: str, **args: Any) -> None:
        self.n += 1
        self.events.append(IndexEvent(name, args, (self.n, 0, 0)))

    def node(self, node_id: int, model: bytes = H100, region: str = "eu-west1") -> None:
        self.add("NodeRegistered", nodeId=node_id, gpuModel=model, region=region.encode().ljust(8, b"\0"))

    def offer(self, offer_id: int, node_id: int, mode: int = BillingMode.RESERVED, token: str = ETH) -> None:
        self.add("OfferPublished", offerId=offer_id, offer={"nodeId": node_id, "token": token, "billingMode": int(mode)})

    def lease(self, lease_id: int, offer_id: int) -> None:
        self.add("LeaseOpened", leaseId=lease_id, offerId=offer_id)

    def settle(self, lease_id: int, gpu_ms: int, price_per_hour: int, at: int) -> None:
        cum = self.cum.get(lease_id, 0) + gpu_ms
        self.cum[lease_id] = cum
        ck = Checkpoint(seq=1, cum_busy_ms=cum // 2, cum_allocated_ms=cum, cum_energy_mj=0, cum_sm_active_ms=0,
                        settled_at=at).word
        self.add("CheckpointSettled", leaseId=lease_id, ckpt=ck, charged=gpu_ms * price_per_hour // MS_PER_HOUR)


def _market() -> Chain:
    c = Chain()
    c.node(1)
    for i in range(1, 5):
        c.offer(i, 1)
        c.lease(i, i)
    c.settle(1, 2 * MS_PER_HOUR, 1_000, DAY1)  # 2 GPU-h at 1000
    c.settle(2, 1 * MS_PER_HOUR, 1_300, DAY1 + 60)  # 1 GPU-h at 1300
    c.settle(3, MS_PER_HOUR // 2, 9_000, DAY1 + 120)  # an outlier: 9× the median
    c.settle(1, 1 * MS_PER_HOUR, 1_000, DAY1 + 86_400)  # the next day: one lease only
    return c


def test_volume_weighted_with_outliers_out() -> None:
    cells = price_index(_market().events)
    day1, day2 = cells
    assert (day1.key.gpu_model, day1.key.region, day1.key.token, day1.key.day) == ("NVIDIA H100", "eu-west1", ETH, "2027-01-15")
    assert day1.outliers == 1 and sorted(d.lease_id for d in day1.kept) == [1, 2]
    assert day1.price == (2_000 + 1_300) * MS_PER_HOUR // (3 * MS_PER_HOUR) == 1_100
    assert day2.key.day == "2027-01-16" and day2.price is None and "fewer than 2 leases" in day2.note
    assert latest(cells) == [day1]


def test_minimum_volume_and_billing_mode() -> None:
    c = Chain()
    c.node(1)
    c.offer(1, 1, BillingMode.METERED)  # bills busy time: half the allocated time in these checkpoints
    c.offer(2, 1)
    c.lease(1, 1)
    c.lease(2, 2)
    c.settle(1, MS_PER_HOUR // 2, 1_000, DAY1)
    c.settle(2, MS_PER_HOUR // 4, 1_000, DAY1)
    (cell,) = price_index(c.events)
    assert cell.billable_ms == MS_PER_HOUR // 4 + MS_PER_HOUR // 4  # lease 1: busy = half of its 0.5 h
    assert cell.price is None and "minimum volume" in cell.note
    (cell,) = price_index(c.events, min_gpu_hours=0)
    assert cell.price == (500 + 250) * MS_PER_HOUR // (MS_PER_HOUR // 2) == 1_500


def test_only_settled_checkpoints_count_and_unknown_leases_are_skipped() -> None:
    c = _market()
    c.add("CheckpointSettled", leaseId=99, ckpt=Checkpoint(1, 0, MS_PER_HOUR, 0, 0, DAY1).word, charged=10**9)
    assert price_index(c.events)[0].price == 1_100


def test_band_and_csv() -> None:
    cells = price_index(_market().events)
    b = band(cells, "NVIDIA H100")
    assert b is not None and (b["from"], b["to"]) == ("2027-01-10", "2027-01-16")
    assert (b["low"], b["median"], b["high"]) == ("1000", "1000", "1300")
    assert band(cells, "NVIDIA L4") is None
    rows = list(csv.DictReader(io.StringIO(to_csv(cells))))
    assert rows[0]["pricePerGpuHour"] == "1100" and rows[1]["pricePerGpuHour"] == ""
