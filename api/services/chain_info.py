"""Where the bridge's chain is, published so that anyone can check the bridge against it (api/AUDIT_API.md
§0): the chain id, an RPC URL, the deployment record, the EIP-712 domain and the ABI of every address.

The RPC URL published is the operator's choice (``public_rpc_url``); without one, the anvil backend's local
node is published (it is on this machine, like the bridge), the memory backend has none (the chain lives in
the bridge's process), and the rpc backend publishes none: its configured URL may carry a provider key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.chain.contracts import address_abis
from ledger.chain.deployment import Deployment
from ledger.protocol import DOMAIN_NAME, DOMAIN_VERSION

from ..errors import ApiError


class ChainInfo:
    def __init__(
        self,
        deployment: Deployment,
        backend: str,
        *,
        local_rpc_url: str | None,
        public_rpc_url: str | None,
        chain_time: Callable[[], int] | None = None,
    ) -> None:
        self._deployment = deployment
        self._chain_time = chain_time
        self._abis = address_abis()
        if public_rpc_url:
            url, note = public_rpc_url, "published by the bridge's operator; audit with your own node to trust no one"
        elif backend == "anvil" and local_rpc_url:
            url, note = local_rpc_url, "the bridge's local anvil node"
        elif backend == "memory":
            url, note = None, "the chain runs inside the bridge's process (memory backend): no RPC endpoint exists"
        else:
            url, note = None, "the operator publishes no RPC URL: use any node of this chain"
        self._doc = {
            "chainId": deployment.chain_id,
            "rpcUrl": url,
            "rpcNote": note,
            "deployment": deployment.to_json(),
            "domain": {
                "name": DOMAIN_NAME,
                "version": DOMAIN_VERSION,
                "chainId": deployment.chain_id,
                "verifyingContract": deployment.escrow,
            },
            "abis": {name: f"/v1/chain/abi/{name}" for name in self._abis},
            "challengePeriodS": deployment.challenge_period_s,
        }

    def document(self) -> dict[str, Any]:
        """The published document, with the chain's current time (the latest block's, unix s; null when the
        chain does not answer)."""
        doc = dict(self._doc)
        try:
            doc["chainTime"] = None if self._chain_time is None else int(self._chain_time())
        except Exception:  # the chain is down: the rest of the document still holds
            doc["chainTime"] = None
        return doc

    def abi(self, name: str) -> list[dict[str, Any]]:
        try:
            return list(self._abis[name])
        except KeyError:
            raise ApiError(404, "not_found", f"no deployed contract named {name!r}; known: {', '.join(self._abis)}") from None
