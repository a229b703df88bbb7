"""The deployed suite's contract bindings: one ABI per address, loaded from the committed artifacts.

``LeaseEscrow`` answers for itself and, through its fallback, for ``LeaseEscrowExtension`` (DELEGATECALL on
the escrow's storage): its ABI is the whole escrow interface. ERC-20 tokens are bound on demand.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, cast

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from .compiler import ArtifactNotFound, load_artifact
from .deployment import Deployment

ABI = list[dict[str, Any]]

# what each deployed address answers to, by the name the events and the bridge use
SUITE_NAMES: tuple[str, ...] = ("registry", "escrow", "reputation", "vault", "pricer")


@lru_cache(maxsize=None)
def escrow_abi() -> tuple[dict[str, Any], ...]:
    """ABI of the escrow as callers see it at its one address: the ``ILeaseEscrow`` interface's, which declares
    LeaseEscrow's functions and the LeaseEscrowExtension functions its fallback delegates to, with every event
    and error of both (the build writes it as its own artifact)."""
    return tuple(load_artifact("ILeaseEscrow")["abi"])


@lru_cache(maxsize=None)
def contract_abi(name: str) -> tuple[dict[str, Any], ...]:
    """The ABI callers use for a suite contract (``CapacityRegistry``, ``Reputation``, ``LeaseEscrow``)."""
    if name == "LeaseEscrow":
        return escrow_abi()
    return tuple(load_artifact(name)["abi"])


@lru_cache(maxsize=1)
def address_abis() -> dict[str, tuple[dict[str, Any], ...]]:
    """The ABI each deployed address answers to, by the deployment record's contract names: the escrow's is
    the whole ``ILeaseEscrow`` interface (views included); the extension's own address is listed for
    completeness (it is only ever reached through the escrow)."""
    return {
        "CapacityRegistry": contract_abi("CapacityRegistry"),
        "Reputation": contract_abi("Reputation"),
        "LeaseEscrow": escrow_abi(),
        "LeaseEscrowExtension": contract_abi("LeaseEscrowExtension"),
        "VoucherVault": contract_abi("VoucherVault"),
        "DynamicPricer": contract_abi("DynamicPricer"),
    }


def erc20_abi() -> tuple[dict[str, Any], ...]:
    """ERC-20 plus the dev token's ``mint`` (MockERC20); the standard subset when that artifact is absent."""
    try:
        return tuple(load_artifact("MockERC20")["abi"])
    except ArtifactNotFound:
        return tuple(_MIN_ERC20_ABI)


class Contracts:
    """web3 bindings of one deployment's contracts (registry, escrow, reputation and, when deployed, the
    voucher vault), and of any ERC-20 on demand."""

    def __init__(self, w3: Web3, deployment: Deployment) -> None:
        self.w3 = w3
        self.deployment = deployment
        self.registry = self._bind(deployment.registry, contract_abi("CapacityRegistry"))
        self.escrow = self._bind(deployment.escrow, contract_abi("LeaseEscrow"))
        self.reputation = self._bind(deployment.reputation, contract_abi("Reputation"))
        self.by_name: dict[str, Contract] = {"registry": self.registry, "escrow": self.escrow, "reputation": self.reputation}
        # the compute-voucher vault (absent from deployment records older than vouchers)
        self.vault: Contract | None = None
        if deployment.voucher_vault is not None:
            self.vault = self.by_name["vault"] = self._bind(deployment.voucher_vault, contract_abi("VoucherVault"))
        # the dynamic pricer (absent from deployment records older than dynamic prices)
        self.pricer: Contract | None = None
        if deployment.dynamic_pricer is not None:
            self.pricer = self.by_name["pricer"] = self._bind(deployment.dynamic_pricer, contract_abi("DynamicPricer"))
        self.name_of: dict[str, str] = {str(c.address): n for n, c in self.by_name.items()}
        self._erc20: dict[str, Contract] = {}

    def _bind(self, address: str, abi: tuple[dict[str, Any], ...]) -> Contract:
        return self.w3.eth.contract(address=to_checksum_address(address), abi=cast(Any, list(abi)))

    @property
    def addresses(self) -> list[str]:
        return [str(c.address) for c in self.by_name.values()]

    def erc20(self, token: str) -> Contract:
        addr = to_checksum_address(token)
        c = self._erc20.get(addr)
        if c is None:
            c = self._erc20[addr] = self._bind(addr, erc20_abi())
        return c


_MIN_ERC20_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "approve",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "spender", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    },
    {
        "type": "function",
        "name": "allowance",
        "stateMutability": "view",
        "inputs": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
    {
        "type": "function",
        "name": "balanceOf",
        "stateMutability": "view",
        "inputs": [{"name": "account", "type": "address"}],
        "outputs": [{"name": "", "type": "uint256"}],
    },
]
