"""Compute vouchers (算力券) through the bridge: programmes (issuer: ISSUER_ROLE on the VoucherVault), vouchers,
leases paid by a voucher (beneficiary), their close-out, and the redemption report of a programme (JSON or CSV)
folded from the indexed events by ``ledger.protocol.vouchers.redemption_report``: the same function anyone runs
on events read from the chain (``compute-ledger vouchers report``)."""

from __future__ import annotations

import json
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from pydantic import BaseModel

from ledger.chain.deployment import ISSUER_ROLE
from ledger.chain.errors import ChainError
from ledger.chain.reverts import ContractRevert
from ledger.chain.suite import LedgerChain
from ledger.protocol.economics import ETH, quote_lease
from ledger.protocol.vouchers import LEASE_EVIDENCE_EVENTS, VOUCHER_EVENTS, Evt, RedemptionReport, redemption_report, voucher_split

from ..chain_reads import ChainViews
from ..errors import ApiError, Invalid, from_chain
from ..schemas import ActionOut
from ..store import Store
from .actions import Actor
from .caller import Caller
from .idempotency import Answer, Idempotency, fingerprint
from .leases import DEFAULT_START_WINDOW_S, Leases


class Vouchers:
    def __init__(self, ledger: LedgerChain, views: ChainViews, store: Store, actor: Actor, idem: Idempotency,
                 leases: Leases, admin: LocalAccount | None) -> None:
        self._ledger = ledger
        self._views = views
        self._store = store
        self._actor = actor
        self._idem = idem
        self._leases = leases
        self._calls = ledger.calls
        self._admin = admin  # dev chains only: the deployer, who may grant ISSUER_ROLE

    # --- reads ---------------------------------------------------------------------------------------

    @property
    def has_vault(self) -> bool:
        return self._ledger.deployment.voucher_vault is not None

    @property
    def vault(self) -> str:
        addr = self._ledger.deployment.voucher_vault
        if addr is None:
            raise ApiError(409, "conflict", "this deployment has no VoucherVault: redeploy the contracts to use vouchers")
        return addr

    def _read(self, what: str, ident: int, read: Any) -> Any:
        self.vault  # noqa: B018 (409 without a vault)
        try:
            return read()
        except ContractRevert as e:
            if "Unknown" in e.name:
                raise ApiError(404, "not_found", f"no {what} {ident}") from e
            raise from_chain(e) from e
        except ChainError as e:
            raise from_chain(e) from e

    def programme(self, programme_id: int) -> dict[str, Any]:
        p = self._read("programme", programme_id, lambda: self._ledger.read.programme(programme_id))
        return {
            "programmeId": programme_id, "issuer": p.issuer, "token": p.token, "closed": p.closed,
            "eligibility": {"anyGpuModel": p.any_model, "anyRegion": p.any_region, "anyProvider": p.any_provider},
            "poolWei": str(p.pool), "grantedWei": str(p.granted), "spentWei": str(p.spent), "returnedWei": str(p.returned),
        }

    def voucher(self, voucher_id: int) -> dict[str, Any]:
        v = self._read("voucher", voucher_id, lambda: self._ledger.read.voucher(voucher_id))
        return {
            "voucherId": voucher_id, "programmeId": v.programme_id, "beneficiary": v.beneficiary, "expiry": v.expiry,
            "copayBps": v.copay_bps, "expired": v.expired, "faceValueWei": str(v.face_value), "balanceWei": str(v.balance),
        }

    def report(self, programme_id: int) -> RedemptionReport:
        """The programme's redemption report from the indexed events (404 for an unknown programme)."""
        self.programme(programme_id)
        names = sorted(VOUCHER_EVENTS | LEASE_EVIDENCE_EVENTS)
        evs = [
            Evt(e.name, json.loads(e.args), e.block_number, e.tx_hash, e.log_index, e.record_index)
            for e in self._store.index.events_named(names)
        ]
        return redemption_report(programme_id, evs)

    # --- issuer --------------------------------------------------------------------------------------

    def grant_issuer(self, address: str) -> str:
        """Give a new issuer account the vault's ISSUER_ROLE; what was done, in words."""
        if self._admin is None:
            return (f"the vault's admin must grant ISSUER_ROLE to {address} on chain "
                    f"(grantRole(0x{ISSUER_ROLE.hex()}, {address}) on {self.vault})")
        self._actor.send(self._admin, self._calls.grant_role("vault", ISSUER_ROLE, address))
        return f"ISSUER_ROLE granted to {address} on the voucher vault (dev chain: by the deployer)"

    def create(self, caller: Caller, token: str, models: list[str], regions: list[str], providers: list[str]) -> ActionOut:
        caller.require("issuer")
        self.vault  # noqa: B018
        try:
            call = self._calls.create_programme(token, models, regions, providers)
        except Exception as e:  # a label longer than its field
            raise Invalid(str(e), field="gpuModels" if "gpuModel" in str(e) else "regions") from e
        return self._actor.act(caller, call)

    def fund(self, caller: Caller, programme_id: int, amount: int, key: str | None, body: BaseModel) -> Answer:
        caller.require("issuer")
        token = self.programme(programme_id)["token"]

        def action() -> ActionOut:
            call = self._calls.fund_programme(programme_id, amount, value=amount if token == ETH else 0)
            return self._actor.act_paying(caller, call, token, self.vault, amount)

        return self._idem.run(caller.address, key, fingerprint("POST", f"/v1/programmes/{programme_id}/fund", body), action)

    def grant(self, caller: Caller, programme_id: int, beneficiary: str, face: int, expiry: int, copay_bps: int) -> ActionOut:
        caller.require("issuer")
        self.programme(programme_id)
        return self._actor.act(caller, self._calls.grant_voucher(programme_id, beneficiary, face, expiry, copay_bps))

    def set_related(self, caller: Caller, programme_id: int, accounts: list[str], related: bool) -> ActionOut:
        caller.require("issuer")
        self.programme(programme_id)
        return self._actor.act(caller, self._calls.set_related(programme_id, accounts, related))

    def close(self, caller: Caller, programme_id: int) -> ActionOut:
        caller.require("issuer")
        self.programme(programme_id)
        return self._actor.act(caller, self._calls.close_programme(programme_id))

    # --- beneficiary and anyone ----------------------------------------------------------------------

    def open_lease(self, caller: Caller, voucher_id: int, offer_id: int, duration_s: int, start_by: int | None,
                   max_copay: int | None, holder: str | None, key: str | None, body: BaseModel) -> Answer:
        """Open a lease on ``offer_id`` paid by the voucher first, the co-pay from the caller."""
        caller.require("buyer")

        def action() -> ActionOut:
            v = self.voucher(voucher_id)
            if caller.managed and to_checksum_address(v["beneficiary"]) != to_checksum_address(caller.address):
                raise ApiError(403, "forbidden", f"voucher {voucher_id} belongs to {v['beneficiary']}")
            views = self._views
            offer = views.offer(offer_id)
            who = holder or views.provider(offer["provider"])["payout"]
            price = views.lease_price(offer_id, who, duration_s)
            q = quote_lease(price, offer["gpuCount"], duration_s, views.fee_bps(offer["provider"]))
            from_voucher, copay = voucher_split(q.total, int(v["copayBps"]), int(v["balanceWei"]))
            now = views.now()
            by = start_by if start_by is not None else min(max(now, int(offer["validFrom"])) + DEFAULT_START_WINDOW_S,
                                                          int(offer["validUntil"]) - duration_s)
            cap = copay if max_copay is None else max_copay
            call = self._calls.voucher_open_lease(voucher_id, offer_id, who, duration_s, by, cap,
                                                  value=copay if offer["token"] == ETH else 0)
            out = self._actor.act_paying(caller, call, offer["token"], self.vault, copay)
            out.result.update({"totalWei": str(q.total), "voucherWei": str(from_voucher), "copayWei": str(copay),
                               "token": offer["token"]})
            return out

        return self._idem.run(caller.address, key, fingerprint("POST", f"/v1/vouchers/{voucher_id}/leases", body), action)

    def close_lease(self, caller: Caller, lease_id: int) -> ActionOut:
        self._leases.require(lease_id)
        return self._leases.with_state(lease_id, lambda st: self._actor.act(caller, self._calls.voucher_close_lease(st)))

    def reconcile(self, caller: Caller | None, lease_id: int) -> ActionOut:
        self._leases.require(lease_id)
        return self._leases.with_state(
            lease_id, lambda st: self._actor.act_public(caller, self._calls.reconcile_voucher_lease(st))
        )

    def expire(self, caller: Caller | None, voucher_id: int) -> ActionOut:
        self.voucher(voucher_id)
        return self._actor.act_public(caller, self._calls.expire_voucher(voucher_id))

    def withdraw(self, caller: Caller, token: str) -> ActionOut:
        self.vault  # noqa: B018
        return self._actor.act(caller, self._calls.vault_withdraw(token))

