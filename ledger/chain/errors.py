"""Errors of the chain layer. All derive from :class:`ChainError` (itself a ``LedgerError``); a contract's
refusal is :class:`ledger.chain.reverts.ContractRevert`, decoded in one place (``ledger.chain.reverts``)."""

from __future__ import annotations

from ..protocol.errors import LedgerError


class ChainError(LedgerError):
    """Something went wrong talking to the chain."""


class ChainUnreachable(ChainError, ConnectionError):
    """A backend cannot be started, or its JSON-RPC endpoint does not answer."""


class ChainUnavailable(ChainError):
    """A call or transaction got no usable answer (node down, timeout, no receipt in time). Transient: the
    caller may retry. ``tx_hash`` is set when a transaction was broadcast and its outcome is unknown."""

    def __init__(self, message: str, tx_hash: str | None = None) -> None:
        super().__init__(message)
        self.tx_hash = tx_hash


class UndecodableAnswer(ChainError):
    """A contract answered a call with data that does not decode as the ABI says (not that contract, or a
    function it does not have)."""


class TxRejected(ChainError):
    """The node refused to take a transaction (bad nonce, underpriced, ...); nothing was broadcast."""


class InsufficientFunds(TxRejected):
    """The sender cannot pay the transaction's value plus gas."""


class StateUnavailable(ChainError):
    """A lease's settlement state cannot be rebuilt: the events read do not explain the escrow's commitment
    (a settlement landed meanwhile, or the node dropped logs). Retry later."""


class UnknownLease(ChainError, LookupError):
    """The escrow has no such lease."""


class NoKey(ChainError, LookupError):
    """A transaction must be signed for an address whose key this process does not hold."""
