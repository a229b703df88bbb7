"""Transports that fail the way networks do, in front of the real bridge, and a provider set up through the
client (a node, an offer, its attestor's key)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from compute_ledger_client import ComputeLedger

# what a fault rule answers for the n-th request matching it: None (forward), "connect" (never reaches the
# bridge), "lost" (reaches it, the answer is lost), or a Response to answer without forwarding
Fault = Callable[[httpx.Request, int], "str | httpx.Response | None"]


@dataclass
class Seen:
    method: str
    path: str
    idempotency_key: str | None
    forwarded: bool


@dataclass
class FlakyTransport(httpx.BaseTransport):
    """Forwards to the in-process bridge (its TestClient), failing as ``fault`` says; records every attempt."""

    app: TestClient
    fault: Fault = lambda req, n: None  # noqa: E731
    seen: list[Seen] = field(default_factory=list)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        n = sum(1 for s in self.seen if (s.method, s.path) == (request.method, request.url.path))
        what = self.fault(request, n)
        forwarded = what is None or what == "lost"
        self.seen.append(Seen(request.method, request.url.path, request.headers.get("idempotency-key"), forwarded))
        if what == "connect":
            raise httpx.ConnectError("connection refused", request=request)
        if isinstance(what, httpx.Response):
            return what
        resp = self.app.request(request.method, request.url.path, params=request.url.params,
                                content=request.content, headers=dict(request.headers))  # fmt: skip
        if what == "lost":
            raise httpx.ReadTimeout("timed out reading the answer", request=request)
        return httpx.Response(resp.status_code, headers=resp.headers, content=resp.content)

    def attempts(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]


def client_over(app: TestClient, fault: Fault | None = None, **kwargs: Any) -> tuple[ComputeLedger, FlakyTransport]:
    transport = FlakyTransport(app, fault) if fault is not None else FlakyTransport(app)
    http = httpx.Client(base_url="http://testserver", transport=transport)
    return ComputeLedger(http=http, **kwargs), transport


@dataclass
class ProviderSetup:
    client: ComputeLedger
    address: str
    attestor: LocalAccount
    node_id: int
    offer_id: int


def provider_with_offer(
    anon: ComputeLedger, price: int, *, uuids: tuple[str, ...] = ("GPU-c-1", "GPU-c-2"), token: str | None = None,
    billing_mode: str = "reserved",
) -> ProviderSetup:  # fmt: skip
    acct = anon.create_account(["provider"])
    prov = anon.with_api_key(acct.api_key)
    prov.faucet()
    prov.register_provider("https://provider.example")
    attestor = Account.create()
    node = prov.register_node(attestor.address, "NVIDIA H100 80GB HBM3", 81_559, 700_000, "eu-west",
                              gpu_uuids=list(uuids), gpm=True)  # fmt: skip
    now = anon.chain().chain_time or 0
    offer = prov.publish_offer(node.node_id, list(range(len(uuids))), price, now, now + 2 * 86_400,
                               billing_mode=billing_mode, token=token)  # type: ignore[arg-type]  # fmt: skip
    return ProviderSetup(prov, acct.address, attestor, node.node_id, offer.offer_id)
