"""Deploy the contract suite (registry, reputation, escrow + its extension) and record where it lives.

Usage::

    from ledger.chain import connect
    from ledger.deploy import deploy_suite, Deployment

    chain = connect("memory")
    dep = deploy_suite(chain, admin=chain.accounts[0])
    dep.save(Path("deployment.json"))
    same = Deployment.load(Path("deployment.json"))

Roles after deployment: ``admin`` holds DEFAULT_ADMIN_ROLE on every contract; ``arbiter`` holds the
escrow's ARBITER_ROLE; ``pauser`` its PAUSER_ROLE; the escrow holds ESCROW_ROLE on the registry and on
Reputation; fees go to ``treasury``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from eth_utils import keccak, to_checksum_address

from .base import LedgerError
from .chain import save_json
from .compiler import load_artifact

ESCROW_ROLE = keccak(text="ESCROW_ROLE")
ARBITER_ROLE = keccak(text="ARBITER_ROLE")
PAUSER_ROLE = keccak(text="PAUSER_ROLE")
DEFAULT_ADMIN_ROLE = b"\x00" * 32

SUITE: tuple[str, ...] = ("CapacityRegistry", "Reputation", "LeaseEscrowExtension", "LeaseEscrow")


def escrow_abi() -> list[dict[str, Any]]:
    """ABI of the escrow as callers see it at its one address: the ``ILeaseEscrow`` interface's, which declares
    LeaseEscrow's functions and the LeaseEscrowExtension functions its fallback delegates to, with every event
    and error of both (the build writes it as its own artifact)."""
    abi: list[dict[str, Any]] = load_artifact("ILeaseEscrow")["abi"]
    return list(abi)


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

    def to_json(self) -> dict[str, Any]:
        return {
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


def deploy_suite(
    chain: Any,
    admin: str,
    *,
    treasury: str | None = None,
    arbiter: str | None = None,
    pauser: str | None = None,
    challenge_period_s: int = 3600,
    unbonding_delay_s: int = 7 * 86400,
    base_fee_bps: int = 250,
    keys: Mapping[str, bytes] | None = None,
) -> Deployment:
    """Deploy CapacityRegistry, Reputation, LeaseEscrowExtension and LeaseEscrow from ``admin`` and wire
    their roles. ``chain`` is a :class:`ledger.chain.Chain` (or anything with a ``.w3``); ``keys`` maps
    addresses to private keys for signing locally (needed on the ``rpc`` backend). Raises
    :class:`DeploymentError` (or :class:`ledger.errors.ContractRevert`) on failure."""
    from .client import Transactor  # the one module that builds transactions

    w3 = chain.w3 if hasattr(chain, "w3") else chain
    admin = to_checksum_address(admin)
    treasury = to_checksum_address(treasury or admin)
    arbiter = to_checksum_address(arbiter or admin)
    pauser = to_checksum_address(pauser or admin)
    if not 0 <= base_fee_bps <= 10_000:
        raise DeploymentError(f"base_fee_bps {base_fee_bps} is outside 0..10000")
    tx = Transactor(w3, keys=keys)

    registry_addr = tx.deploy(load_artifact("CapacityRegistry"), admin, [admin, unbonding_delay_s])
    reputation_addr = tx.deploy(load_artifact("Reputation"), admin, [admin])
    ext_addr = tx.deploy(load_artifact("LeaseEscrowExtension"), admin, [registry_addr, reputation_addr])
    escrow_addr, receipt = tx.deploy_with_receipt(
        load_artifact("LeaseEscrow"),
        admin,
        [admin, registry_addr, reputation_addr, treasury, challenge_period_s, base_fee_bps, ext_addr],
    )
    registry = w3.eth.contract(address=registry_addr, abi=load_artifact("CapacityRegistry")["abi"])
    reputation = w3.eth.contract(address=reputation_addr, abi=load_artifact("Reputation")["abi"])
    escrow = w3.eth.contract(address=escrow_addr, abi=escrow_abi())
    tx.send(registry.functions.setEscrow(escrow_addr), admin)
    tx.send(reputation.functions.grantRole(ESCROW_ROLE, escrow_addr), admin)
    tx.send(escrow.functions.grantRole(ARBITER_ROLE, arbiter), admin)
    tx.send(escrow.functions.grantRole(PAUSER_ROLE, pauser), admin)
    return Deployment(
        chain_id=int(w3.eth.chain_id),
        block=int(receipt["blockNumber"]),
        registry=registry_addr,
        reputation=reputation_addr,
        escrow=escrow_addr,
        escrow_extension=ext_addr,
        admin=admin,
        treasury=treasury,
        arbiter=arbiter,
        pauser=pauser,
        challenge_period_s=challenge_period_s,
        unbonding_delay_s=unbonding_delay_s,
        base_fee_bps=base_fee_bps,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m ledger.deploy --backend anvil --out deployment.json``: deploy the suite, write the record.

    On ``rpc`` the admin must be an account the node manages (keys are never read here)."""
    import argparse
    import sys

    from .chain import connect

    parser = argparse.ArgumentParser(prog="python -m ledger.deploy", description="deploy the contract suite")
    parser.add_argument("--backend", default="anvil", choices=("memory", "anvil", "rpc"))
    parser.add_argument("--rpc-url", default=None)
    parser.add_argument("--data-dir", default=None, help="anvil state directory")
    parser.add_argument("--admin", default=None, help="admin address (default: first dev account)")
    parser.add_argument("--challenge-period", type=int, default=3600, help="seconds")
    parser.add_argument("--fee-bps", type=int, default=250)
    parser.add_argument("--out", type=Path, required=True, help="where to write the deployment JSON")
    args = parser.parse_args(argv)
    chain = connect(args.backend, rpc_url=args.rpc_url, data_dir=args.data_dir)
    try:
        admin = args.admin or (chain.accounts[0] if chain.accounts else None)
        if admin is None:
            parser.error("--admin is required on this backend")
        dep = deploy_suite(
            chain,
            admin,
            challenge_period_s=args.challenge_period,
            base_fee_bps=args.fee_bps,
            keys=chain.private_keys or None,
        )
        dep.save(args.out)
        print(json.dumps(dep.to_json(), indent=2), file=sys.stderr)
    except LedgerError as e:
        print(f"deploy failed: {e}", file=sys.stderr)
        return 1
    finally:
        chain.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
