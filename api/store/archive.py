"""The samples archive on disk: where retention (``api.workers.retention``) moves the samples of settled,
unchallenged reports out of the live store.

A segment is one lease's run of reports, one file
``<root>/lease-<leaseId>/<fromSeq>-<toSeq>.jsonl.gz``: gzip-compressed JSON lines, each line the entry of
``GET /v1/audit/archive`` (api/AUDIT_API.md §5: ``report``, ``signature``, ``reportHash``, ``nodeId``,
``samples``), in seq order. ``compute-ledger audit ... --archive`` reads a segment as it is (or their
concatenation, ``zcat``), so the directory can be copied to any object store and audited from there. A
segment is written to a temporary file, flushed to disk and renamed before any report points at it.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ledger.protocol import Sample, safejson


def archive_entry(body: str, signature: str, struct_hash: str, node_id: int | None, samples: Iterable[Sample] | None) -> dict[str, Any]:
    """One report as api/AUDIT_API.md §2 and §5 give it."""
    return {
        "report": json.loads(body),
        "signature": signature,
        "reportHash": struct_hash,
        "nodeId": node_id,
        "samples": [s.to_list() for s in samples] if samples else [],
    }


class SampleArchive:
    """Segments under ``root``; reads of recent segments are cached (``cache_segments``)."""

    def __init__(self, root: Path, cache_segments: int = 8) -> None:
        self.root = root
        self._cache: OrderedDict[str, dict[int, dict[str, Any]]] = OrderedDict()
        self._cache_size = cache_segments
        self._lock = threading.Lock()

    def write(self, lease_id: int, entries: Sequence[Mapping[str, Any]]) -> str:
        """Write one segment durably; its name (relative to the root)."""
        seqs = [int(e["report"]["seq"]) for e in entries]
        name = f"lease-{lease_id}/{min(seqs):012d}-{max(seqs):012d}.jsonl.gz"
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as gz:
                for e in entries:
                    gz.write(json.dumps(e, separators=(",", ":")).encode() + b"\n")
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return name

    def segment(self, name: str) -> dict[int, dict[str, Any]]:
        """A segment's entries by seq."""
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None:
                self._cache.move_to_end(name)
                return hit
        path = self.root / name
        if ".." in Path(name).parts:
            raise ValueError(f"bad archive segment name {name!r}")
        with gzip.open(path, "rb") as fh:
            entries = {int(e["report"]["seq"]): e for e in (safejson.loads(line) for line in fh if line.strip())}
        with self._lock:
            self._cache[name] = entries
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return entries

    def samples(self, name: str, seq: int) -> list[Sample]:
        entry = self.segment(name).get(seq)
        if entry is None:
            raise KeyError(f"report {seq} is not in archive segment {name}")
        return [Sample.from_values(v) for v in entry["samples"]]
