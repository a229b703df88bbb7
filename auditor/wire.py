"""The wire formats the auditor reads (api/AUDIT_API.md): lease documents, settlements, report entries,
samples and Merkle proofs, and the JSON-lines samples archive's lines. Pure parsing: no I/O.

Every parser raises :class:`AuditSourceError` (never a bare ``KeyError`` or ``TypeError``) for a document
that is not in the documented format, so that a stranger's answer cannot crash the audit.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ledger.protocol import (
    SAMPLE_FIELD_NAMES,
    MeteringReport,
    ProtocolError,
    Sample,
    hex_to_bytes32,
    report_struct_hash,
)
from ledger.protocol.economics import BillingMode, LeaseMoney, Settlement, TopUp

from .core import AttestorPeriod, AuditError, LeaseTerms, SampleProof, SignedReport

DEFAULT_SAMPLE_PERIOD_MS = 18_000
"""The attestor's sampling period when a source does not say (protocol v2's default policy,
``attestor.meter.SamplingPolicy``; the report's configHash commits to it but cannot be inverted). It sets
the gap tolerance (half a period) of ``samples.gaps``: a source should send the node's own."""


class AuditSourceError(AuditError):
    """A source answered something that is not the documented format, or could not be reached."""


_MALFORMED = (KeyError, TypeError, AttributeError, ValueError, IndexError)
"""What reading a document of the wrong shape raises (a list where an object belongs, a missing key, ...)."""


def _malformed(what: str, e: Exception) -> AuditSourceError:
    return AuditSourceError(f"{what} is not in the documented format ({type(e).__name__}: {e})")


def _int(data: Mapping[str, Any], key: str, default: int | None = None) -> int:
    v = data.get(key, default)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise AuditSourceError(f"{key} must be an integer, got {v!r}")
    return int(v)


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    return None if data.get(key) is None else _int(data, key)


def _bytes(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise AuditSourceError(f"{name} must be 0x-hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as e:
        raise AuditSourceError(f"{name} is not hex") from e


def _b32(value: Any, name: str) -> bytes:
    try:
        return hex_to_bytes32(value, name)
    except ProtocolError as e:
        raise AuditSourceError(str(e)) from e


def _billing(value: Any) -> BillingMode:
    """The billing mode from its API name (``reserved``, ``metered``, ``sm_active``; any case, ``-`` for
    ``_``) or the contract's number (0, 1, 2)."""
    if isinstance(value, str) and not value.isdigit():
        value = value.strip().replace("-", "_")
    try:
        return BillingMode.parse(value)
    except ProtocolError as e:
        raise AuditSourceError(f"unknown billingMode {value!r} (known: reserved, metered, sm_active)") from e


def _order(d: Mapping[str, Any]) -> tuple[int, int]:
    return (_int(d, "block", 0), _int(d, "logIndex", 0))


def terms_from_json(d: Mapping[str, Any]) -> LeaseTerms:
    """Lease terms from the lease JSON of api/AUDIT_API.md §1."""
    try:
        attestors = tuple(
            AttestorPeriod(str(a["address"]), _int(a, "fromMs", 0), _opt_int(a, "untilMs")) for a in d["attestors"]
        )
        gpu_indices = d.get("gpuIndices")
        return LeaseTerms(
            leaseId=_int(d, "leaseId"),
            chainId=_int(d, "chainId"),
            escrow=str(d["escrow"]),
            attestors=attestors,
            gpuSetHash=_b32(d["gpuSetHash"], "gpuSetHash"),
            gpuCount=_int(d, "gpuCount"),
            startMs=_int(d, "startMs"),
            endMs=_int(d, "endMs"),
            pricePerGpuSecond=_int(d, "pricePerGpuSecond"),
            billingMode=_billing(d.get("billingMode")),
            maxPowerMwPerGpu=_int(d, "maxPowerMwPerGpu"),
            samplePeriodMs=_opt_int(d, "samplePeriodMs") or DEFAULT_SAMPLE_PERIOD_MS,  # null: no report yet
            gpuIndices=None if gpu_indices is None else tuple(int(i) for i in gpu_indices),
            token=d.get("token"),
        )
    except KeyError as e:
        raise AuditSourceError(f"lease JSON lacks {e}") from e
    except (TypeError, ValueError) as e:
        raise AuditSourceError(f"lease JSON is malformed: {e}") from e


# The ckpt word's fields as a settlement carries them (names of the CheckpointSettled event's args; protocol v2:
# seq32 | busy48 | alloc48 | energy48 | smActive48 | settledAt32, ``ledger.protocol.settlement.Checkpoint``).
_CKPT_FIELDS: tuple[str, ...] = (
    "seq",
    "cumBusyMs",
    "cumAllocatedMs",
    "cumEnergyMj",
    "cumSmActiveMs",
    "settledAt",
)


def settlement_from_json(s: Mapping[str, Any]) -> Settlement:
    """One settled checkpoint (api/AUDIT_API.md §1): the record's ``ckpt`` word (or its fields), ``reportHash``,
    ``charged``, and where it is in the chain (``block``, ``logIndex``, ``recordIndex``, ``txHash``).

    When both the word and fields are given they must agree; anything else the bridge adds (a derived
    ``billableDelta``, the report's ``samplesRoot``, a protocol v1 ``windowEndMs``, which the v2 word no
    longer carries) is not evidence and is ignored: the auditor derives it.
    """
    order = (_int(s, "block", 0), _int(s, "logIndex", 0), _int(s, "recordIndex", 0))
    report_hash = _b32(s.get("reportHash"), "reportHash")
    charged = _int(s, "charged")
    tx = s.get("txHash")
    if s.get("ckpt") is not None:
        st = Settlement.of_ckpt(_int(s, "ckpt"), report_hash, charged, order, tx)
        for name in _CKPT_FIELDS:
            if s.get(name) is not None and _int(s, name) != getattr(st, name):
                raise AuditSourceError(f"settlement of seq {st.seq}: {name} {s[name]} disagrees with its ckpt word")
        return st
    missing = [name for name in _CKPT_FIELDS if s.get(name) is None]
    if missing:
        raise AuditSourceError(f"a settlement needs its ckpt word (or {', '.join(missing)})")
    return Settlement(
        seq=_int(s, "seq"),
        reportHash=report_hash,
        charged=charged,
        cumBusyMs=_int(s, "cumBusyMs"),
        cumAllocatedMs=_int(s, "cumAllocatedMs"),
        cumEnergyMj=_int(s, "cumEnergyMj"),
        cumSmActiveMs=_int(s, "cumSmActiveMs"),
        settledAt=_int(s, "settledAt"),
        order=order,
        txHash=tx,
    )


def settlements_from_json(items: Iterable[Mapping[str, Any]]) -> tuple[Settlement, ...]:
    return tuple(settlement_from_json(s) for s in items)


def settlement_to_json(st: Settlement) -> dict[str, Any]:
    """The inverse of :func:`settlement_from_json` (``ckpt`` and ``charged`` as decimal strings: JSON numbers
    above 2^53 lose precision in JavaScript)."""
    order = tuple(st.order) + (0,) * (3 - len(st.order))
    return {
        "seq": st.seq,
        "reportHash": "0x" + st.reportHash.hex(),
        "ckpt": str(st.ckpt),
        "charged": str(st.charged),
        "cumBusyMs": st.cumBusyMs,
        "cumAllocatedMs": st.cumAllocatedMs,
        "cumEnergyMj": st.cumEnergyMj,
        "cumSmActiveMs": st.cumSmActiveMs,
        "settledAt": st.settledAt,
        "block": order[0],
        "logIndex": order[1],
        "recordIndex": order[2],
        "txHash": st.txHash,
    }


def money_from_json(m: Mapping[str, Any] | None) -> LeaseMoney | None:
    if m is None:
        return None
    return LeaseMoney(
        escrow=_int(m, "escrow"),
        fee=_int(m, "fee", 0),
        topUps=tuple(TopUp(_int(t, "amount"), _int(t, "fee", 0), _order(t)) for t in m.get("topUps", ())),
        closed=bool(m.get("closed", False)),
        refund=_int(m, "refund", 0),
        closedCharged=_opt_int(m, "closedCharged"),
        feeKept=_opt_int(m, "feeKept"),
        feeRefund=_int(m, "feeRefund", 0),
    )


def sample_from_json(values: Any) -> Sample:
    """A sample as the wire carries it: the list of its values in ``SAMPLE_FIELD_NAMES`` order (protocol v2:
    13 integers)."""
    if not isinstance(values, list):
        raise AuditSourceError(f"a sample must be a list of {len(SAMPLE_FIELD_NAMES)} integers")
    try:
        return Sample.from_values(values)
    except ProtocolError as e:
        raise AuditSourceError(str(e)) from e


def report_from_json(entry: Mapping[str, Any]) -> SignedReport:
    """A report entry (api/AUDIT_API.md §2 / an archive line) → :class:`SignedReport`."""
    try:
        report = MeteringReport.from_json(entry["report"])
    except KeyError as e:
        raise AuditSourceError("report entry lacks 'report'") from e
    except ProtocolError as e:
        raise AuditSourceError(f"malformed report: {e}") from e
    raw = entry.get("samples")
    samples = None if raw is None else tuple(sample_from_json(v) for v in raw)
    return SignedReport(report, _bytes(entry.get("signature"), "signature"), samples)


def report_to_json(sr: SignedReport, node_id: int | None = None) -> dict[str, Any]:
    """The inverse of :func:`report_from_json`: one archive line / one element of the reports list."""
    out: dict[str, Any] = {
        "report": sr.report.to_json(),
        "signature": "0x" + sr.signature.hex(),
        "reportHash": "0x" + report_struct_hash(sr.report).hex(),
    }
    if node_id is not None:
        out["nodeId"] = node_id
    if sr.samples is not None:
        out["samples"] = [s.to_list() for s in sr.samples]
    return out


def proof_from_json(d: Mapping[str, Any]) -> SampleProof:
    """One proof object (api/AUDIT_API.md §3): the sample, its proof, and the ``leaf`` and ``root`` the bridge
    served with it (kept to be compared with what was signed, never used to verify)."""
    return SampleProof(
        index=_int(d, "index"),
        sample=sample_from_json(d.get("sample")),
        proof=tuple(_b32(p, "proof") for p in d.get("proof", ())),
        root=None if d.get("root") is None else _b32(d["root"], "root"),
        leaf=None if d.get("leaf") is None else _b32(d["leaf"], "leaf"),
    )
