"""The gateway's receipt wait: polled with the lock taken per poll, never held across the wait."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web3.exceptions import TransactionNotFound

import api.gateway
from api.errors import ChainUnavailable
from test_api_flow import services


def test_receipt_wait_does_not_hold_the_gateway_lock(bridge: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = services(bridge).gateway
    tx = gw.w3.eth.send_transaction({"from": gw.chain.accounts[0], "to": gw.chain.accounts[1], "value": 1})
    real_receipt = gw.w3.eth.get_transaction_receipt
    polls: list[int] = []
    others_got_the_lock: list[bool] = []

    def late_receipt(h: Any) -> Any:
        polls.append(1)
        if len(polls) < 4:  # the block is not there yet
            raise TransactionNotFound("not yet")
        return real_receipt(h)

    def sleep_while_another_thread_reads(_s: float) -> None:
        got: list[bool] = []
        t = threading.Thread(target=lambda: got.append(gw.lock.acquire(timeout=2) and (gw.lock.release() or True)))
        t.start()
        t.join(5)
        others_got_the_lock.append(bool(got and got[0]))

    monkeypatch.setattr(gw.w3.eth, "get_transaction_receipt", late_receipt)
    monkeypatch.setattr(api.gateway.time, "sleep", sleep_while_another_thread_reads)
    out = gw.wait(tx)
    assert out.status == 1 and len(polls) == 4
    assert others_got_the_lock == [True, True, True]


def test_receipt_wait_gives_up_after_the_timeout(bridge: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = services(bridge).gateway

    def never(h: Any) -> Any:
        raise TransactionNotFound("dropped")

    monkeypatch.setattr(gw.w3.eth, "get_transaction_receipt", never)
    monkeypatch.setattr(gw, "receipt_timeout_s", 0.05)
    with pytest.raises(ChainUnavailable, match="no receipt"):
        gw.wait(b"\x11" * 32)
