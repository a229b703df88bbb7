"""Reading a transaction someone else signed (a wallet's), before relaying it."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address
from hexbytes import HexBytes


@dataclass(frozen=True, slots=True)
class SignedTx:
    """Who signed it, where it goes (checksummed; "" for a contract creation), its calldata, value and chain."""

    sender: str
    to: str
    data: bytes
    value: int
    chain_id: int | None


def decode_signed(raw: bytes) -> SignedTx:
    """Decode a signed raw transaction (legacy or typed); ``ValueError`` when it is not one."""
    try:
        sender = Account.recover_transaction(raw)
        if raw and raw[0] < 0x7F:
            fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        else:
            fields = Transaction.from_bytes(HexBytes(raw)).as_dict()
    except Exception as e:  # eth-account raises many types for garbage
        raise ValueError(f"not a signed transaction: {type(e).__name__}") from e
    to = fields.get("to")
    to_hex = "0x" + bytes(to).hex() if isinstance(to, (bytes, bytearray)) else str(to or "")
    data = fields.get("data", b"")
    if isinstance(data, (bytes, bytearray)):
        calldata = bytes(data)
    else:
        text = str(data or "")
        try:
            calldata = bytes.fromhex(text[2:] if text.startswith("0x") else text)
        except ValueError:
            calldata = b""
    chain = fields.get("chainId")
    return SignedTx(
        sender=to_checksum_address(sender),
        to=to_checksum_address(to_hex) if len(to_hex) == 42 else to_hex,
        data=calldata,
        value=int(fields.get("value", 0)),
        chain_id=int(chain) if chain else None,
    )
