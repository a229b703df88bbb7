"""Each lease's settlement state, rebuilt from public data and checked against the escrow's commitment.

The escrow keeps one slot per lease, ``stateHash = keccak256(abi.encode(terms, ckpt, lastReportHash))``;
every settlement (and close, top-up, dispute, release, resolve) must carry the three words. ``terms`` comes
from the ``leaseTerms`` view; ``ckpt`` and ``lastReportHash`` from the lease's last ``CheckpointSettled``
record (before any, :func:`ledger.protocol.settlement.initial_ckpt` and a zero hash). This tracker follows
the records incrementally (it learns the sender's own settlements from their receipts) and re-reads the logs
when a commitment is not explained, rebuilding from the deployment block after a reorg.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..protocol.crypto import ZERO_HASH
from ..protocol.settlement import LeaseState, commitment, initial_ckpt
from .events import ChainEvent, EventReader
from .errors import StateUnavailable, UnknownLease
from .views import ChainReader


class LeaseStates:
    """Settlement states of leases, as :class:`LeaseState` (terms, ckpt, last report hash)."""

    def __init__(self, reader: ChainReader, events: EventReader, from_block: int) -> None:
        self._reader = reader
        self._events = events
        self._from_block = from_block
        # lease id -> (ckpt, last report hash) of its last CheckpointSettled record, logs read up to _scanned
        self._settled: dict[int, tuple[int, bytes]] = {}
        self._scanned = from_block - 1
        self._lock = reader.lock

    def note(self, events: Iterable[Any]) -> None:
        """Learn from decoded events (anything with ``name`` and ``args``, as ``ChainEvent``): a caller that
        sends settlements feeds the receipts' events and saves a log scan."""
        with self._lock:
            for e in events:
                if e.name == "CheckpointSettled":
                    self._settled[int(e.args["leaseId"])] = (int(e.args["ckpt"]), bytes(e.args["reportHash"]))

    def _scan(self, from_block: int) -> None:
        latest = self._reader.block_number()
        if from_block <= latest:
            found: list[ChainEvent] = self._events.read("CheckpointSettled", from_block=from_block, to_block=latest)
            self.note(found)
            self._scanned = latest

    def states(self, lease_ids: Sequence[int]) -> dict[int, LeaseState]:
        """The state each lease's calls must carry, checked against the escrow's ``stateHash``. Raises
        :class:`UnknownLease` for a lease the escrow does not have, :class:`StateUnavailable` when the
        events cannot explain a commitment."""
        ids = list(dict.fromkeys(int(i) for i in lease_ids))
        if not ids:
            return {}
        out: dict[int, LeaseState] = {}
        missing: list[int] = []
        with self._lock:
            for attempt in range(4):
                # re-read each round: a settlement landing between the view and the log scan moves both
                terms_list, hashes = self._reader.lease_terms(ids)
                missing = []
                for lid, terms, want in zip(ids, terms_list, hashes):
                    if lid in out:
                        continue
                    if want == ZERO_HASH:
                        raise UnknownLease(f"no lease {lid}")
                    ck, last = self._settled.get(lid, (initial_ckpt(terms), ZERO_HASH))
                    if commitment(terms, ck, last) == want:
                        out[lid] = LeaseState(lid, terms, ck, last)
                    else:
                        missing.append(lid)
                if not missing:
                    return out
                if attempt < 2:
                    self._scan(self._scanned + 1)  # new settlements since the last look
                elif attempt == 2:
                    self._settled.clear()  # a reorg dropped what we saw: rebuild from the deployment block
                    self._scan(self._from_block)
        raise StateUnavailable(f"lease state of {missing} does not match the escrow's commitment")

    def state(self, lease_id: int) -> LeaseState:
        return self.states([lease_id])[int(lease_id)]

    def states_or_none(self, lease_ids: Sequence[int]) -> dict[int, LeaseState | None]:
        """:meth:`states` for a batch that must not fail as a whole: ``None`` for a lease the escrow does not
        have; a lease whose state cannot be rebuilt now is left out (the caller retries later). One
        ``leaseTerms`` call when every lease is fine; one per lease otherwise."""
        ids = list(dict.fromkeys(int(i) for i in lease_ids))
        try:
            return dict(self.states(ids))
        except (UnknownLease, StateUnavailable):
            pass
        out: dict[int, LeaseState | None] = {}
        for lid in ids:
            try:
                out[lid] = self.state(lid)
            except UnknownLease:
                out[lid] = None
            except StateUnavailable:
                continue
        return out
