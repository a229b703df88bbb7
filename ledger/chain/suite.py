"""One door to a deployed suite: the chain, its contracts, typed reads, call builders, events, lease states
and the one transaction sender, wired together once.

    chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    ledger = LedgerChain(chain, dep)
    out = ledger.sender.send(provider, ledger.calls.register_provider(provider, "ipfs://..."))
    info = ledger.read.lease(7)
    state = ledger.states.state(7)
"""

from __future__ import annotations

from collections.abc import Mapping

from .backends import Chain
from .calls import Calls
from .contracts import Contracts
from .deployment import Deployment
from .events import EventDecoder, EventReader
from .sender import TxSender
from .state import LeaseStates
from .views import ChainReader


class LedgerChain:
    """Every chain collaborator of one deployment, sharing the chain's lock.

    ``keys`` are the private keys the sender may sign with when given an address (default: the chain's dev
    keys, none on ``rpc``). ``estimate``: estimate gas (default everywhere but the in-process chain)."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        *,
        keys: Mapping[str, bytes] | None = None,
        estimate: bool | None = None,
        receipt_timeout_s: float = 60.0,
        poll_s: float | None = None,
    ) -> None:
        self.chain = chain
        self.deployment = deployment
        self.lock = chain.lock
        self.contracts = Contracts(chain.w3, deployment)
        self.decoder = EventDecoder(self.contracts)
        self.read = ChainReader(chain.w3, self.contracts, self.lock)
        self.calls = Calls(self.contracts)
        self.events = EventReader(chain.w3, self.contracts, self.decoder, self.lock)
        self.states = LeaseStates(self.read, self.events, deployment.block)
        self.sender = TxSender(
            chain.w3,
            self.decoder,
            self.lock,
            keys=chain.private_keys if keys is None else keys,
            receipt_timeout_s=receipt_timeout_s,
            poll_s=(0.002 if chain.backend in ("memory", "anvil") else 0.5) if poll_s is None else poll_s,
            estimate=chain.backend != "memory" if estimate is None else estimate,
            on_events=self.states.note,
        )

    @property
    def chain_id(self) -> int:
        return self.sender.chain_id

    @property
    def escrow(self) -> str:
        """The escrow's address: the EIP-712 verifying contract of metering reports."""
        return self.contracts.escrow.address
