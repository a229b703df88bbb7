"""Run a contract action for a caller: managed accounts are signed and sent here, wallet users get the
unsigned transaction. Ids created by the action are read from its events."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from web3.contract.contract import ContractFunction

from .deps import Caller
from .errors import ApiError, Forbidden
from .gateway import DecodedEvent, TxOutcome, jsonable
from .schemas import ETH, ActionOut, EventOut, UnsignedTx

if TYPE_CHECKING:
    from .services import Services

# event name -> (argument, result key) for ids an action creates
ID_EVENTS: dict[str, tuple[str, str]] = {
    "NodeRegistered": ("nodeId", "nodeId"),
    "OfferPublished": ("offerId", "offerId"),
    "LeaseOpened": ("leaseId", "leaseId"),
}


def events_out(events: Iterable[DecodedEvent]) -> list[EventOut]:
    return [
        EventOut(
            contract=e.contract,
            name=e.name,
            args=jsonable(e.args),
            blockNumber=e.block_number,
            txHash=e.tx_hash,
            logIndex=e.log_index,
        )
        for e in events
    ]


def outcome_out(outcome: TxOutcome) -> ActionOut:
    result: dict[str, Any] = {}
    for e in outcome.events:
        if e.name in ID_EVENTS:
            arg, key = ID_EVENTS[e.name]
            if arg in e.args:
                result[key] = jsonable(e.args[arg])
    return ActionOut(
        status="mined",
        txHash=outcome.tx_hash,
        blockNumber=outcome.block_number,
        events=events_out(outcome.events),
        result=result,
    )


def act(
    svc: "Services",
    caller: Caller,
    fn: ContractFunction,
    value: int = 0,
) -> ActionOut:
    """Managed caller: simulate, sign, send, wait, index. Wallet caller: the unsigned transaction.
    Auditor-only accounts read; they never write (403)."""
    ensure_writer(caller)
    if caller.account is None:
        tx = svc.gateway.build(fn, caller.address, value)
        return ActionOut(status="unsigned", unsignedTx=unsigned_out(tx))
    outcome = svc.gateway.transact(caller.account, fn, value)
    svc.after_write()
    return outcome_out(outcome)


def ensure_writer(caller: Caller) -> None:
    if caller.managed and not (caller.roles - {"auditor"}):
        raise Forbidden("auditor accounts are read-only", code="missing_role")


def act_paying(svc: "Services", caller: Caller, fn: ContractFunction, token: str, spender: str, amount: int) -> ActionOut:
    """:func:`act` for a call that pays ``amount`` of ``token`` to ``spender`` (the escrow or the registry):
    ETH goes as the transaction's value. An ERC-20 is pulled by the contract: for a managed account the
    bridge first approves ``spender`` for exactly ``amount`` (nothing when the allowance already is exactly
    that: a retry whose approval was mined), then sends the call; if the contract refuses the call, the
    approval is set back to 0. A wallet user without the allowance gets 409 ``approval_required`` with the
    unsigned approve (:class:`api.tokens.ApprovalRequired`); with it, the unsigned call."""
    from .tokens import approve_exact, prepare_pull

    if token == ETH:
        return act(svc, caller, fn, amount)
    ensure_writer(caller)
    if caller.account is None:
        prepare_pull(svc, caller, fn, token, spender, amount)
        return act(svc, caller, fn)
    # the allowance is set to exactly this payment and spent by it: serialize the account's payments in
    # this token to this spender, or one could spend (or reset) the other's approval
    with svc.pay_lock(caller.account.address, token, spender):
        current = prepare_pull(svc, caller, fn, token, spender, amount)
        approvals = approve_exact(svc, caller.account, token, spender, amount, current)
        try:
            out = act(svc, caller, fn)
        except ApiError as e:
            if approvals and e.status < 500:  # refused, nothing pulled: do not leave the approval standing
                approve_exact(svc, caller.account, token, spender, 0, amount)
            raise
    out.result["approveTxHashes"] = [o.tx_hash for o in approvals]
    return out


def unsigned_out(tx: dict[str, Any]) -> UnsignedTx:
    def s(k: str) -> str | None:
        return str(int(tx[k])) if k in tx else None

    return UnsignedTx(
        to=str(tx["to"]),
        data=str(tx["data"]) if str(tx["data"]).startswith("0x") else "0x" + str(tx["data"]),
        value=str(int(tx.get("value", 0))),
        chainId=int(tx["chainId"]),
        nonce=int(tx["nonce"]),
        gas=int(tx["gas"]),
        sender=str(tx["from"]),
        gasPrice=s("gasPrice"),
        maxFeePerGas=s("maxFeePerGas"),
        maxPriorityFeePerGas=s("maxPriorityFeePerGas"),
    )
