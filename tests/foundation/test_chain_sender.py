"""The one transaction sender's receipt wait: polled with the chain lock taken per poll, never held across the
wait; a transaction that never shows up ends in ChainUnavailable carrying its hash."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from web3.exceptions import TransactionNotFound

import ledger.chain.sender as sender_mod
from ledger.chain.backends import Chain, connect
from ledger.chain.deploy import deploy_suite
from ledger.chain.errors import ChainUnavailable
from ledger.chain.suite import LedgerChain


@pytest.fixture(scope="module")
def ledger() -> Iterator[LedgerChain]:
    chain: Chain = connect("memory")
    dep = deploy_suite(chain, chain.accounts[0])
    yield LedgerChain(chain, dep)
    chain.close()


def test_receipt_wait_does_not_hold_the_chain_lock(ledger: LedgerChain, monkeypatch: pytest.MonkeyPatch) -> None:
    chain = ledger.chain
    w3 = chain.w3
    tx = "0x" + bytes(w3.eth.send_transaction({"from": chain.accounts[0], "to": chain.accounts[1], "value": 1})).hex()
    real_receipt = w3.eth.get_transaction_receipt
    polls: list[int] = []
    others_got_the_lock: list[bool] = []

    def late_receipt(h: Any) -> Any:
        polls.append(1)
        if len(polls) < 4:  # the block is not there yet
            raise TransactionNotFound("not yet")
        return real_receipt(h)

    def sleep_while_another_thread_reads(_s: float) -> None:
        got: list[bool] = []
        lock = ledger.lock
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=2) and (lock.release() or True)))
        t.start()
        t.join(5)
        others_got_the_lock.append(bool(got and got[0]))

    monkeypatch.setattr(w3.eth, "get_transaction_receipt", late_receipt)
    monkeypatch.setattr(sender_mod.time, "sleep", sleep_while_another_thread_reads)
    out = ledger.sender.wait(tx)
    assert out.status == 1 and len(polls) == 4 and out.tx_hash == tx
    assert others_got_the_lock == [True, True, True]


def test_receipt_wait_gives_up_after_the_timeout(ledger: LedgerChain, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(h: Any) -> Any:
        raise TransactionNotFound("dropped")

    monkeypatch.setattr(ledger.chain.w3.eth, "get_transaction_receipt", never)
    with pytest.raises(ChainUnavailable, match="no receipt") as e:
        ledger.sender.wait("0x" + "11" * 32, timeout_s=0.05)
    assert e.value.tx_hash == "0x" + "11" * 32
