"""The attestor's config file (TOML or JSON); command-line flags override it.

Keys (all optional)::

    node_id = 3
    api = "http://127.0.0.1:8000"
    chain_id = 31337
    escrow = "0x…"                      # LeaseEscrow address (EIP-712 verifying contract)
    gpus = ["GPU-…", "GPU-…"]           # index -> UUID, the order the node registered its GPUs on-chain
    sample_period_ms = 18000            # how often each GPU's interval becomes a sample (the driver's buffer holds ~20 s)
    window_ms = 180000                  # how often a report is closed (the energy counter is read then)
    data_dir = ".data/attestor"
    keystore = ".data/attestor/keystore.json"

    [[leases]]                          # static leases, to meter without the bridge
    lease_id = 7
    gpu_indices = [0, 1]
    start_ms = 1764120000000
    end_ms = 1764123600000
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .bridge import LeaseInfo
from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class FileConfig:
    node_id: int | None = None
    api: str | None = None
    chain_id: int | None = None
    escrow: str | None = None
    gpus: tuple[str, ...] | None = None
    sample_period_ms: int | None = None
    window_ms: int | None = None
    data_dir: Path | None = None
    keystore: Path | None = None
    leases: tuple[LeaseInfo, ...] = field(default_factory=tuple)


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"config: {key} must be an integer")
    return int(v)


def load_config(path: Path) -> FileConfig:
    """Read a TOML (``.toml``) or JSON file; raises :class:`ConfigError` naming the bad key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data: Any = tomllib.loads(raw.decode()) if str(path).endswith(".toml") else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {path} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a table/object")
    known = {
        "node_id",
        "api",
        "chain_id",
        "escrow",
        "gpus",
        "sample_period_ms",
        "window_ms",
        "data_dir",
        "keystore",
        "leases",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"config {path}: unknown keys {unknown}")
    gpus = data.get("gpus")
    if gpus is not None and (not isinstance(gpus, list) or not all(isinstance(g, str) for g in gpus)):
        raise ConfigError("config: gpus must be a list of UUID strings")
    leases: list[LeaseInfo] = []
    for i, entry in enumerate(data.get("leases") or []):
        if not isinstance(entry, dict):
            raise ConfigError(f"config: leases[{i}] must be a table")
        try:
            leases.append(
                LeaseInfo(
                    lease_id=int(entry["lease_id"]),
                    gpu_indices=tuple(int(x) for x in entry["gpu_indices"]),
                    start_ms=int(entry["start_ms"]),
                    end_ms=int(entry["end_ms"]),
                )
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"config: leases[{i}] needs lease_id, gpu_indices, start_ms, end_ms ({e})") from None
    return FileConfig(
        node_id=_opt_int(data, "node_id"),
        api=data.get("api"),
        chain_id=_opt_int(data, "chain_id"),
        escrow=data.get("escrow"),
        gpus=None if gpus is None else tuple(gpus),
        sample_period_ms=_opt_int(data, "sample_period_ms"),
        window_ms=_opt_int(data, "window_ms"),
        data_dir=None if data.get("data_dir") is None else Path(data["data_dir"]),
        keystore=None if data.get("keystore") is None else Path(data["keystore"]),
        leases=tuple(leases),
    )
