"""The asyncio client: the same programs as the sync one, over httpx.AsyncClient and the bridge's ASGI app."""

from __future__ import annotations

import asyncio

import httpx
from eth_account import Account
import pytest
from fastapi.testclient import TestClient

from compute_ledger_client import AsyncComputeLedger, ComputeLedger, NotFound, RetryPolicy
from tests.client.helpers import provider_with_offer

PRICE = 10**9
HOUR = 3600


class LoseFirstAnswer(httpx.AsyncBaseTransport):
    """Forwards to the app; the answer to the first request on ``path`` is lost after the bridge handled it."""

    def __init__(self, app: object, path: str) -> None:
        self.inner = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self.path = path
        self.keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == self.path:
            self.keys.append(request.headers.get("idempotency-key"))
            if len(self.keys) == 1:
                await resp.aread()
                raise httpx.ReadError("connection reset", request=request)
        return resp


def test_async_client_opens_once_through_a_lost_answer_and_reads_typed_documents(bridge: TestClient) -> None:
    prov = provider_with_offer(ComputeLedger(http=bridge), PRICE)

    async def story() -> None:
        transport = LoseFirstAnswer(bridge.app, "/v1/leases")
        async with httpx.AsyncClient(base_url="http://testserver", transport=transport) as http:
            anon = AsyncComputeLedger(http=http, retry=RetryPolicy(backoff_s=0.01))
            acct = await anon.create_account(["buyer"])
            buyer = anon.with_api_key(acct.api_key)
            await buyer.faucet()
            opened = await buyer.open_lease(prov.offer_id, HOUR)
            assert opened.replayed and transport.keys == [opened.idempotency_key] * 2
            assert (await anon.leases(buyer=acct.address)).total == 1
            lease, offers = await asyncio.gather(anon.lease(opened.lease_id), anon.offers(available=False))
            assert lease.money.escrow == PRICE * 2 * HOUR and lease.state == "Open"
            assert [o.live_lease_id for o in offers.offers] == [opened.lease_id]
            with pytest.raises(NotFound) as e:
                await anon.node(424_242)
            assert e.value.code == "unknown_node"
            closed = await buyer.close_lease(opened.lease_id)
            assert closed.events_named("LeaseClosed")
            assert (await buyer.wait_for_state(opened.lease_id, "Closed", timeout_s=5)).money.refund > 0

    asyncio.run(story())


def test_async_wallet_approves_the_erc20_then_opens_signing_locally(bridge: TestClient) -> None:
    """The approval asked with a 409 is signed and relayed, then the lease itself: the same program as the sync
    client's, run by asyncio."""
    anon = ComputeLedger(http=bridge)
    token = anon.tokens().dev_token
    assert token is not None
    prov = provider_with_offer(anon, PRICE, uuids=("GPU-async-1",), token=token)
    key = Account.create()
    anon.faucet(key.address)
    anon.faucet(key.address, 10**20, token)

    async def story() -> int:
        transport = httpx.ASGITransport(app=bridge.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(base_url="http://testserver", transport=transport) as http:
            wallet = AsyncComputeLedger(http=http, wallet=key)
            opened = await wallet.open_lease(prov.offer_id, HOUR)
            assert opened.status == "mined" and not opened.replayed
            return opened.lease_id

    lease = anon.lease(asyncio.run(story()))
    assert lease.buyer == key.address and lease.token == token
    assert anon.balance(key.address, token).wallet_balance_wei == 10**20 - lease.money.escrow - lease.money.fee
