"""Retention: the live store keeps what settlement, auditing and disputes need now; the samples of settled,
unchallenged reports move to the archive (``api.store.archive``) once the challenge period has passed.

A lease's reports up to seq ``n`` are archived when every one of them is settled or superseded, a checkpoint
at or above ``n`` was settled on chain at least ``after_s`` (default: the escrow's challenge period) before
the chain's current time, and the lease has no open dispute. The reports' rows stay (they are small: the
queue, the hash chain and the lease's usage read them); their samples leave ``sample_sets`` for a segment
file, from which the bridge still serves them (reports, proofs, the archive download)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..store import Store
from ..store.archive import archive_entry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionSettings:
    every_s: float = 60.0
    after_s: int | None = None  # None: the escrow's challenge period
    segment_reports: int = 2000  # reports per archive segment at most


class Retention:
    def __init__(
        self,
        store: Store,
        now_s: Callable[[], int],
        challenge_period_s: Callable[[], int],
        settings: RetentionSettings,
    ) -> None:
        self.store = store
        self.now_s = now_s
        self.challenge_period_s = challenge_period_s
        self.settings = settings

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.every_s):
            try:
                self.run_once()
            except Exception:
                log.exception("retention round failed")

    def run_once(self) -> int:
        """Archive what is due; how many reports' samples moved."""
        archive = self.store.archive
        if archive is None:
            return 0
        after = self.settings.after_s if self.settings.after_s is not None else self.challenge_period_s()
        cutoff = int(self.now_s()) - after
        moved = 0
        for lease_id, upto in self.store.reports.archivable(cutoff):
            while True:
                rows = self.store.reports.unarchived(lease_id, upto, limit=self.settings.segment_reports)
                if not rows:
                    break
                entries = [archive_entry(r.body, r.signature, r.struct_hash, node, smp) for r, smp, node in rows]
                segment = archive.write(lease_id, entries)
                self.store.reports.mark_archived([r.id for r, _, _ in rows], segment)
                moved += len(rows)
        if moved:
            log.info("retention: the samples of %d settled reports moved to the archive", moved)
        return moved
