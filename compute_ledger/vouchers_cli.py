"""``compute-ledger vouchers``: compute-voucher reports recomputed from the chain alone.

  compute-ledger vouchers report PROGRAMME --rpc-url URL --deployment FILE [--format json|csv] [--out FILE]

The report (each voucher lease: what the voucher and the beneficiary paid, what settlement charged, its
close-out, report and transaction hashes) is ``ledger.protocol.vouchers.redemption_report`` over the vault's and
the escrow's events: the bridge serves the same function over its index (GET /v1/programmes/{id}/redemptions).
"""

from __future__ import annotations

import argparse
import json
import sys

from ledger.protocol.vouchers import Evt, redemption_report

from .chain_events import add_source_args, emit, read_chain


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="compute-ledger vouchers", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="what", required=True)
    r = sub.add_parser("report", help="the redemption report of a programme")
    r.add_argument("programme", type=int, help="the programme id")
    add_source_args(r)
    r.add_argument("--format", choices=("json", "csv"), default="json")
    args = p.parse_args(argv)
    data = read_chain(args.rpc_url, args.deployment)
    try:
        if data.ledger.deployment.voucher_vault is None:
            print("compute-ledger vouchers: this deployment has no VoucherVault", file=sys.stderr)
            return 1
        evs = [Evt(e.name, e.args, e.block_number, e.tx_hash, e.log_index, e.record_index) for e in data.events]
        rep = redemption_report(args.programme, evs)
        if not rep.issuer:
            print(f"compute-ledger vouchers: no programme {args.programme} on this chain", file=sys.stderr)
            return 1
        text = rep.to_csv() if args.format == "csv" else json.dumps(rep.to_json(), indent=2) + "\n"
    finally:
        data.close()
    return emit(text, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
