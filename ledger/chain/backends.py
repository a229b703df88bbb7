"""Chain backends behind one function, :func:`connect`.

| backend  | what                                                                       |
| -------- | -------------------------------------------------------------------------- |
| memory   | eth-tester on py-evm, in process: unit tests and the one-command demo      |
| anvil    | a local anvil node (npm ``@foundry-rs/anvil-linux-amd64``) started and      |
|          | stopped here, on a free 127.0.0.1 port, state kept in the data directory   |
|          | (supervised: it dies with this process and is restarted if it dies)         |
| rpc      | any EVM JSON-RPC URL (geth, Besu, an L2)                                     |

Dev accounts (memory, anvil) come with their private keys so tests, the faucet and the demo can sign;
on ``rpc`` there are none: keys come from keystores.

The anvil child is supervised (:class:`AnvilSupervisor`): it is spawned by a thread of this process that
lives as long as the chain, with ``PR_SET_PDEATHSIG`` (SIGTERM) so it dies with that thread's process (even
on SIGKILL), in a process group of its own (Ctrl-C stops the bridge, which stops the chain); if it dies, it is started again on the same port from its state file
and ``Chain.on_restart`` runs. One process owns a data directory's state file: an ``anvil.lock`` (flock)
refuses a second owner, and an ``anvil.pid`` left by an owner that died is used to stop its anvil before a
new one loads the file.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

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
LOCK_FILE = "anvil.lock"
PID_FILE = "anvil.pid"
log = logging.getLogger("ledger.chain")


@dataclass
class Chain:
    """A connected chain: ``w3`` plus the backend's controls (snapshots and time, where it has them)."""

    w3: Web3
    backend: str
    accounts: list[str] = field(default_factory=list)
    private_keys: dict[str, bytes] = field(default_factory=dict)
    rpc_url: str | None = None
    _process: subprocess.Popen[bytes] | None = None
    _supervisor: "AnvilSupervisor | None" = None
    _tester: Any = None
    data_dir: Path | None = None
    _state_lock: IO[str] | None = None  # anvil.lock of data_dir, held while this chain runs its anvil
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

    @property
    def on_restart(self) -> Callable[[], None] | None:
        """Runs after a supervised anvil died and was started again (the chain may have lost recent blocks)."""
        return self._supervisor.on_restart if self._supervisor is not None else None

    @on_restart.setter
    def on_restart(self, hook: Callable[[], None] | None) -> None:
        if self._supervisor is not None:
            self._supervisor.on_restart = hook

    @property
    def restarts(self) -> int:
        return self._supervisor.restarts if self._supervisor is not None else 0

    @property
    def node_pid(self) -> int | None:
        """The pid of the anvil child now (None for other backends)."""
        proc = self._supervisor.proc if self._supervisor is not None else self._process
        return proc.pid if proc is not None else None

    def close(self) -> None:
        """Stop an anvil node this process started (its state is dumped to the data directory)."""
        sup, self._supervisor = self._supervisor, None
        if sup is not None:
            sup.close()
        owner, self._state_lock = self._state_lock, None
        if owner is not None:
            owner.close()
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            _terminate(proc)

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


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """In the anvil child: SIGTERM when the thread that spawned it dies (its process killed, even by SIGKILL).
    Its own process group: a terminal's Ctrl-C reaches the bridge alone, which stops its chain after its last
    request (in the bridge's group, the supervisor would restart a chain the terminal had just interrupted)."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_orphan(data_dir: Path) -> None:
    """An anvil left running on this data directory by an owner that died (``anvil.pid``): stop it (it dumps
    its state) and wait until it is gone, before a new one loads the state file."""
    pid_path = data_dir / PID_FILE
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    if "anvil" not in cmdline or str(data_dir / STATE_FILE) not in cmdline:
        return
    log.warning("stopping anvil %d left running on %s by a bridge that died", pid, data_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


class AnvilSupervisor:
    """Spawns anvil from a thread that lives as long as the chain (``PR_SET_PDEATHSIG`` follows the spawning
    thread), restarts it if it dies, stops it on :meth:`close`."""

    POLL_S = 0.2

    def __init__(self, cmd: list[str], url: str, data_dir: Path | None, timeout_s: float) -> None:
        self.cmd = cmd
        self.url = url
        self.data_dir = data_dir
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.on_restart: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="anvil-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise ChainError(self._error)

    def _spawn(self, stderr: int | IO[bytes]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=_die_with_parent)
        if self.data_dir is not None:
            save_text(self.data_dir / PID_FILE, f"{proc.pid}\n")
        return proc

    def _run(self) -> None:
        proc = self._spawn(subprocess.PIPE)
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 5}))
        if not _wait_rpc(w3, time.monotonic() + self.timeout_s, proc):
            err = b""
            if proc.poll() is not None and proc.stderr is not None:
                err = proc.stderr.read() or b""
            proc.kill()
            proc.wait()
            line = err.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            self._error = f"anvil did not start on {self.url}: {line[0]}"
            self._ready.set()
            return
        if proc.stderr is not None:
            proc.stderr.close()
        self.proc = proc
        self._ready.set()
        while not self._stop.wait(self.POLL_S):
            if proc.poll() is None:
                continue
            log.warning("anvil (pid %d) exited with %s: starting it again from its state file", proc.pid, proc.returncode)
            proc = self._spawn(subprocess.DEVNULL)
            self.proc = proc
            if not _wait_rpc(w3, time.monotonic() + self.timeout_s, proc):
                log.error("anvil did not come back on %s; trying again", self.url)
                continue
            self.restarts += 1
            hook = self.on_restart
            if hook is not None:
                try:
                    hook()
                except Exception:
                    log.exception("chain restart hook failed")
        if proc.poll() is None:
            _terminate(proc)
        if self.data_dir is not None:
            (self.data_dir / PID_FILE).unlink(missing_ok=True)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)


def _own_state(data_dir: Path) -> IO[str]:
    """Take ``anvil.lock`` in the data directory (held while the returned file stays open)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fh = open(data_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the chain's life
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise ChainError(f"another process runs the anvil chain of {data_dir}: one owner per state file") from None
    return fh


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
    owner: IO[str] | None = None
    if data_dir is not None:
        owner = _own_state(data_dir)
        _stop_orphan(data_dir)
        state = data_dir / STATE_FILE
        # --state loads the file when present and dumps the chain on exit; the interval keeps a crash cheap.
        cmd += ["--state", str(state), "--state-interval", "5"]
    url = f"http://127.0.0.1:{port}"
    sup = AnvilSupervisor(cmd, url, data_dir, timeout_s)
    try:
        sup.start()
    except BaseException:
        if owner is not None:
            owner.close()
        raise
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}, **_CACHE_CHAIN_ID))
    keys = anvil_dev_keys()
    chain = Chain(
        w3=w3,
        backend="anvil",
        accounts=list(keys),
        private_keys=keys,
        rpc_url=url,
        _supervisor=sup,
        data_dir=data_dir,
        _state_lock=owner,
    )
    return chain


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


def save_text(path: Path, text: str) -> None:
    """Write a text file atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
