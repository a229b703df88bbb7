"""The web auditor page's contract with the auditor. The bridge does not import the auditor (the roles are
independent: ``pyproject.toml``'s import contracts); the entry point that starts the bridge
(``compute_ledger.serve``, the demo, tests) hands ``create_app`` a :data:`WebAuditor` built from it, which
runs exactly what ``compute-ledger audit lease N --api URL`` runs. Verdicts are kept in memory, per lease,
for the evidence downloads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AuditOutcome:
    """One audit of one lease: the verdict as the CLI's ``--json`` prints it, its table as the CLI prints it,
    and its self-contained HTML report (``--report``)."""

    lease_id: int
    verdict: dict[str, Any]
    table: str
    html: str

    @property
    def status(self) -> str:
        """VERIFIED | FAILED | COULD NOT AUDIT (as the CLI's first line says)."""
        return str(self.verdict["status"]).upper()


WebAuditor = Callable[[str, Any, int, "int | None"], AuditOutcome]
"""``(bridge base URL, the bridge's chain (LedgerChain), lease id, spot-check K or None) -> outcome``."""


class AuditBook:
    """The latest web audit of each lease."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_lease: dict[int, AuditOutcome] = {}

    def put(self, outcome: AuditOutcome) -> None:
        with self._lock:
            self._by_lease[outcome.lease_id] = outcome

    def get(self, lease_id: int) -> AuditOutcome | None:
        with self._lock:
            return self._by_lease.get(lease_id)
