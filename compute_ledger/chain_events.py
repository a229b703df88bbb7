"""Events of a deployed suite read from a chain node alone (no bridge): what the market commands
(``compute-ledger vouchers report``, ``compute-ledger price-index``) recompute their figures from."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.chain.backends import connect
from ledger.chain.deployment import Deployment
from ledger.chain.events import ChainEvent
from ledger.chain.suite import LedgerChain


def add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rpc-url", required=True, metavar="URL", help="an EVM JSON-RPC URL of the chain")
    p.add_argument("--deployment", required=True, type=Path, metavar="FILE", help="deployment record (JSON) of the contracts")
    p.add_argument("--out", type=Path, default=None, help="write here instead of stdout")


def emit(text: str, out: Path | None) -> int:
    """Write the command's output to ``out`` or stdout; exit status 0."""
    if out is not None:
        out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


@dataclass
class ChainData:
    ledger: LedgerChain
    events: list[ChainEvent]
    block_ts: dict[int, int]

    def close(self) -> None:
        self.ledger.chain.close()


def read_chain(rpc_url: str, deployment_file: Path) -> ChainData:
    """Every event of the deployment from its deployment block to the head, with the timestamps of their blocks."""
    dep = Deployment.load(deployment_file)
    chain = connect("rpc", rpc_url=rpc_url)
    ledger = LedgerChain(chain, dep, keys={})
    events = ledger.events.read()
    ts: dict[int, int] = {}
    for n in sorted({e.block_number for e in events}):
        blk: Any = ledger.read.block(n)
        ts[n] = int(blk["timestamp"])
    return ChainData(ledger, events, ts)
