"""Fault injection for the fault suite (tests/api/test_faults.py): kill this process, as ``kill -9`` would,
when execution reaches a named point.

Armed by ``LEDGER_API_FAULT=<point>[@<n>]`` (the n-th time the point is reached, default the first) or, at
run time, by writing the same text into the file named by ``LEDGER_API_FAULT_FILE``. Unarmed (the default,
every deployment) a point costs one environment lookup. ``chain+<point>`` first kills the supervised chain
node this process runs (anvil, SIGKILL: it loses what it had not saved), then the process.

Points: ``relayer.signed`` (a settlement signed and stored, not broadcast), ``relayer.sent`` (broadcast,
receipt not seen), ``index.store`` (an indexed range written, not committed), ``intake.commit`` (a group of
reports written, not committed)."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

POINTS = ("relayer.signed", "relayer.sent", "index.store", "intake.commit")
_reached: Counter[str] = Counter()


def _armed() -> str:
    spec = os.environ.get("LEDGER_API_FAULT", "")
    path = os.environ.get("LEDGER_API_FAULT_FILE")
    if not spec and path:
        try:
            spec = Path(path).read_text().strip()
        except OSError:
            spec = ""
    return spec


def reach(point: str) -> None:
    """Die here if the fault suite armed ``point``."""
    spec = _armed()
    if not spec:
        return
    target, _, nth = spec.partition("@")
    kill_chain = target.startswith("chain+")
    if target.removeprefix("chain+") != point:
        return
    _reached[point] += 1
    if _reached[point] < (int(nth) if nth.isdigit() else 1):
        return
    if kill_chain:
        _kill_chain_node()
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_chain_node() -> None:
    pid_file = os.environ.get("LEDGER_API_FAULT_CHAIN_PID_FILE")
    if not pid_file:
        return
    try:
        os.kill(int(Path(pid_file).read_text().strip()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
