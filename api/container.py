"""What the bridge runs on, wired once at start-up: the store, the chain, the keys, the workers and the
services, each given exactly the collaborators it needs. Routers reach the services through ``api.deps``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from eth_account.signers.local import LocalAccount

from ledger.chain.backends import Chain, connect
from ledger.chain.deploy import deploy_suite
from ledger.chain.deployment import Deployment
from ledger.chain.suite import LedgerChain

from .keys import KeyBox, account_from_key, load_keystore
from .metrics import Metrics
from .services.accounts import Accounts
from .services.actions import Actor
from .services.audit import AuditData
from .chain_reads import ChainViews
from .services.funds import Faucet, Funds, Relay
from .services.health import Health
from .services.idempotency import Idempotency
from .services.leases import Leases
from .services.market import Market
from .services.chain_info import ChainInfo
from .services.disputes import Disputes
from .services.metering import ChainTime, Metering, VerifierPool
from .services.offers import Offers
from .services.providers import Nodes, Providers
from .services.tokens import DEV_BACKENDS, Tokens
from .services.web_audit import AuditBook
from .services.web_sessions import WebSessions
from .services.vouchers import Vouchers
from .services.price_index import PriceIndex
from .settings import Settings
from .store.migrations.runner import MigrationRefused
from .store import Store
from .workers.indexer import Indexer, IndexerSettings
from .workers.intake import ReportWriter
from .workers.relayer import Relayer, RelayerSettings
from .workers.retention import Retention, RetentionSettings

log = logging.getLogger("api")
HEARTBEAT_S = 5.0


class StartupError(RuntimeError):
    """The bridge cannot start with these settings (missing deployment, key, secret...)."""


class Bridge:
    """The bridge's collaborators. Built by :meth:`start`; :meth:`stop` undoes it."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        chain: Chain,
        ledger: LedgerChain,
        keybox: KeyBox,
        relayer_account: LocalAccount,
        faucet_account: LocalAccount | None,
        *,
        owns_chain: bool,
        tmp_dir: Path | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.chain = chain
        self.ledger = ledger
        self.deployment = ledger.deployment
        self.keybox = keybox
        self.metrics = Metrics()
        self.relayer_account = relayer_account
        self.faucet_account = faucet_account
        self.owns_chain = owns_chain
        self.tmp_dir = tmp_dir
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

        # workers
        self.writer = ReportWriter(store)
        self.indexer = Indexer(
            store, ledger, self.metrics,
            IndexerSettings(settings.confirmations, settings.indexer_chunk_blocks, settings.indexer_poll_s),
        )
        self.relayer = Relayer(
            store, ledger, relayer_account, self.metrics,
            RelayerSettings(settings.settle_every_s, settings.settle_threshold_wei, settings.relayer_tick_s,
                            settings.relayer_batch_max),
            on_settled=None if settings.background else self.after_write,
        )

        # services
        self.views = ChainViews(ledger)
        self.actor = Actor(ledger, self.after_write, public_sender=relayer_account, shared_lock=store.locks.hold)
        self.idempotency = Idempotency(store, ledger)
        dev_chain = chain.backend in DEV_BACKENDS and settings.chain_backend in DEV_BACKENDS
        self.tokens = Tokens(ledger, store, self.actor, dev_chain=dev_chain, faucet_account=faucet_account)
        self.accounts = Accounts(store, keybox, self.views)
        self.providers = Providers(ledger, self.views, self.actor, self.idempotency)
        self.nodes = Nodes(ledger, self.views, self.actor, store, self.indexer)
        self.price_index = PriceIndex(store, settings.price_bands)
        self.offers = Offers(ledger, self.views, self.actor, store, self.indexer, self.price_index)
        self.metering = Metering(
            store, self.indexer, self.writer, self.metrics,
            chain_id=ledger.chain_id, escrow=ledger.deployment.escrow,
            max_samples_per_report=settings.max_samples_per_report,
            chain_time=ChainTime(chain.now, follows=chain.time_travel if chain.backend == "memory" else None),
            verifier=VerifierPool(settings.verifier_processes) if settings.verifier_processes else None,
        )
        self.leases = Leases(ledger, self.views, self.actor, self.idempotency, store, self.relayer, self.metering)
        self.funds = Funds(ledger, self.views, self.actor, self.idempotency)
        self.faucet = Faucet(ledger, self.actor, self.idempotency, self.tokens, faucet_account, settings.faucet_wei)
        self.relay = Relay(ledger, self.actor, self.idempotency, self.tokens)
        self.audit = AuditData(store, self.indexer)
        admin_key = chain.private_keys.get(ledger.deployment.admin) if dev_chain and chain.private_keys else None
        self.disputes = Disputes(
            ledger, store, self.actor, self.leases, account_from_key(admin_key) if admin_key else None
        )
        self.vouchers = Vouchers(
            ledger, self.views, store, self.actor, self.idempotency, self.leases,
            account_from_key(admin_key) if admin_key else None,
        )
        self.chain_info = ChainInfo(
            ledger.deployment, chain.backend, local_rpc_url=chain.rpc_url, public_rpc_url=settings.public_rpc_url,
            chain_time=chain.now,
        )
        self.health = Health(ledger, self.indexer, self.relayer, self.metrics)
        self.retention = Retention(
            store, chain.now, ledger.read.challenge_period,
            RetentionSettings(settings.retention_every_s or 60.0, settings.archive_after_s),
        )
        self.market = Market(
            store, self.indexer, self.views, self.leases, self.metering, self.tokens,
            chain_now=chain.now, chain_block=chain.block_number, challenge_period_s=int(ledger.deployment.challenge_period_s),
        )  # fmt: skip
        self.web_sessions = WebSessions(settings.server_secret.get_secret_value())
        self.audit_book = AuditBook()

    @property
    def dev_token(self) -> str | None:
        return self.tokens.dev_token

    def after_write(self) -> None:
        """Index a managed write at once when no confirmations are awaited (reads see their own writes)."""
        if self.settings.confirmations == 0:
            self.indexer.sync_once()

    @classmethod
    def start(cls, settings: Settings, *, chain: Chain | None = None, deployment: Deployment | None = None) -> Bridge:
        """Connect (or take) the chain, deploy or load the contracts, open and migrate the store, catch the
        indexer up, recover the relayer's transactions, and start the background loops."""
        settings.check_secret()
        owns_chain = chain is None
        tmp_dir: Path | None = None
        data_dir = settings.data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        if chain is None:
            chain = connect(settings.chain_backend, rpc_url=settings.rpc_url, data_dir=data_dir)
        bridge: Bridge | None = None
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
            # no archive (no retention) for a database given without a data directory: it would not outlive us
            home = data_dir or tmp_dir
            archive_dir = settings.archive_dir or (home / "archive" if home is not None else None)
            if archive_dir is None:
                log.warning("no data directory or archive_dir: retention is off, samples stay in the database")
            store = Store(db_url, archive_dir=archive_dir)
            try:
                store.migrate()
            except MigrationRefused as e:
                store.close()
                raise StartupError(str(e)) from None
            ledger = LedgerChain(chain, deployment, receipt_timeout_s=settings.relayer_tx_timeout_s)
            faucet = None
            if chain.backend in DEV_BACKENDS and chain.private_keys:
                faucet = account_from_key(chain.private_keys[chain.accounts[0]])
            # every sender's nonce is chosen and broadcast under a lock all bridges on the database share
            ledger.sender.nonce_guard = lambda address: store.locks.hold("nonce:" + address)
            bridge = cls(
                settings, store, chain, ledger, KeyBox(settings.server_secret.get_secret_value()),
                _relayer_key(settings, chain), faucet, owns_chain=owns_chain, tmp_dir=tmp_dir,
            )
            store.idempotency.register()
            if owns_chain:
                chain.on_restart = bridge.relayer.chain_restarted
            if n := bridge.idempotency.abandon_pending():
                log.warning("%d Idempotency-Key request(s) were cut off by the last stop: marked abandoned", n)
            if settings.dev_token:
                bridge.tokens.ensure_dev_token()
            bridge.indexer.sync_once()
            bridge.relayer.recover()
        except BaseException:
            if bridge is not None:
                bridge.writer.close()
            if owns_chain:
                chain.close()
            if tmp_dir is not None:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        bridge._spawn("heartbeat", bridge._heartbeat)
        if settings.background:
            bridge._spawn("indexer", bridge.indexer.run)
            bridge._spawn("relayer", bridge.relayer.run)
            if settings.retention_every_s > 0:
                bridge._spawn("retention", bridge.retention.run)
        return bridge

    def _heartbeat(self, stop: threading.Event) -> None:
        """Tell the other bridges on the database this process is alive (its pending requests are real)."""
        while not stop.wait(HEARTBEAT_S):
            try:
                self.store.idempotency.heartbeat()
            except Exception:
                log.exception("heartbeat failed")

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        t = threading.Thread(target=target, args=(self._stop,), name=f"bridge-{name}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self._threads.clear()
        self.writer.close()
        try:
            self.store.idempotency.unregister()
        except Exception:
            log.exception("could not unregister this bridge")
        if self.metering.verifier is not None:
            self.metering.verifier.close()
        self.store.close()
        if self.owns_chain:
            self.chain.close()
        if self.tmp_dir is not None:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)


def _deployment(settings: Settings, chain: Chain) -> Deployment:
    path = settings.deployment_file or (settings.data_dir / "deployment.json" if settings.data_dir else None)
    if path is not None and path.exists():
        dep = Deployment.load(path)
        if int(dep.chain_id) != int(chain.chain_id):
            raise StartupError(f"deployment record {path.name} is for chain {dep.chain_id}, not {chain.chain_id}")
        return dep
    if chain.backend == "rpc":
        raise StartupError("the rpc backend needs a deployment record (deployment_file)")
    dep = deploy_suite(chain, chain.accounts[0], challenge_period_s=settings.dev_challenge_period_s)
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
