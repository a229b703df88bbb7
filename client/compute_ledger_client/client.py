"""The two clients: :class:`ComputeLedger` (blocking, ``httpx.Client``) and :class:`AsyncComputeLedger`
(``httpx.AsyncClient``). Same methods, same arguments, same results; the async ones are awaited.

    from compute_ledger_client import ComputeLedger

    with ComputeLedger("http://127.0.0.1:8000", api_key="cl_...") as cl:
        lease = cl.open_lease(offer_id, duration_s=3600)      # retried with one Idempotency-Key: escrowed once
        cl.wait_for_settlement(lease.lease_id)

A client acts as one party: a managed account (``api_key``), a wallet whose key stays here (``wallet``: every
write is signed locally and submitted), or a wallet address alone (``wallet_address``: writes come back
``unsigned``, for a wallet elsewhere to sign; then :meth:`submit_transaction`), or nobody (reads, account
creation, the faucet).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

import httpx
from eth_account.signers.local import LocalAccount

from . import _ops
from ._core import Program, Reply, Request, RetryPolicy, Sleep, Step
from .wallet import load_wallet

P = ParamSpec("P")
T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)

USER_AGENT = "compute-ledger-client/0.1"


class _Op(Generic[P, T]):
    """A program as a method: on :class:`ComputeLedger` it returns the result, on :class:`AsyncComputeLedger`
    an awaitable of it."""

    def __init__(self, program: Callable[Concatenate[_ops.Session, P], Program[T]]) -> None:
        self.program = program
        self.__doc__ = program.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> _Op[P, T]: ...
    @overload
    def __get__(self, obj: ComputeLedger, owner: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncComputeLedger, owner: type) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        program = self.program

        @functools.wraps(program)
        def bound(*args: P.args, **kwargs: P.kwargs) -> Any:
            return obj._run(program(obj._session, *args, **kwargs))

        return bound


class _Api(Generic[H]):
    """Every operation, once (see ``_ops``)."""

    # everyone
    health = _Op(_ops.health)
    chain = _Op(_ops.chain)
    create_account = _Op(_ops.create_account)
    me = _Op(_ops.me)
    faucet = _Op(_ops.faucet)
    tokens = _Op(_ops.tokens)
    balance = _Op(_ops.balance)
    withdraw = _Op(_ops.withdraw)
    reputation = _Op(_ops.reputation)
    submit_transaction = _Op(_ops.submit_transaction)
    # providers
    register_provider = _Op(_ops.register_provider)
    stake = _Op(_ops.stake)
    request_unstake = _Op(_ops.request_unstake)
    withdraw_stake = _Op(_ops.withdraw_stake)
    provider = _Op(_ops.provider)
    register_node = _Op(_ops.register_node)
    rotate_attestor = _Op(_ops.rotate_attestor)
    deactivate_node = _Op(_ops.deactivate_node)
    node = _Op(_ops.node)
    active_leases = _Op(_ops.active_leases)
    publish_offer = _Op(_ops.publish_offer)
    activate_lease = _Op(_ops.activate_lease)
    release_earnings = _Op(_ops.release_earnings)
    # buyers
    offers = _Op(_ops.offers)
    offer = _Op(_ops.offer)
    open_lease = _Op(_ops.open_lease)
    leases = _Op(_ops.leases)
    lease = _Op(_ops.lease)
    top_up = _Op(_ops.top_up)
    close_lease = _Op(_ops.close_lease)
    dispute = _Op(_ops.dispute)
    rate = _Op(_ops.rate)
    expire_lease = _Op(_ops.expire_lease)
    # arbiters
    disputes = _Op(_ops.disputes)
    resolve_dispute = _Op(_ops.resolve_dispute)
    # auditors
    audit_leases = _Op(_ops.audit_leases)
    reports = _Op(_ops.reports)
    sample_proofs = _Op(_ops.sample_proofs)
    sample_proof = _Op(_ops.sample_proof)
    chain_abi = _Op(_ops.chain_abi)
    archive = _Op(_ops.archive)
    metering_domain = _Op(_ops.metering_domain)
    # waiting
    wait_for_settlement = _Op(_ops.wait_for_settlement)
    wait_for_state = _Op(_ops.wait_for_state)
    release_earnings_when_due = _Op(_ops.release_earnings_when_due)

    _http_class: type[H]

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        wallet: str | bytes | LocalAccount | None = None,
        wallet_address: str | None = None,
        http: H | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if sum(x is not None for x in (api_key, wallet, wallet_address)) > 1:
            raise ValueError("give one of api_key, wallet or wallet_address: a client acts as one party")
        if (base_url is None) == (http is None):
            raise ValueError("give base_url, or an httpx client (http=...) already pointed at the bridge")
        account = load_wallet(wallet) if wallet is not None else None
        self._session = _ops.Session(account, account.address if account is not None else wallet_address)
        self.retry = retry or RetryPolicy()
        self._own_http = http is None
        self._http: H = http if http is not None else self._http_class(base_url=base_url or "", timeout=timeout_s)
        headers = {"User-Agent": USER_AGENT}
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        if self._session.wallet_address is not None:
            headers["X-Wallet-Address"] = self._session.wallet_address
        self._http.headers.update(headers)

    @property
    def address(self) -> str | None:
        """The wallet's address (None for a managed account: ``me().address``)."""
        return self._session.wallet_address

    def with_api_key(self, api_key: str) -> Self:
        """Another client on the same bridge and connection pool, acting as the account of ``api_key``."""
        http = self._http
        headers = {k: v for k, v in http.headers.items() if k.lower() not in ("authorization", "x-wallet-address")}
        clone = self._http_class(base_url=http.base_url, transport=http._transport, headers=headers,
                                 timeout=http.timeout)  # fmt: skip
        return type(self)(http=clone, api_key=api_key, retry=self.retry)

    def _send_args(self, req: Request) -> dict[str, Any]:
        return {"method": req.method, "url": req.path, "json": req.json, "params": req.query(), "headers": req.headers()}


def advance(program: Program[T], reply: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Hand the last step's reply (or error) to the program: ``(True, result)`` when it is done, else
    ``(False, next step)``."""
    try:
        return False, (program.send(reply) if error is None else program.throw(error))
    except StopIteration as done:
        return True, done.value


class ComputeLedger(_Api[httpx.Client]):
    """The blocking client. ``base_url`` of the bridge (or ``http``: your own ``httpx.Client``, e.g. with a
    proxy or a test transport); one of ``api_key``, ``wallet`` (a private key: writes are signed here) or
    ``wallet_address`` (writes come back unsigned); ``timeout_s`` per request; ``retry`` the
    :class:`RetryPolicy`."""

    _http_class = httpx.Client



    def _run(self, program: Program[T]) -> T:
        reply: Any = None
        error: BaseException | None = None
        while True:
            done, step = advance(program, reply, error)
            if done:
                return step  # type: ignore[no-any-return]
            reply, error = None, None
            try:
                reply = self._step(step)
            except Exception as e:  # handed to the program, which may handle it (a wallet's approval)
                error = e

    def _step(self, step: Step) -> Reply | None:
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            return None
        for attempt in range(self.retry.max_retries + 1):
            resp, exc = None, None
            try:
                resp = self._http.request(**self._send_args(step))
            except httpx.TransportError as e:
                exc = e
            out = self.retry.outcome(step, attempt, resp, exc)
            if isinstance(out, Reply):
                return out
            time.sleep(out)
        raise AssertionError("unreachable: the policy raises on the last attempt")

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> ComputeLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncComputeLedger(_Api[httpx.AsyncClient]):
    """The asyncio client: the same arguments and methods as :class:`ComputeLedger`, awaited."""

    _http_class = httpx.AsyncClient



    async def _run(self, program: Program[T]) -> T:
        reply: Any = None
        error: BaseException | None = None
        while True:
            done, step = advance(program, reply, error)
            if done:
                return step  # type: ignore[no-any-return]
            reply, error = None, None
            try:
                reply = await self._step(step)
            except Exception as e:
                error = e

    async def _step(self, step: Step) -> Reply | None:
        if isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
            return None
        for attempt in range(self.retry.max_retries + 1):
            resp, exc = None, None
            try:
                resp = await self._http.request(**self._send_args(step))
            except httpx.TransportError as e:
                exc = e
            out = self.retry.outcome(step, attempt, resp, exc)
            if isinstance(out, Reply):
                return out
            await asyncio.sleep(out)
        raise AssertionError("unreachable: the policy raises on the last attempt")

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncComputeLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

