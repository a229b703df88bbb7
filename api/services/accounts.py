"""Managed accounts (for clients without a wallet) and who is calling."""

from __future__ import annotations

from typing import Any

from eth_utils import is_address, to_checksum_address

from ledger.chain.signing import new_account

from ..errors import Forbidden, NotFound, Unauthorized
from ..keys import KeyBox, new_api_key, parse_api_key, secret_matches
from ..store import Store
from .caller import Caller
from ..chain_reads import ChainViews


class Accounts:
    def __init__(self, store: Store, keybox: KeyBox, views: ChainViews) -> None:
        self._store = store
        self._keybox = keybox
        self._views = views

    def create(self, roles: list[str], label: str) -> tuple[str, list[str], str]:
        """A managed account with the given roles: (address, roles, API key). The key is generated and kept
        encrypted by the bridge; the API key is returned once (only its hash is kept)."""
        acct = new_account()
        key_id, token, secret_hash = new_api_key()
        roles = sorted(set(roles))
        sealed = self._keybox.seal(acct.address, bytes(acct.key))
        self._store.accounts.create(acct.address, roles, label, sealed, key_id, secret_hash)
        return acct.address, roles, token

    def me(self, caller: Caller) -> dict[str, Any]:
        """The calling account (API key) or the wallet address given in X-Wallet-Address, with its ETH."""
        acct = self._store.accounts.get(caller.address)
        balance = self._views.balance("0x0000000000000000000000000000000000000000", caller.address)
        if acct is None:
            if caller.managed:
                raise NotFound("account", caller.address)
            return {"address": caller.address, "roles": [], "kind": "wallet", "label": "", "ethBalanceWei": str(balance)}
        return {
            "address": acct.address,
            "roles": [r for r in acct.roles.split(",") if r],
            "kind": acct.kind,
            "label": acct.label,
            "ethBalanceWei": str(balance),
        }

    def caller(self, authorization: str | None, wallet: str | None) -> Caller | None:
        """Who calls: a managed account by its API key (``Bearer cl_...``), else a wallet address, else None."""
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("Authorization must be `Bearer <API key>`")
            parsed = parse_api_key(token.strip())
            if parsed is None:
                raise Unauthorized("malformed API key")
            key_id, secret = parsed
            found = self._store.accounts.by_api_key(key_id)
            if found is None or found[0].revoked or not secret_matches(secret, found[0].secret_hash):
                raise Unauthorized("unknown or revoked API key")
            acct = found[1]
            if acct is None:
                raise Unauthorized("the API key's account is gone")
            roles = frozenset(r for r in acct.roles.split(",") if r)
            local = self._keybox.open(acct.address, acct.encrypted_key) if acct.encrypted_key else None
            if local is None:
                raise Forbidden("this account has no managed key")
            return Caller(address=acct.address, roles=roles, account=local)
        if wallet is not None:
            if not is_address(wallet.strip()):  # a credential that is not one: 401, as a malformed API key
                raise Unauthorized("X-Wallet-Address must be an address: 0x followed by 40 hex digits")
            return Caller(address=to_checksum_address(wallet.strip()), roles=frozenset(), account=None)
        return None
