"""Chain backends behind one function, :func:`connect`.

| backend  | what                                                                       |
| -------- | -------------------------------------------------------------------------- |
| memory   | eth-tester on py-evm, in process: unit tests and the one-command demo      |
| anvil    | a local anvil node (npm ``@foundry-rs/anvil-linux-amd64``) started and      |
|          | stopped here, on a free 127.0.0.1 port, state kept in the data directory   |
| rpc      | any EVM JSON-RPC URL (geth, Besu, an L2)                                     |

Dev accounts (memory, anvil) come with their private keys so tests, the faucet and the demo can sign;
on ``rpc`` there are none: keys come from keystores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from .errors import ChainError, ChainUnreachable

Backend = Literal["memory", "anvil", "rpc"]
BACKENDS: tuple[str, ...] = ("memory", "anvil", "rpc")

REPO_ROOT = Path(__file__).resolve().parents[2]
ANVIL_BIN = REPO_ROOT / "contracts" / "node_modules" / ".bin" / "anvil"
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
ANVIL_ACCOUNTS = 10
STATE_FILE = "anvil-state.json"


@dataclass
class Chain:
    """A connected chain: ``w3`` plus the backend's controls (snapshots and time, where it has them)."""

    w3: Web3
    backend: str
    accounts: list[str] = field(default_factory=list)
    private_keys: dict[str, bytes] = field(default_factory=dict)
    rpc_url: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _tester: Any = None
    data_dir: Path | None = None
    # The one lock of this chain: readers and senders of every thread take it (eth-tester is not thread-safe)
    lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    # --- snapshots and time (memory, anvil) ---------------------------------------------------------

    def snapshot(self) -> Any:
        with self.lock:
            if self._tester is not None:
                return self._tester.take_snapshot()
            return self._rpc("evm_snapshot", [])

    def revert(self, snapshot_id: Any) -> None:
        with self.lock:
            if self._tester is not None:
                self._tester.revert_to_snapshot(snapshot_id)
                return
            if not self._rpc("evm_revert", [snapshot_id]):
                raise ChainError(f"snapshot {snapshot_id} could not be reverted")

    def block_number(self) -> int:
        """The latest block's number."""
        with self.lock:
            return int(self.w3.eth.block_number)

    def now(self) -> int:
        """Timestamp (s) of the latest block."""
        with self.lock:
            return int(self.w3.eth.get_block("latest")["timestamp"])

    def time_travel(self, timestamp_s: int) -> None:
        """Make the next block carry ``timestamp_s`` (never backwards) and mine it."""
        with self.lock:
            if self._tester is not None:
                # eth-tester leaves the latest block at timestamp - 1 and the pending one at timestamp.
                self._tester.time_travel(int(timestamp_s))
                self._tester.mine_blocks(1)
                return
            self._rpc("evm_setNextBlockTimestamp", [int(timestamp_s)])
            self.mine()

    def increase_time(self, seconds: int) -> None:
        self.time_travel(self.now() + int(seconds))

    def mine(self, blocks: int = 1) -> None:
        with self.lock:
            if self._tester is not None:
                self._tester.mine_blocks(blocks)
                return
            for _ in range(blocks):
                self._rpc("evm_mine", [])

    def _rpc(self, method: str, params: list[Any]) -> Any:
        if self.backend == "rpc":
            raise ChainError(f"{method} is only available on the memory and anvil backends")
        resp = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in resp:
            raise ChainError(f"{method} failed: {resp['error']}")
        return resp.get("result")

    def close(self) -> None:
        """Stop an anvil node this process started (its state is dumped to the data directory)."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> "Chain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    backend: str = "memory",
    rpc_url: str | None = None,
    data_dir: str | Path | None = None,
    *,
    anvil_port: int | None = None,
    timeout_s: float = 15.0,
) -> Chain:
    """Connect to (or start) a chain. Raises :class:`ChainError` with one clear line on failure."""
    if backend == "memory":
        return _connect_memory()
    if backend == "anvil":
        return _start_anvil(Path(data_dir) if data_dir else None, anvil_port, timeout_s)
    if backend == "rpc":
        if not rpc_url:
            raise ChainError("the rpc backend needs an RPC URL (--rpc-url or COMPUTE_LEDGER_RPC_URL)")
        return _connect_rpc(rpc_url, timeout_s)
    raise ChainError(f"unknown chain backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _connect_memory() -> Chain:
    from eth_tester import EthereumTester, PyEVMBackend

    genesis = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": 60_000_000})
    tester = EthereumTester(PyEVMBackend(genesis_parameters=genesis))
    w3 = Web3(EthereumTesterProvider(tester))
    keys = {str(pk.public_key.to_checksum_address()): bytes(pk.to_bytes()) for pk in tester.backend.account_keys}
    accounts = [str(Web3.to_checksum_address(a)) for a in tester.get_accounts()]
    return Chain(w3=w3, backend="memory", accounts=accounts, private_keys=keys, _tester=tester)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for servers this project starts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def anvil_dev_keys(n: int = ANVIL_ACCOUNTS) -> dict[str, bytes]:
    """The dev accounts anvil derives from its default mnemonic (m/44'/60'/0'/0/i)."""
    Account.enable_unaudited_hdwallet_features()
    out: dict[str, bytes] = {}
    for i in range(n):
        acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        out[acct.address] = bytes(acct.key)
    return out


def _wait_rpc(w3: Web3, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            w3.eth.chain_id
            return True
        except Exception:
            time.sleep(0.05)
    return False


def _start_anvil(data_dir: Path | None, port: int | None, timeout_s: float) -> Chain:
    binary = ANVIL_BIN if ANVIL_BIN.exists() else (Path(p) if (p := shutil.which("anvil")) else None)
    if binary is None:
        raise ChainError("anvil binary not found: run `make install` (npm ci in contracts/)")
    port = port or free_port()
    cmd = [
        str(binary),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--accounts", str(ANVIL_ACCOUNTS),
        "--mnemonic", ANVIL_MNEMONIC,
        "--gas-limit", "60000000",
        "--silent",
    ]
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        state = data_dir / STATE_FILE
        # --state loads the file when present and dumps the chain on exit; the interval keeps a crash cheap.
        cmd += ["--state", str(state), "--state-interval", "5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}, **_CACHE_CHAIN_ID))
    if not _wait_rpc(w3, time.monotonic() + timeout_s, proc):
        err = b""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read() or b""
        proc.kill()
        proc.wait()
        line = err.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
        raise ChainError(f"anvil did not start on {url}: {line[0]}")
    if proc.stderr is not None:
        proc.stderr.close()
    keys = anvil_dev_keys()
    return Chain(
        w3=w3,
        backend="anvil",
        accounts=list(keys),
        private_keys=keys,
        rpc_url=url,
        _process=proc,
        data_dir=data_dir,
    )


# web3 asks the node for its chain id before every eth_call (its validation middleware): a node's chain id
# never changes, so it is asked once (a third of a cold indexer start-up's calls otherwise)
_CACHE_CHAIN_ID: dict[str, Any] = {"cache_allowed_requests": True, "cacheable_requests": {"eth_chainId"}}


def _connect_rpc(url: str, timeout_s: float) -> Chain:
    if url.startswith(("http://", "https://")):
        w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}, **_CACHE_CHAIN_ID))
    else:
        raise ChainError(f"unsupported RPC URL {url!r}: use http:// or https://")
    if not _wait_rpc(w3, time.monotonic() + min(timeout_s, 5.0)):
        raise ChainUnreachable(f"no JSON-RPC answer at {url}")
    return Chain(w3=w3, backend="rpc", rpc_url=url)


def save_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
