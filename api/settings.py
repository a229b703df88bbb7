"""Bridge settings, read from the environment (prefix ``LEDGER_API_``) or passed in by the caller."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET = "dev-insecure-secret-change-me"


class Settings(BaseSettings):
    """Everything the bridge needs to start.

    Units: seconds for cadences, wei for money thresholds. ``server_secret`` encrypts managed accounts'
    keys at rest; the server refuses to start with the default one outside the memory backend.
    """

    model_config = SettingsConfigDict(env_prefix="LEDGER_API_", extra="ignore")

    chain_backend: Literal["memory", "anvil", "rpc"] = "memory"
    rpc_url: str | None = None
    dev_challenge_period_s: int = Field(
        default=3600, ge=1, le=30 * 86_400,
        description="the challenge period of the suite the bridge deploys on a dev chain (memory, anvil)",
    )
    public_rpc_url: str | None = Field(
        default=None,
        description="the RPC URL GET /v1/chain publishes for auditors (default: anvil's local node; none for rpc, "
        "whose configured URL may carry a provider key)",
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite in the data directory (or in memory)"
    )
    data_dir: Path | None = None
    deployment_file: Path | None = Field(
        default=None, description="deployment record (JSON); default <data_dir>/deployment.json"
    )
    relayer_keystore: Path | None = Field(default=None, description="encrypted keystore JSON of the relayer key")
    relayer_keystore_password: SecretStr | None = None
    relayer_private_key: SecretStr | None = Field(default=None, description="hex key; dev use only")
    server_secret: SecretStr = SecretStr(DEFAULT_SECRET)
    confirmations: int = Field(default=0, ge=0, le=1000)
    indexer_poll_s: float = Field(default=0.5, gt=0)
    indexer_chunk_blocks: int = Field(default=2000, ge=1)
    settle_every_s: float = Field(default=300.0, gt=0, description="settle each lease at least this often")
    settle_threshold_wei: int = Field(default=10**16, ge=0, description="settle early past this unsettled value")
    relayer_tick_s: float = Field(default=1.0, gt=0)
    relayer_batch_max: int = Field(default=100, ge=1, le=1000)
    relayer_tx_timeout_s: float = Field(default=60.0, gt=0)
    background: bool = Field(default=True, description="run the indexer and relayer loops in the background")
    archive_dir: Path | None = Field(
        default=None, description="the samples archive (default <data_dir>/archive, or beside a temporary store)"
    )
    retention_every_s: float = Field(default=60.0, ge=0, description="how often retention runs (0: never)")
    archive_after_s: int | None = Field(
        default=None, ge=0,
        description="archive a settled report's samples this long after its settlement (default: the escrow's "
        "challenge period)",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="largest metering report body (it carries the samples)"
    )
    max_request_bytes: int = Field(default=512 * 1024, ge=1024, description="largest body of every other request")
    verifier_processes: int = Field(
        default=2, ge=0, le=64,
        description="processes that parse and verify large report bodies off the event loop (0: on the loop)",
    )
    max_samples_per_report: int = Field(default=100_000, ge=1)
    # per-client (IP) token buckets: a burst, then so many a second (0: no limit)
    rate_accounts_burst: float = Field(default=20, ge=1)
    rate_accounts_per_s: float = Field(default=1.0, ge=0)
    rate_faucet_burst: float = Field(default=20, ge=1)
    rate_faucet_per_s: float = Field(default=1.0, ge=0)
    rate_reports_burst: float = Field(default=1000, ge=1)
    rate_reports_per_s: float = Field(default=200.0, ge=0)
    faucet_wei: int = Field(default=10**20, ge=0)
    dev_token: bool = Field(default=True, description="memory/anvil: deploy a test ERC-20 the faucet mints")
    price_bands: dict[str, tuple[int, int]] = Field(
        default_factory=dict,
        description="operator-set reference price bands, (low, high) in base units per GPU-hour, by GPU model (ETH "
        "offers) or 'GPU model|token address' (ERC-20 offers); they take precedence over the index's band. "
        'Environment: LEDGER_API_PRICE_BANDS=\'{"NVIDIA H100": [1000, 2000]}\'',
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.chain_backend == "rpc" and not self.rpc_url:
            raise ValueError("rpc_url is required for the rpc backend")
        return self

    def check_secret(self) -> None:
        """Raise ValueError when the default secret would protect keys on a persistent chain."""
        if self.chain_backend != "memory" and self.server_secret.get_secret_value() == DEFAULT_SECRET:
            raise ValueError(
                "refusing to start with the default server secret outside the memory backend: set "
                "LEDGER_API_SERVER_SECRET (16+ characters; it encrypts the managed accounts' keys), e.g. "
                "export LEDGER_API_SERVER_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
            )
        if len(self.server_secret.get_secret_value()) < 16:
            raise ValueError("LEDGER_API_SERVER_SECRET must be at least 16 characters")

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.data_dir is not None:
            return f"sqlite:///{(self.data_dir / 'bridge.sqlite3').as_posix()}"
        return "sqlite://"
