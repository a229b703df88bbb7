"""Wallet users: relay a transaction they signed (built by any write endpoint with X-Wallet-Address)."""

from __future__ import annotations

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from fastapi import APIRouter
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from fastapi.responses import Response

from ..actions import outcome_out
from ..deps import IdempotencyKey, ServicesDep
from ..errors import MONEY_RESPONSES, ApiError
from ..idempotency import fingerprint, run_idempotent
from ..schemas import ActionOut, RawTxIn
from ..tokens import is_relayable_approve

router = APIRouter(prefix="/v1/tx", tags=["wallet"])


@router.post("", response_model=ActionOut, responses=MONEY_RESPONSES)
def submit_signed(body: RawTxIn, svc: ServicesDep, idempotency_key: IdempotencyKey = None) -> Response:
    """Relay a signed transaction to one of the ledger's contracts (or an ERC-20 ``approve`` of the escrow or
    registry, on a token the ledger uses) and wait for it. The transaction is
    simulated first: a revert answers the mapped error and nothing is broadcast."""
    raw = bytes.fromhex(body.rawTransaction[2:]) if len(body.rawTransaction) % 2 == 0 else b""
    try:
        sender = Account.recover_transaction(raw)
        if raw and raw[0] < 0x7F:
            fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        else:
            from eth_account._utils.legacy_transactions import Transaction

            fields = Transaction.from_bytes(HexBytes(raw)).as_dict()
    except Exception as e:
        raise ApiError(422, "invalid_transaction", "rawTransaction is not a signed transaction", field="rawTransaction") from e
    to = fields.get("to")
    to_hex = "0x" + bytes(to).hex() if isinstance(to, (bytes, bytearray)) else str(to or "")
    allowed = {a.lower() for a in (svc.client.registry.address, svc.client.escrow.address, svc.client.reputation.address)}
    calldata = _calldata(fields.get("data", b""))
    if to_hex.lower() not in allowed and not (to_hex and is_relayable_approve(svc, to_hex, calldata)):
        raise ApiError(422, "foreign_destination", "the bridge relays transactions to the ledger's contracts only "
                       "(and ERC-20 approvals of the escrow or registry on the tokens offers use)", field="rawTransaction")
    if int(fields.get("chainId", svc.gateway.chain_id) or svc.gateway.chain_id) != svc.gateway.chain_id:
        raise ApiError(422, "wrong_chain", "the transaction is for another chain", field="rawTransaction")

    def action() -> ActionOut:
        data = fields.get("data", b"")
        call = {"from": sender, "to": to_checksum_address(to_hex), "data": "0x" + bytes(data).hex() if isinstance(data, (bytes, bytearray)) else data,
                "value": int(fields.get("value", 0))}
        with svc.gateway.lock:
            try:
                svc.gateway.w3.eth.call(call)  # type: ignore[arg-type]
            except Exception as e:
                api = svc.gateway.revert_error(e)
                if api is not None:
                    raise api from e
                raise ApiError(422, "tx_rejected", f"the transaction would fail: {e}") from e
            outcome = svc.gateway.send_raw(raw)
        svc.after_write()
        return outcome_out(outcome)

    return run_idempotent(svc.store, f"tx:{sender}", idempotency_key, fingerprint("POST", "/v1/tx", body), action)


def _calldata(data: object) -> bytes:
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    text = str(data or "")
    try:
        return bytes.fromhex(text[2:] if text.startswith("0x") else text)
    except ValueError:
        return b""
