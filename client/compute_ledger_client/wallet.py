"""Wallet users: the bridge answers every write with an unsigned transaction in the exact form eth-account
signs (``unsignedTx``); this module signs it with a local key. The key never leaves this process."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount


@dataclass(frozen=True)
class SignedTx:
    raw_transaction: str  # 0x-hex, for POST /v1/tx
    tx_hash: str


def load_wallet(key: str | bytes | LocalAccount) -> LocalAccount:
    """A local account from a private key (0x-hex or 32 bytes) or an eth-account ``LocalAccount``."""
    if isinstance(key, LocalAccount):
        return key
    try:
        account: LocalAccount = Account.from_key(key)
    except (ValueError, TypeError) as e:  # never echo the key
        raise ValueError("wallet: not a private key (0x followed by 64 hex digits, or 32 bytes)") from e
    return account


def sign_unsigned(wallet: LocalAccount, unsigned_tx: Mapping[str, Any]) -> SignedTx:
    """Sign a transaction the bridge built for ``wallet`` (its ``from`` must be the wallet's address)."""
    tx = dict(unsigned_tx)
    sender = str(tx.pop("from", wallet.address))
    if sender.lower() != wallet.address.lower():
        raise ValueError(f"the transaction is from {sender}, not this wallet ({wallet.address})")
    signed = wallet.sign_transaction(tx)
    return SignedTx("0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex())
