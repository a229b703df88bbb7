"""Managed accounts and their API keys, and the dev tokens the bridge deployed."""

from __future__ import annotations

from sqlalchemy import delete, select

from .db import Database
from .models import Account, ApiKey, TokenRow, now_ms


class AccountRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self, address: str, roles: list[str], label: str, encrypted_key: bytes, key_id: str, secret_hash: bytes
    ) -> None:
        """A managed account with its first API key (one transaction)."""
        with self._db.write() as s:
            s.add(
                Account(
                    address=address,
                    kind="managed",
                    roles=",".join(roles),
                    label=label,
                    encrypted_key=encrypted_key,
                    created_ms=now_ms(),
                )
            )
            s.flush()
            s.add(ApiKey(key_id=key_id, address=address, secret_hash=secret_hash, created_ms=now_ms()))

    def get(self, address: str) -> Account | None:
        with self._db.session() as s:
            return s.get(Account, address)

    def by_api_key(self, key_id: str) -> tuple[ApiKey, Account | None] | None:
        """The API key (revoked or not) and its account; None for an unknown key."""
        with self._db.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None:
                return None
            return key, s.get(Account, key.address)


class TokenRepo:
    """ERC-20s the bridge deployed on a dev chain (memory/anvil): the faucet mints them."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def dev_tokens(self, chain_id: int) -> list[TokenRow]:
        with self._db.session() as s:
            return list(s.scalars(select(TokenRow).where(TokenRow.chain_id == chain_id)))

    def replace_dev_token(self, chain_id: int, address: str, name: str, symbol: str, decimals: int) -> None:
        """Record the chain's dev token; records of a chain that was reset (no code any more) are dropped."""
        with self._db.write() as s:
            s.execute(delete(TokenRow).where(TokenRow.chain_id == chain_id))
            s.add(TokenRow(address=address, chain_id=chain_id, name=name, symbol=symbol, decimals=decimals,
                           created_ms=now_ms()))
