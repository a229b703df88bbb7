"""The worked example of docs/protocol.md, computed by the protocol's code (ledger.protocol) from fixed inputs.

    python tools/protocol_example.py            # print the example (JSON)
    python tools/protocol_example.py --write    # put it into docs/protocol.md (between the example markers)
    python tools/protocol_example.py --check    # exit 1 if docs/protocol.md differs from what the code computes

A test (tests/foundation/test_protocol_doc.py) checks the document against this and re-verifies every value
with ethers and @openzeppelin/merkle-tree, independently of this code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ledger.chain.signing import address_of, sign_digest  # noqa: E402
from ledger.protocol import (  # noqa: E402
    DOMAIN_NAME,
    DOMAIN_VERSION,
    EIP712_REPORT_TYPES,
    ZERO_HASH,
    MerkleTree,
    MeteringReport,
    ReportFlag,
    Sample,
    config_hash,
    domain_separator,
    gpu_set_hash,
    gpu_uuid_hash,
    report_digest,
    report_struct_hash,
    report_typed_message,
    sample_leaf,
    samples_root,
)
from ledger.protocol.economics import BillingMode, billable, charge_for  # noqa: E402
from ledger.protocol.metering import aggregate_window  # noqa: E402
from ledger.protocol.report import window_struct_hash  # noqa: E402
from ledger.protocol.samples import SampleField  # noqa: E402
from ledger.protocol.settlement import Checkpoint, LeaseState, commitment, encode_entry, initial_ckpt  # noqa: E402

DOC = REPO / "docs" / "protocol.md"
BEGIN, END = "<!-- example:begin -->", "<!-- example:end -->"

# Fixed inputs: a well-known test key (never use it for anything else), anvil's chain id and first address.
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
CHAIN_ID = 31337
ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # anvil's first contract address
UUIDS = ("GPU-5f3c2f6e-9c4b-4d2a-8f3e-2b1d6c7a8e90", "GPU-0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d")
LEASE_ID, NODE_ID, GPUS, DURATION_S = 7, 3, 2, 3_600
START_S = 1_764_120_000
PRICE = 3_000_000_000_000  # wei per SM-active GPU-second
MODE = BillingMode.SM_ACTIVE
POLICY = {"protocol": 2, "samplePeriodMs": 18_000, "windowMs": 180_000, "gapToleranceMs": 9_000,
          "energyRead": 1, "utilSource": 1, "gpm": 1, "simulated": 0}  # fmt: skip


def _terms_word() -> int:
    """The lease's ``terms`` word (ledger.protocol.settlement): nodeId | startS | durationS | gpuCount | mode |
    status (2: Active) | price."""
    return (NODE_ID | START_S << 32 | DURATION_S << 64 | GPUS << 96 | int(MODE) << 112 | 2 << 116 | PRICE << 120)


def build() -> dict[str, Any]:
    start = START_S * 1000
    unread = int(SampleField.ENERGY_UNREAD)
    # The lease's first window: the collect a quarter second after its start (energy read), one 18 s interval
    # per GPU, and the window's last collect (energy read again); listed by (tsMs, gpuIndex).
    samples = [
        # gpu, tsMs, intervalMs, coveredMs, busyMs, utilSamples, smActiveMs, tensorActiveMs, powerMw,
        # powerSamples, energyMj, memUsedMiB, flags
        Sample(0, start + 250, 250, 250, 0, 1, 0, 0, 75_120, 12, 812_345_678, 40_211, 0),
        Sample(1, start + 180, 180, 180, 0, 1, 0, 0, 74_980, 9, 948_000_000, 40_180, 0),
        Sample(0, start + 18_250, 18_000, 18_000, 17_912, 90, 17_301, 16_150, 698_211, 120, 0, 40_211, unread),
        Sample(1, start + 18_180, 18_000, 18_000, 9_020, 90, 8_695, 8_118, 391_734, 120, 0, 40_180, unread),
        Sample(0, start + 36_250, 18_000, 18_000, 17_965, 90, 17_353, 16_200, 699_004, 120, 824_914_101, 40_233, 0),
        Sample(1, start + 36_180, 18_000, 18_000, 9_010, 90, 8_686, 8_109, 388_120, 120, 955_021_337, 40_180, 0),
    ]
    hashes = [gpu_uuid_hash(u) for u in UUIDS]
    fig = aggregate_window(
        samples, start, start + 36_250, 18_000, lease_start_ms=start, lease_end_ms=start + DURATION_S * 1000,
        gpu_indices=(0, 1),
    )  # fmt: skip
    report = MeteringReport(
        leaseId=LEASE_ID, seq=1, prevReportHash=ZERO_HASH, windowEndMs=start + 36_250,
        cumBusyMs=fig.busyMs, cumEnergyMj=fig.energyMj, cumAllocatedMs=fig.allocatedMs, cumSmActiveMs=fig.smActiveMs,
        windowStartMs=start, gpuSetHash=gpu_set_hash(hashes), busyMs=fig.busyMs, smActiveMs=fig.smActiveMs,
        tensorActiveMs=fig.tensorActiveMs, energyMj=fig.energyMj, allocatedMs=fig.allocatedMs,
        maxMemUsedMiB=fig.maxMemUsedMiB, sampleCount=len(samples), samplesRoot=samples_root(samples),
        flags=fig.flags, configHash=config_hash("0.2.0", "580.159.04", "13.580.159.04", POLICY),
    )  # fmt: skip
    digest = report_digest(report, CHAIN_ID, ESCROW)
    signature = sign_digest(digest, KEY)
    tree = MerkleTree.of_samples(samples)
    leaf0 = sample_leaf(samples[0])
    terms = _terms_word()
    state = LeaseState(LEASE_ID, terms, initial_ckpt(terms), ZERO_HASH)
    entry = encode_entry(report, signature, state)
    cum_billable = billable(MODE, busy_ms=report.cumBusyMs, allocated_ms=report.cumAllocatedMs,
                            sm_active_ms=report.cumSmActiveMs)  # fmt: skip
    charged = charge_for(PRICE, cum_billable, 0)
    settled_at = START_S + 60
    ckpt = Checkpoint(report.seq, report.cumBusyMs, report.cumAllocatedMs, report.cumEnergyMj,
                      report.cumSmActiveMs, settled_at).word  # fmt: skip
    struct_hash = report_struct_hash(report)
    record = LEASE_ID.to_bytes(4, "big") + struct_hash + ckpt.to_bytes(32, "big") + charged.to_bytes(16, "big")
    hx = "0x{}".format
    return {
        "inputs": {
            "attestorPrivateKey": hx(KEY.hex()),
            "gpuUuids": list(UUIDS),
            "lease": {"leaseId": LEASE_ID, "nodeId": NODE_ID, "gpuCount": GPUS, "startS": START_S,
                      "durationS": DURATION_S, "billingMode": MODE.label, "pricePerGpuSecondWei": str(PRICE)},
            "configPolicy": POLICY,
        },  # fmt: skip
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": CHAIN_ID, "verifyingContract": ESCROW},
        "domainSeparator": hx(domain_separator(CHAIN_ID, ESCROW).hex()),
        "types": EIP712_REPORT_TYPES,
        "report": report.to_json(),
        "typedMessage": report_typed_message(report),
        "windowHash": hx(window_struct_hash(report).hex()),
        "structHash": hx(struct_hash.hex()),
        "digest": hx(digest.hex()),
        "signature": hx(signature.hex()),
        "signer": address_of(KEY),
        "samples": [s.to_list() for s in samples],
        "leafTypes": ["uint16", "uint64", "uint32", "uint32", "uint32", "uint16", "uint32", "uint32", "uint32",
                      "uint16", "uint64", "uint32", "uint32"],  # fmt: skip
        "leaves": [hx(sample_leaf(s).hex()) for s in samples],
        "samplesRoot": hx(tree.root.hex()),
        "proofOfSample0": [hx(p.hex()) for p in tree.proof(leaf0)],
        "settlement": {
            "terms": str(terms),
            "ckptBefore": str(state.ckpt),
            "stateHashBefore": hx(state.commitment().hex()),
            "entry": hx(entry.hex()),
            "cumBillableMs": cum_billable,
            "charged": str(charged),
            "ckptAfter": str(ckpt),
            "settledAt": settled_at,
            "record": hx(record.hex()),
            "stateHashAfter": hx(commitment(terms, ckpt, struct_hash).hex()),
        },
        "flags": {"report": report.flags, "SIMULATED": int(ReportFlag.SIMULATED)},
    }


def render() -> str:
    return f"{BEGIN}\n```json\n{json.dumps(build(), indent=2)}\n```\n{END}"


def main(argv: list[str]) -> int:
    text = DOC.read_text() if DOC.exists() else ""
    if "--write" in argv or "--check" in argv:
        if BEGIN not in text or END not in text:
            print(f"{DOC} has no example markers", file=sys.stderr)
            return 1
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = head + render() + tail
        if "--check" in argv:
            if new != text:
                print(f"{DOC}: the worked example differs from what the code computes; run {__file__} --write",
                      file=sys.stderr)  # fmt: skip
                return 1
            return 0
        DOC.write_text(new)
        return 0
    print(json.dumps(build(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
