"""``compute-ledger price-index``: the verified price index recomputed from a chain node alone.

  compute-ledger price-index --rpc-url URL --deployment FILE [--format json|csv] [--latest] [--band MODEL]

Per GPU model, region, token and UTC day: the price actually paid per billable GPU-hour, from settled
checkpoints only (``ledger.protocol.price_index``; method in docs/economics.md). The bridge serves the same fold
over its index (GET /v1/price-index); anyone can compare the two.
"""

from __future__ import annotations

import argparse
import json
import sys

from ledger.protocol.price_index import BAND_DAYS, INDEX_EVENTS, IndexEvent, band, latest, price_index, to_csv

from .chain_events import add_source_args, emit, read_chain


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compute-ledger price-index", description=__doc__.splitlines()[0] if __doc__ else None)
    add_source_args(p)
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--latest", action="store_true", help="only each model's, region's and token's latest priced day")
    p.add_argument("--band", metavar="GPU_MODEL", help="print the reference band of this GPU model instead")
    p.add_argument("--days", type=int, default=BAND_DAYS, help="days of the band (default %(default)s)")
    args = p.parse_args(argv)
    data = read_chain(args.rpc_url, args.deployment)
    try:
        evs = [IndexEvent(e.name, e.args, e.order) for e in data.events if e.name in INDEX_EVENTS]
    finally:
        data.close()
    cells = price_index(evs)
    if args.band:
        b = band(cells, args.band, days=args.days)
        if b is None:
            print(f"compute-ledger price-index: no settled usage of {args.band!r}", file=sys.stderr)
            return 1
        text = json.dumps(b, indent=2) + "\n"
    else:
        if args.latest:
            cells = latest(cells)
        text = to_csv(cells) if args.format == "csv" else json.dumps([c.to_json() for c in cells], indent=2) + "\n"
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
