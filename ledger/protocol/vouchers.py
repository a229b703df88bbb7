"""Compute vouchers (算力券): the money rules of VoucherVault, and the redemption report of a programme folded
from chain events. Pure Python: no web3, no HTTP.

The vault is the escrow buyer of every voucher lease. At opening it pays the escrow's quote (escrow + fee):
the voucher ``cost × (10000 − copayBps) / 10000`` (at most its balance), the beneficiary the rest. When the
escrow has settled the lease's fees, everything it returned to its buyer (``buyer_return``) is split back pro
rata (``split_return``). contracts/src/VoucherVault.sol computes the same figures; tests compare them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .economics import BPS, as_int
from .settlement import Checkpoint

# VoucherVaultIneligibleOffer's rule numbers
ELIGIBILITY_RULES: tuple[str, ...] = ("token", "gpuModel", "region", "provider")


def voucher_split(cost: int, copay_bps: int, balance: int) -> tuple[int, int]:
    """(paid by the voucher, paid by the beneficiary) of a lease costing ``cost`` (escrow + fee)."""
    from_voucher = min(cost * (BPS - copay_bps) // BPS, balance)
    return from_voucher, cost - from_voucher


def buyer_return(escrowed: int, fee_held: int, paid: int, fee_bps: int) -> int:
    """All the escrow returns to a lease's buyer once its fees are settled: escrow and fee held, less what the
    holder was paid and the treasury's fee on it."""
    return escrowed + fee_held - paid - paid * fee_bps // BPS


def split_return(back: int, voucher_paid: int, copay_paid: int) -> tuple[int, int]:
    """(back to the voucher, back to the beneficiary): ``back`` pro rata to what each paid (voucher rounded down)."""
    to_voucher = back * voucher_paid // (voucher_paid + copay_paid)
    return to_voucher, back - to_voucher


# --- the redemption report ------------------------------------------------------------------------------

VOUCHER_EVENTS = frozenset(
    {"ProgrammeCreated", "ProgrammeFunded", "VoucherGranted", "VoucherRedeemed", "RedemptionClosedOut",
     "VoucherExpired", "ProgrammeClosed", "RelatedPartySet"}
)
LEASE_EVIDENCE_EVENTS = frozenset(
    {"LeaseOpened", "LeaseActivated", "CheckpointSettled", "LeaseClosed", "LeaseExpired", "LeaseExhausted",
     "FeesSettled", "EarningsReleased", "DisputeOpened", "DisputeResolved"}
)


@dataclass(frozen=True, slots=True)
class Evt:
    """An event as the report reads it: name, args, where it is on chain."""

    name: str
    args: Mapping[str, Any]
    block_number: int
    tx_hash: str
    log_index: int = 0
    record_index: int = 0


@dataclass
class RedemptionRow:
    lease_id: int
    voucher_id: int
    beneficiary: str
    offer_id: int
    voucher_paid: int
    copay_paid: int
    status: str = "open"  # open | closed-out
    voucher_spent: int | None = None
    copay_spent: int | None = None
    voucher_returned: int | None = None
    copay_returned: int | None = None
    charged: int = 0
    checkpoints: int = 0
    last_ckpt: int = 0
    report_hashes: list[str] = field(default_factory=list)
    tx_hashes: list[str] = field(default_factory=list)

    @property
    def billable_hint(self) -> dict[str, int]:
        """The last settled checkpoint's cumulative counters (GPU-ms; energy mJ)."""
        ck = Checkpoint.of(self.last_ckpt)
        return {
            "seq": ck.seq,
            "cumBusyMs": ck.cum_busy_ms,
            "cumAllocatedMs": ck.cum_allocated_ms,
            "cumEnergyMj": ck.cum_energy_mj,
            "cumSmActiveMs": ck.cum_sm_active_ms,
        }


@dataclass
class RedemptionReport:
    programme_id: int
    issuer: str = ""
    token: str = ""
    funded: int = 0
    granted: int = 0
    closed: bool = False
    returned: int = 0
    vouchers: dict[int, dict[str, Any]] = field(default_factory=dict)
    rows: list[RedemptionRow] = field(default_factory=list)

    @property
    def voucher_spent(self) -> int:
        return sum(r.voucher_spent or 0 for r in self.rows)

    def to_json(self) -> dict[str, Any]:
        """The report as JSON (amounts as decimal strings, in the token's base units)."""
        return {
            "programmeId": self.programme_id,
            "issuer": self.issuer,
            "token": self.token,
            "funded": str(self.funded),
            "granted": str(self.granted),
            "voucherSpent": str(self.voucher_spent),
            "returnedToIssuer": str(self.returned),
            "closed": self.closed,
            "vouchers": [
                {"voucherId": vid, **{k: (str(v) if isinstance(v, int) and k in _AMOUNTS else v) for k, v in d.items()}}
                for vid, d in sorted(self.vouchers.items())
            ],
            "leases": [
                {
                    "leaseId": r.lease_id,
                    "voucherId": r.voucher_id,
                    "beneficiary": r.beneficiary,
                    "offerId": r.offer_id,
                    "status": r.status,
                    "voucherPaid": str(r.voucher_paid),
                    "copayPaid": str(r.copay_paid),
                    "voucherSpent": None if r.voucher_spent is None else str(r.voucher_spent),
                    "copaySpent": None if r.copay_spent is None else str(r.copay_spent),
                    "voucherReturned": None if r.voucher_returned is None else str(r.voucher_returned),
                    "copayReturned": None if r.copay_returned is None else str(r.copay_returned),
                    "charged": str(r.charged),
                    "usage": {"checkpoints": r.checkpoints, **r.billable_hint},
                    "evidence": {"reportHashes": list(r.report_hashes), "txHashes": list(r.tx_hashes)},
                }
                for r in self.rows
            ],
        }

    def to_csv(self) -> str:
        """One line per lease (evidence hashes joined by spaces)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.rows:
            u = r.billable_hint
            w.writerow([
                self.programme_id, r.lease_id, r.voucher_id, r.beneficiary, r.offer_id, r.status, r.voucher_paid,
                r.copay_paid, _blank(r.voucher_spent), _blank(r.copay_spent), _blank(r.voucher_returned),
                _blank(r.copay_returned), r.charged, r.checkpoints, u["cumAllocatedMs"], u["cumBusyMs"],
                u["cumSmActiveMs"], " ".join(r.report_hashes), " ".join(r.tx_hashes),
            ])
        return out.getvalue()


_AMOUNTS = frozenset({"faceValue", "expiredReturned"})
CSV_COLUMNS = (
    "programmeId", "leaseId", "voucherId", "beneficiary", "offerId", "status", "voucherPaid", "copayPaid",
    "voucherSpent", "copaySpent", "voucherReturned", "copayReturned", "charged", "checkpoints",
    "cumAllocatedMs", "cumBusyMs", "cumSmActiveMs", "reportHashes", "txHashes",
)


def _blank(v: int | None) -> str:
    return "" if v is None else str(v)


def redemption_report(programme_id: int, events: Iterable[Evt]) -> RedemptionReport:
    """The redemption report of one programme from the vault's and the escrow's events, in chain order: each
    voucher lease with what the voucher and the beneficiary paid, what settlement charged (the lease's
    checkpoints: report hashes and transactions, the evidence an auditor re-verifies), and its close-out."""
    evs = sorted(events, key=lambda e: (e.block_number, e.log_index, e.record_index))
    rep = RedemptionReport(programme_id)
    vouchers: set[int] = set()
    rows: dict[int, RedemptionRow] = {}
    for e in evs:
        a = e.args
        if e.name == "ProgrammeCreated" and as_int(a["programmeId"]) == programme_id:
            rep.issuer, rep.token = str(a["issuer"]), str(a["token"])
        elif e.name == "ProgrammeFunded" and as_int(a["programmeId"]) == programme_id:
            rep.funded += as_int(a["amount"])
        elif e.name == "ProgrammeClosed" and as_int(a["programmeId"]) == programme_id:
            rep.closed = True
            rep.returned += as_int(a["returned"])
        elif e.name == "VoucherGranted" and as_int(a["programmeId"]) == programme_id:
            vid = as_int(a["voucherId"])
            vouchers.add(vid)
            rep.granted += as_int(a["faceValue"])
            rep.vouchers[vid] = {
                "beneficiary": str(a["beneficiary"]),
                "faceValue": as_int(a["faceValue"]),
                "expiry": as_int(a["expiry"]),
                "copayBps": as_int(a["copayBps"]),
                "expired": False,
                "expiredReturned": 0,
            }
        elif e.name == "VoucherExpired" and as_int(a["voucherId"]) in vouchers:
            d = rep.vouchers[as_int(a["voucherId"])]
            d["expired"] = True
            d["expiredReturned"] = as_int(a["returned"])
            rep.returned += as_int(a["returned"])
        elif e.name == "VoucherRedeemed" and as_int(a["voucherId"]) in vouchers:
            lid = as_int(a["leaseId"])
            row = rows[lid] = RedemptionRow(
                lease_id=lid,
                voucher_id=as_int(a["voucherId"]),
                beneficiary=str(rep.vouchers[as_int(a["voucherId"])]["beneficiary"]),
                offer_id=as_int(a["offerId"]),
                voucher_paid=as_int(a["voucherPaid"]),
                copay_paid=as_int(a["copayPaid"]),
            )
            row.tx_hashes.append(e.tx_hash)
        elif e.name == "RedemptionClosedOut" and as_int(a["leaseId"]) in rows:
            row = rows[as_int(a["leaseId"])]
            row.status = "closed-out"
            row.voucher_spent, row.copay_spent = as_int(a["voucherSpent"]), as_int(a["copaySpent"])
            row.voucher_returned, row.copay_returned = as_int(a["voucherReturned"]), as_int(a["copayReturned"])
            if rep.vouchers[row.voucher_id]["expired"]:
                rep.returned += row.voucher_returned
            _add_tx(row, e.tx_hash)
        elif e.name in LEASE_EVIDENCE_EVENTS and "leaseId" in a and as_int(a["leaseId"]) in rows:
            row = rows[as_int(a["leaseId"])]
            if e.name == "CheckpointSettled":
                row.checkpoints += 1
                row.charged += as_int(a["charged"])
                row.last_ckpt = as_int(a["ckpt"])
                rh = a["reportHash"]
                row.report_hashes.append(rh if isinstance(rh, str) else "0x" + bytes(rh).hex())
            _add_tx(row, e.tx_hash)
    rep.rows = sorted(rows.values(), key=lambda r: r.lease_id)
    return rep


def _add_tx(row: RedemptionRow, tx: str) -> None:
    if tx not in row.tx_hashes:
        row.tx_hashes.append(tx)
