"""The deployment record: where the suite lives, who holds its roles, and its configuration at deployment.

Written by ``ledger.chain.deploy.deploy_suite`` (``dep.save(path)``), read by every party that must find
the contracts (``Deployment.load(path)``). Roles after deployment: ``admin`` holds DEFAULT_ADMIN_ROLE on
every contract; ``arbiter`` holds the escrow's ARBITER_ROLE; ``pauser`` its PAUSER_ROLE; the escrow holds
ESCROW_ROLE on the registry and on Reputation; fees go to ``treasury``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from eth_utils import keccak, to_checksum_address

from ..protocol.errors import LedgerError
from .backends import save_json

ESCROW_ROLE = keccak(text="ESCROW_ROLE")
ARBITER_ROLE = keccak(text="ARBITER_ROLE")
PAUSER_ROLE = keccak(text="PAUSER_ROLE")
ISSUER_ROLE = keccak(text="ISSUER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32

SUITE: tuple[str, ...] = ("CapacityRegistry", "Reputation", "LeaseEscrowExtension", "LeaseEscrow", "VoucherVault", "DynamicPricer")


class DeploymentError(LedgerError):
    """The suite could not be deployed, or a deployment record is malformed."""


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the suite lives and who holds its roles (JSON keys: camelCase, see :meth:`to_json`)."""

    chain_id: int
    block: int
    registry: str
    reputation: str
    escrow: str
    escrow_extension: str
    admin: str
    treasury: str
    arbiter: str
    pauser: str
    challenge_period_s: int
    unbonding_delay_s: int
    base_fee_bps: int
    # the compute-voucher vault (VoucherVault) and the holder of its ISSUER_ROLE at deployment; None in records
    # written before vouchers existed
    voucher_vault: str | None = None
    issuer: str | None = None
    # the dynamic-price holder of offers' rights (DynamicPricer); None in records written before it existed
    dynamic_pricer: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "chainId": self.chain_id,
            "block": self.block,
            "addresses": {
                "CapacityRegistry": self.registry,
                "Reputation": self.reputation,
                "LeaseEscrow": self.escrow,
                "LeaseEscrowExtension": self.escrow_extension,
            },
            "roles": {
                "admin": self.admin,
                "treasury": self.treasury,
                "arbiter": self.arbiter,
                "pauser": self.pauser,
            },
            "config": {
                "challengePeriodS": self.challenge_period_s,
                "unbondingDelayS": self.unbonding_delay_s,
                "baseFeeBps": self.base_fee_bps,
            },
        }
        if self.voucher_vault is not None:
            doc["addresses"]["VoucherVault"] = self.voucher_vault
            doc["roles"]["issuer"] = self.issuer
        if self.dynamic_pricer is not None:
            doc["addresses"]["DynamicPricer"] = self.dynamic_pricer
        return doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Deployment":
        try:
            a, r, c = data["addresses"], data["roles"], data["config"]
            return cls(
                chain_id=int(data["chainId"]),
                block=int(data["block"]),
                registry=to_checksum_address(a["CapacityRegistry"]),
                reputation=to_checksum_address(a["Reputation"]),
                escrow=to_checksum_address(a["LeaseEscrow"]),
                escrow_extension=to_checksum_address(a["LeaseEscrowExtension"]),
                admin=to_checksum_address(r["admin"]),
                treasury=to_checksum_address(r["treasury"]),
                arbiter=to_checksum_address(r["arbiter"]),
                pauser=to_checksum_address(r["pauser"]),
                challenge_period_s=int(c["challengePeriodS"]),
                unbonding_delay_s=int(c["unbondingDelayS"]),
                base_fee_bps=int(c["baseFeeBps"]),
                voucher_vault=to_checksum_address(a["VoucherVault"]) if a.get("VoucherVault") else None,
                issuer=to_checksum_address(r["issuer"]) if r.get("issuer") else None,
                dynamic_pricer=to_checksum_address(a["DynamicPricer"]) if a.get("DynamicPricer") else None,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DeploymentError(f"malformed deployment record: {e!r}") from e

    def save(self, path: Path) -> None:
        """Write the record as JSON (atomically)."""
        save_json(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "Deployment":
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise DeploymentError(f"cannot read deployment record {path.name}: {e}") from e

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
