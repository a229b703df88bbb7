"""Deploy the contract suite (registry, reputation, escrow + its extension) and write its record.

Usage::

    from ledger.chain.backends import connect
    from ledger.chain.deploy import deploy_suite

    chain = connect("memory")
    dep = deploy_suite(chain, admin=chain.accounts[0])
    dep.save(Path("deployment.json"))
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from ..protocol.errors import LedgerError
from .backends import Chain, connect
from .calls import Calls
from .compiler import load_artifact
from .contracts import Contracts
from .deployment import ARBITER_ROLE, ESCROW_ROLE, ISSUER_ROLE, PAUSER_ROLE, Deployment, DeploymentError
from .events import ChainEvent, EventDecoder
from .sender import TxSender


def deploy_suite(
    chain: Chain,
    admin: str,
    *,
    treasury: str | None = None,
    arbiter: str | None = None,
    pauser: str | None = None,
    issuer: str | None = None,
    challenge_period_s: int = 3600,
    unbonding_delay_s: int = 7 * 86400,
    base_fee_bps: int = 250,
    keys: Mapping[str, bytes] | None = None,
) -> Deployment:
    """Deploy CapacityRegistry, Reputation, LeaseEscrowExtension, LeaseEscrow, the compute-voucher
    VoucherVault and the DynamicPricer (no roles: it is a rights holder like any reseller) from ``admin`` and wire their roles (``issuer``, default ``admin``, gets ISSUER_ROLE). ``keys`` maps addresses to private keys (default: the chain's dev keys; on the ``rpc``
    backend the admin's key must be given). Raises :class:`DeploymentError` (or
    :class:`ledger.chain.reverts.ContractRevert`) on failure."""
    w3 = chain.w3
    admin = to_checksum_address(admin)
    treasury = to_checksum_address(treasury or admin)
    arbiter = to_checksum_address(arbiter or admin)
    pauser = to_checksum_address(pauser or admin)
    issuer = to_checksum_address(issuer or admin)
    if not 0 <= base_fee_bps <= 10_000:
        raise DeploymentError(f"base_fee_bps {base_fee_bps} is outside 0..10000")
    lock = chain.lock
    sender = TxSender(w3, _NO_EVENTS, lock, keys=keys if keys is not None else chain.private_keys,
                      estimate=chain.backend != "memory", poll_s=0.01)
    registry_addr, _ = sender.deploy(admin, load_artifact("CapacityRegistry"), [admin, unbonding_delay_s])
    reputation_addr, _ = sender.deploy(admin, load_artifact("Reputation"), [admin])
    ext_addr, _ = sender.deploy(admin, load_artifact("LeaseEscrowExtension"), [registry_addr, reputation_addr])
    escrow_addr, created = sender.deploy(
        admin,
        load_artifact("LeaseEscrow"),
        [admin, registry_addr, reputation_addr, treasury, challenge_period_s, base_fee_bps, ext_addr],
    )
    vault_addr, _ = sender.deploy(admin, load_artifact("VoucherVault"), [admin, escrow_addr])
    pricer_addr, _ = sender.deploy(admin, load_artifact("DynamicPricer"), [escrow_addr])
    dep = Deployment(
        chain_id=sender.chain_id,
        block=created.block_number,
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
        voucher_vault=vault_addr,
        issuer=issuer,
        dynamic_pricer=pricer_addr,
    )
    calls = Calls(Contracts(w3, dep))
    sender.send(admin, calls.set_registry_escrow(escrow_addr))
    sender.send(admin, calls.grant_role("reputation", ESCROW_ROLE, escrow_addr))
    sender.send(admin, calls.grant_role("escrow", ARBITER_ROLE, arbiter))
    sender.send(admin, calls.grant_role("escrow", PAUSER_ROLE, pauser))
    sender.send(admin, calls.grant_role("vault", ISSUER_ROLE, issuer))
    return dep


class _NoEvents(EventDecoder):
    """Deployment decodes no events (the suite it would decode does not exist yet)."""

    def __init__(self) -> None:
        self.topics = {}

    def decode(self, logs: Iterable[Any]) -> list[ChainEvent]:
        return []


_NO_EVENTS = _NoEvents()


def main(argv: list[str] | None = None) -> int:
    """``python -m ledger.chain.deploy --backend anvil --out deployment.json``: deploy the suite, write the record."""
    parser = argparse.ArgumentParser(prog="python -m ledger.chain.deploy", description="deploy the contract suite")
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
        dep = deploy_suite(chain, admin, challenge_period_s=args.challenge_period, base_fee_bps=args.fee_bps)
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
