"""Who is calling: a managed account (the bridge signs for it) or a wallet (it gets unsigned transactions)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from ..errors import Forbidden


@dataclass(frozen=True)
class Caller:
    """``account`` is set for a managed account; for a wallet caller it is None and write endpoints answer an
    unsigned transaction for the wallet to sign."""

    address: str
    roles: frozenset[str]
    account: LocalAccount | None

    @property
    def managed(self) -> bool:
        return self.account is not None

    def require(self, role: str) -> None:
        if self.managed and role not in self.roles:
            raise Forbidden(f"this account does not have the {role} role", code="missing_role")

    def ensure_writer(self) -> None:
        """Auditor-only accounts read; they never write (403)."""
        if self.managed and not (self.roles - {"auditor"}):
            raise Forbidden("auditor accounts are read-only", code="missing_role")
