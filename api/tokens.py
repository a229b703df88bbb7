"""ERC-20 payments through the bridge: the dev token, token metadata, and the approve step.

Offers may be priced in ETH (``address(0)``) or in an ERC-20 (CONTRACTS.md, token convention). The escrow
pulls an ERC-20 with ``transferFrom``, so the payer must first ``approve`` the escrow (leases) or the registry
(stake). For a managed account the bridge sends that approval itself, for exactly the amount the next call
pulls; a wallet user gets :class:`ApprovalRequired` (409) carrying the unsigned ``approve`` to sign first.

On the dev backends (memory, anvil) the bridge deploys one test token (``MockERC20``, anyone may mint) at
start-up and records it in the store (table ``tokens``); the faucet mints it. Never on ``rpc``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from eth_abi.exceptions import DecodingError

from eth_utils import to_checksum_address
from sqlalchemy import delete, select
from web3.contract.contract import ContractFunction
from web3.exceptions import BadFunctionCallOutput, ContractLogicError

from ledger.compiler import load_artifact

from .errors import ApiError, ChainUnavailable, Invalid
from .schemas import ETH
from .store import OfferRow, TokenRow, now_ms

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from .deps import Caller
    from .gateway import TxOutcome
    from .services import Services

log = logging.getLogger("api.tokens")
T = TypeVar("T")

DEV_BACKENDS = ("memory", "anvil")
DEV_TOKEN_NAME = "Compute Ledger Test USD"
DEV_TOKEN_SYMBOL = "tUSD"
DEV_TOKEN_DECIMALS = 18
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")  # approve(address,uint256)
# custom errors of the ledger's own contracts: a refusal for these reasons is final, an approval won't help
SUITE_ERROR_PREFIXES = ("LeaseEscrow", "CapacityRegistry", "Reputation", "AccessControl", "EnforcedPause",
                        "ReentrancyGuard")


class ApprovalRequired(ApiError):
    """409: a wallet user must approve ``spender`` for ``amount`` of ``token`` before this call. Not replayed
    under an Idempotency-Key: once the approval is mined, the same request (same key) goes through."""

    replayable = False

    def __init__(self, token: str, spender: str, amount: int, allowance: int, unsigned_tx: dict[str, Any]) -> None:
        super().__init__(
            409,
            "approval_required",
            f"this call pulls {amount} of ERC-20 {token}; the allowance of {spender} is {allowance}. Sign "
            "details.unsignedTx (approve), submit it with POST /v1/tx, then repeat this request",
            details={
                "token": token,
                "spender": spender,
                "amountWei": str(amount),
                "allowanceWei": str(allowance),
                "unsignedTx": unsigned_tx,
            },
        )


def erc20(svc: "Services", token: str) -> Any:
    """The token's contract binding (``LedgerClient.erc20``: ERC-20 plus the dev token's mint)."""
    return svc.client.erc20(token)


def is_dev_chain(svc: "Services") -> bool:
    """A chain whose tokens are play money: both the configured and the connected backend are dev ones."""
    return svc.chain.backend in DEV_BACKENDS and svc.settings.chain_backend in DEV_BACKENDS


# --- the dev token ----------------------------------------------------------------------------------------


def ensure_dev_token(svc: "Services") -> str | None:
    """The dev token's address, deploying it (from the faucet account) when the store has none that still
    has code on this chain. None on rpc or without a funded dev account."""
    if not is_dev_chain(svc) or svc.faucet_account is None:
        return None
    gw = svc.gateway
    with svc.store.session() as s:
        rows = list(s.scalars(select(TokenRow).where(TokenRow.chain_id == gw.chain_id)))
    for row in rows:
        with gw.lock:
            code = bytes(gw.w3.eth.get_code(to_checksum_address(row.address)))
        if code:
            return row.address
    from ledger.client import Transactor

    sender = svc.faucet_account
    with gw.lock:
        tx = Transactor(gw.w3, keys={sender.address: bytes(sender.key)}, poll_latency=0.002)
        address = to_checksum_address(
            tx.deploy(load_artifact("MockERC20"), sender.address, [DEV_TOKEN_NAME, DEV_TOKEN_SYMBOL, DEV_TOKEN_DECIMALS])
        )
    with svc.store.write() as s:
        # records of a chain that was reset (no code any more) are dropped
        s.execute(delete(TokenRow).where(TokenRow.chain_id == gw.chain_id))
        s.add(TokenRow(address=address, chain_id=gw.chain_id, name=DEV_TOKEN_NAME, symbol=DEV_TOKEN_SYMBOL,
                       decimals=DEV_TOKEN_DECIMALS, created_ms=now_ms()))
    log.info("deployed the dev token %s (%s) at %s", DEV_TOKEN_NAME, DEV_TOKEN_SYMBOL, address)
    return address


def dev_tokens(svc: "Services") -> list[TokenRow]:
    if not is_dev_chain(svc):
        return []
    with svc.store.session() as s:
        return list(s.scalars(select(TokenRow).where(TokenRow.chain_id == svc.gateway.chain_id)))


def offer_tokens(svc: "Services") -> list[str]:
    """ERC-20s some indexed offer is priced in."""
    with svc.store.session() as s:
        return sorted(t for t in s.scalars(select(OfferRow.token).distinct()) if t != ETH)


def metadata(svc: "Services", token: str) -> dict[str, Any]:
    """name, symbol, decimals of an ERC-20 (None for what the contract does not answer)."""
    c = erc20(svc, token)
    out: dict[str, Any] = {}
    for key in ("name", "symbol", "decimals"):
        try:
            out[key] = token_read(svc, token, getattr(c.functions, key)().call)
        except Invalid:
            out[key] = None
    return out


# --- balances and allowances ------------------------------------------------------------------------------


def token_read(svc: "Services", token: str, read: Callable[[], T]) -> T:
    """An ERC-20 view call: 422 ``not_a_token`` (field ``token``) when ``token`` has no code or does not answer
    as an ERC-20, 503 when the chain does not answer."""
    gw = svc.gateway
    with gw.lock:
        try:
            code = bytes(gw.w3.eth.get_code(to_checksum_address(token)))
        except Exception as e:
            raise ChainUnavailable(f"chain call failed: {type(e).__name__}: {str(e)[:300]}") from e
        if not code:
            raise Invalid(f"{token} is not a contract, so not an ERC-20", field="token", code="not_a_token")
        try:
            return read()
        except (BadFunctionCallOutput, ContractLogicError, DecodingError) as e:
            raise Invalid(f"{token} does not answer as an ERC-20", field="token", code="not_a_token") from e
        except Exception as e:
            if gw.revert_error(e) is not None:
                raise Invalid(f"{token} does not answer as an ERC-20", field="token", code="not_a_token") from e
            raise ChainUnavailable(f"chain call failed: {type(e).__name__}: {str(e)[:300]}") from e


def balance_of(svc: "Services", token: str, account: str) -> int:
    """ETH (token == address(0)) or ERC-20 balance of ``account``'s wallet."""
    account = to_checksum_address(account)
    if token == ETH:
        with svc.gateway.lock:
            return int(svc.chain.w3.eth.get_balance(account))
    fn = erc20(svc, token).functions.balanceOf(account)
    return int(token_read(svc, token, fn.call))


def allowance(svc: "Services", token: str, owner: str, spender: str) -> int:
    fn = erc20(svc, token).functions.allowance(to_checksum_address(owner), to_checksum_address(spender))
    return int(token_read(svc, token, fn.call))


def _suite_refusal(e: ApiError) -> bool:
    name = str(e.details.get("error", ""))
    return any(name.startswith(p) for p in SUITE_ERROR_PREFIXES)


def prepare_pull(svc: "Services", caller: "Caller", fn: ContractFunction, token: str, spender: str, amount: int) -> int:
    """Checks before anything is signed for a call that pulls ``amount`` of ERC-20 ``token`` from the
    caller: the wallet holds enough (402), the ledger itself would accept the call (its refusal is raised;
    the token's refusal for want of allowance is expected), and, for a wallet user, the allowance is there
    (else :class:`ApprovalRequired`). Returns the current allowance."""
    held = balance_of(svc, token, caller.address)
    if held < amount:
        raise ApiError(402, "insufficient_funds", f"this call pulls {amount} of ERC-20 {token}; the wallet holds {held}",
                       details={"token": token, "amountWei": str(amount), "balanceWei": str(held)})
    current = allowance(svc, token, caller.address, spender)
    try:
        svc.gateway.simulate(fn, caller.address)
    except ApiError as e:
        if current >= amount or _suite_refusal(e) or e.status >= 500:
            raise
    if caller.account is None and current < amount:
        approve_fn = erc20(svc, token).functions.approve(to_checksum_address(spender), amount)
        from .actions import unsigned_out

        tx = unsigned_out(svc.gateway.build(approve_fn, caller.address))
        raise ApprovalRequired(token, spender, amount, current, tx.model_dump(mode="json", by_alias=True))
    return current


def approve_exact(svc: "Services", account: "LocalAccount", token: str, spender: str, amount: int, current: int) -> list["TxOutcome"]:
    """Make ``account``'s allowance for ``spender`` exactly ``amount`` (managed accounts). Nothing is sent when
    it already is (a retried request whose approval was mined); a different non-zero allowance is reset to 0
    first (tokens such as USDT refuse a non-zero to non-zero change)."""
    if current == amount:
        return []
    c = erc20(svc, token).functions
    spender = to_checksum_address(spender)
    sent: list["TxOutcome"] = []
    if current != 0 and amount != 0:
        sent.append(svc.gateway.transact(account, c.approve(spender, 0)))
    sent.append(svc.gateway.transact(account, c.approve(spender, amount)))
    return sent


def is_relayable_approve(svc: "Services", to: str, data: bytes) -> bool:
    """A wallet's ``approve(escrow|registry, amount)`` on a token the ledger uses (dev token or an offer's)."""
    if len(data) != 68 or data[:4] != APPROVE_SELECTOR or any(data[4:16]):
        return False
    spender = to_checksum_address("0x" + data[16:36].hex())
    if spender not in (svc.client.escrow.address, svc.client.registry.address):
        return False
    known = {t.address.lower() for t in dev_tokens(svc)} | {t.lower() for t in offer_tokens(svc)}
    return to.lower() in known
