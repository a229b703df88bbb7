"""A private PostgreSQL server for the tests: initdb + pg_ctl on 127.0.0.1, a free port, its own socket
directory, stopped (and deleted) at the end. Run as the ``postgres`` user when the tests run as root
(PostgreSQL refuses to run as root). Debian's ``postgresql`` package (the Makefile's DEB_PACKAGES) puts the
binaries in /usr/lib/postgresql/<major>/bin, off the PATH: both places are searched."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

TEST_USER = "ledger"


def find_bin_dir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres (PATH first, then Debian's versioned dirs)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    bin_dir: Path
    root: Path
    port: int
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{TEST_USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), user=self.run_as, capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=str(self.root))

    def start(self) -> None:
        init = self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", TEST_USER, "-A", "trust",
                         "-E", "UTF8", "--no-sync")  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip()[-500:]}")
        # a test server: durability off (fsync), sockets in our own directory, loopback only
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off " \
               "-c full_page_writes=off -c max_connections=200"  # fmt: skip
        ctl = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l",
                        str(self.root / "server.log"), "-w", "-t", "60", "start")  # fmt: skip
        if ctl.returncode != 0:
            log = (self.root / "server.log").read_text(errors="replace")[-800:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {ctl.stderr.strip()[-300:]} {log}")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host="127.0.0.1", port=self.port, user=TEST_USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> PgServer:
    """Start a private server; raises RuntimeError (with why) when it cannot."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl) not found: `make test` installs Debian's postgresql")
    run_as: str | None = None
    # as root the server runs as postgres, who must reach its directory: /tmp, not a TMPDIR under /root
    root = Path(tempfile.mkdtemp(prefix="ledger-pg-", dir="/tmp" if os.geteuid() == 0 else None))
    if os.geteuid() == 0:  # postgres refuses root: run it as the postgres user, who must own its directory
        run_as = "postgres"
        pw = pwd.getpwnam(run_as)
        os.chown(root, pw.pw_uid, pw.pw_gid)
    os.chmod(root, 0o700)
    server = PgServer(bin_dir, root, _free_port(), run_as)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("PostgreSQL did not listen on 127.0.0.1")
