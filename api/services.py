"""What the bridge runs on, wired once at start-up and handed to routers through ``deps``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from ledger.chain import Chain, connect
from ledger.protocol import domain_separator

from .gateway import Gateway
from .idempotency import abandon_pending
from .keys import KeyBox, account_from_key, load_keystore
from .metrics import Metrics
from .settings import Settings
from .store import Store

log = logging.getLogger("api")


class StartupError(RuntimeError):
    """The bridge cannot start with these settings (missing deployment, key, secret...)."""


@dataclass
class Services:
    settings: Settings
    store: Store
    chain: Chain
    deployment: Any
    client: Any
    gateway: Gateway
    keybox: KeyBox
    metrics: Metrics
    relayer_account: LocalAccount
    faucet_account: LocalAccount | None
    indexer: Any = None
    relayer: Any = None
    report_writer: Any = None
    domain_separator: bytes = b""
    dev_token: str | None = None  # the test ERC-20 deployed on memory/anvil (api.tokens)
    owns_chain: bool = False
    tmp_dir: Path | None = None
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pay_locks: dict[tuple[str, str, str], threading.Lock] = field(default_factory=dict)
    _pay_locks_guard: threading.Lock = field(default_factory=threading.Lock)

    def pay_lock(self, account: str, token: str, spender: str) -> threading.Lock:
        """One lock per (managed account, ERC-20, spender): a payment sets the allowance to exactly its
        amount and then spends it, so two payments of one account must not interleave."""
        key = (account.lower(), token.lower(), spender.lower())
        with self._pay_locks_guard:
            return self._pay_locks.setdefault(key, threading.Lock())

    @classmethod
    def start(cls, settings: Settings, *, chain: Chain | None = None, deployment: Any = None) -> "Services":
        from ledger.client import LedgerClient

        from .indexer import Indexer
        from .metering import ReportWriter
        from .relayer import Relayer

        settings.check_secret()
        owns_chain = chain is None
        tmp_dir: Path | None = None
        data_dir = settings.data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        if chain is None:
            chain = connect(settings.chain_backend, rpc_url=settings.rpc_url, data_dir=data_dir)
        try:
            deployment = deployment or _deployment(settings, chain)
            db_url = settings.database_url
            if db_url is None and data_dir is None and chain.backend == "rpc":
                raise StartupError("the rpc backend needs a data directory or a database URL: reports must outlive the process")
            if db_url is None:
                if data_dir is None:
                    tmp_dir = Path(tempfile.mkdtemp(prefix="ledger-bridge-"))
                    db_url = f"sqlite:///{(tmp_dir / 'bridge.sqlite3').as_posix()}"
                else:
                    db_url = settings.resolved_database_url()
            store = Store(db_url)
            store.migrate()
            if n := abandon_pending(store):
                log.warning("%d Idempotency-Key request(s) were cut off by the last stop: marked abandoned", n)
            client = LedgerClient(chain.w3, deployment)
            gateway = Gateway(chain, client, receipt_timeout_s=settings.relayer_tx_timeout_s)
            faucet = None
            if chain.backend in ("memory", "anvil") and chain.private_keys:
                faucet = account_from_key(chain.private_keys[chain.accounts[0]])
            svc = cls(
                settings=settings,
                store=store,
                chain=chain,
                deployment=deployment,
                client=client,
                gateway=gateway,
                keybox=KeyBox(settings.server_secret.get_secret_value()),
                metrics=Metrics(),
                relayer_account=_relayer_key(settings, chain),
                faucet_account=faucet,
                owns_chain=owns_chain,
                tmp_dir=tmp_dir,
            )
            svc.report_writer = ReportWriter(store)
            svc.domain_separator = domain_separator(gateway.chain_id, client.escrow.address)
            if settings.dev_token:
                from .tokens import ensure_dev_token

                svc.dev_token = ensure_dev_token(svc)
            svc.indexer = Indexer(svc)
            svc.relayer = Relayer(svc)
            svc.indexer.sync_once()
            svc.relayer.recover()
        except BaseException:
            if "svc" in locals() and svc.report_writer is not None:
                svc.report_writer.close()
            if owns_chain:
                chain.close()
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        if settings.background:
            svc._spawn("indexer", svc.indexer.run, svc._stop)
            svc._spawn("relayer", svc.relayer.run, svc._stop)
        return svc

    def _spawn(self, name: str, target: Any, stop: threading.Event) -> None:
        t = threading.Thread(target=target, args=(stop,), name=f"bridge-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def after_write(self) -> None:
        """Index a managed write at once when no confirmations are awaited (reads see their own writes)."""
        if self.settings.confirmations == 0 and self.indexer is not None:
            self.indexer.sync_once()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        if self.report_writer is not None:
            self.report_writer.close()
        self.store.close()
        if self.owns_chain:
            self.chain.close()
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _deployment(settings: Settings, chain: Chain) -> Any:
    from ledger.deploy import Deployment, deploy_suite

    path = settings.deployment_file or (settings.data_dir / "deployment.json" if settings.data_dir else None)
    if path is not None and path.exists():
        dep = Deployment.load(path)
        if int(dep.chain_id) != int(chain.w3.eth.chain_id):
            raise StartupError(f"deployment record {path.name} is for chain {dep.chain_id}, not {chain.w3.eth.chain_id}")
        return dep
    if chain.backend == "rpc":
        raise StartupError("the rpc backend needs a deployment record (deployment_file)")
    dep = deploy_suite(chain, chain.accounts[0])
    if path is not None:
        dep.save(path)
    return dep


def _relayer_key(settings: Settings, chain: Chain) -> LocalAccount:
    if settings.relayer_keystore is not None:
        if settings.relayer_keystore_password is None:
            raise StartupError("relayer_keystore needs relayer_keystore_password")
        return load_keystore(settings.relayer_keystore, settings.relayer_keystore_password.get_secret_value())
    if settings.relayer_private_key is not None:
        return account_from_key(settings.relayer_private_key.get_secret_value())
    if chain.private_keys:
        # dev chains: the last dev account pays settlement gas (account 0 is admin and faucet)
        return account_from_key(chain.private_keys[chain.accounts[-1]])
    raise StartupError("set relayer_keystore (or relayer_private_key) to pay settlement gas")
